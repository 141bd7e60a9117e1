//! A native function that does what its event asks, so the tests can drive every fault
//! through a real native runtime (the Python, Node and Java probes do the same):
//! `{"echo": v}` returns `v`; `{"raise": "m"}` fails with `m`; `{"panic": "m"}` panics;
//! `{"crash": true}` aborts the process; `{"exit": n}` exits with `n`; `{"sleep_ms": n}`
//! sleeps; `{"print": n}` writes `n` bytes to stdout; `{"alloc_mb": n}` touches `n` MiB;
//! `{"env": "NAME"}` returns that variable or null.

use serde_json::Value;
use std::io::Write;
use volley_runtime::HandlerError;

fn handle(event: Value) -> Result<Value, HandlerError> {
    if let Some(v) = event.get("echo") {
        return Ok(v.clone());
    }
    if let Some(m) = event.get("raise").and_then(Value::as_str) {
        return Err(HandlerError::new("ProbeError", m));
    }
    if let Some(m) = event.get("panic").and_then(Value::as_str) {
        panic!("{m}");
    }
    if event.get("crash").is_some() {
        std::process::abort();
    }
    if let Some(n) = event.get("exit").and_then(Value::as_i64) {
        std::process::exit(n as i32);
    }
    let mut kept = Vec::new();
    if let Some(mb) = event.get("alloc_mb").and_then(Value::as_u64) {
        kept = vec![0u8; (mb as usize) << 20];
        for i in (0..kept.len()).step_by(4096) {
            kept[i] = 1;
        }
    }
    if let Some(ms) = event.get("sleep_ms").and_then(Value::as_u64) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    if let Some(n) = event.get("print").and_then(Value::as_u64) {
        let line = vec![b'x'; n as usize];
        std::io::stdout().write_all(&line)?;
    }
    std::hint::black_box(&kept);
    if let Some(name) = event.get("env").and_then(Value::as_str) {
        return Ok(std::env::var(name).map(Value::String).unwrap_or(Value::Null));
    }
    Ok(Value::Null)
}

fn main() -> std::process::ExitCode {
    volley_runtime::serve(|| Ok(handle))
}
