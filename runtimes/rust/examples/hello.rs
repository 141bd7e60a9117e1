//! A native Volley function: greets whoever the event names.
//!
//! Build it and deploy the binary:
//! `cargo build --release -p volley-runtime --example hello`
//! `client deploy hello target/release/examples/hello --runtime native`
//! `client invoke hello --args '{"name":"Ada"}'` prints `"Hello, Ada!"`.

use serde_json::{json, Value};
use volley_runtime::HandlerError;

fn main() -> std::process::ExitCode {
    volley_runtime::serve(|| {
        // Whatever a handler needs once (clients, tables) is built here, before READY.
        let greeting = "Hello";
        Ok(move |event: Value| -> Result<Value, HandlerError> {
            let name = event
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| HandlerError::new("MissingName", "the event needs a \"name\" string"))?;
            Ok(json!(format!("{greeting}, {name}!")))
        })
    })
}
