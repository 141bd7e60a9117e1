//! Volley's end-to-end tests of the system live in `tests/`, one file per concern:
//! modes, faults, bad and hostile input, security, metrics, functions, services,
//! provisioning, autoscaling, user-function runtimes and the stock Python client. Each
//! starts the real `dispatcher` and `worker` binaries through `volley-testbed`.
//! (The benchmark's own tests stay in `perf/tests`.)
