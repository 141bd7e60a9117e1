//! A native program that does nothing: the floor a native function's start to READY is
//! measured against (the `runtimes` bench), as `python3 -c pass` is Python's.

fn main() {}
