//! `client functions`: every deployed function and built-in, each version.

use super::{status_error, Target};
use serde_json::json;
use volley_proto::api;
use volley_proto::function::FunctionKind;

/// Every registered function, each version, oldest first.
async fn all(client: &mut crate::Client) -> anyhow::Result<Vec<api::RegisteredFunction>> {
    Ok(client
        .list_functions(api::ListFunctionsRequest {})
        .await
        .map_err(|s| status_error("ListFunctions", s))?
        .into_inner()
        .functions)
}

/// The latest version of a function by name: its id and spec.
pub async fn latest(client: &mut crate::Client, name: &str) -> anyhow::Result<api::RegisteredFunction> {
    all(client)
        .await?
        .into_iter()
        .filter(|f| f.name == name)
        .max_by_key(|f| f.function_id)
        .ok_or_else(|| {
            anyhow::anyhow!("no function is named '{name}'; deploy it with `client deploy {name} PATH --runtime …`")
        })
}

/// Prints the functions, one line each (or a JSON array).
pub async fn run(target: &Target, as_json: bool) -> anyhow::Result<i32> {
    let functions = all(&mut target.connect().await?).await?;
    let rows: Vec<_> = functions
        .iter()
        .map(|f| {
            let runtime = match f.spec.as_ref().and_then(|s| s.kind.as_ref()) {
                Some(api::function_spec::Kind::Runtime(r)) => Some(r.clone()),
                _ => None,
            };
            let kind = FunctionKind::from_api(f.spec.as_ref())
                .map(|k| k.label())
                .unwrap_or_default();
            (f, runtime, kind)
        })
        .collect();
    if as_json {
        let list: Vec<_> = rows
            .iter()
            .map(|(f, r, kind)| match r {
                Some(r) => json!({
                    "function_id": f.function_id, "name": f.name, "version": f.version,
                    "runtime": r.language, "handler": r.handler, "code_digest": r.code_digest,
                    "code_size": r.code_size, "code_format": r.code_format,
                    "timeout_ms": r.timeout_ms, "memory_mb": r.memory_mb,
                }),
                None => json!({"function_id": f.function_id, "name": f.name, "version": f.version, "builtin": kind}),
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(0);
    }
    println!(
        "{:>6}  {:<24} {:>3}  {:<8} {:<14} {:>10}  {:<12} limits",
        "id", "name", "ver", "runtime", "handler", "bytes", "sha256"
    );
    for (f, r, kind) in rows {
        match r {
            Some(r) => println!(
                "{:>6}  {:<24} {:>3}  {:<8} {:<14} {:>10}  {:<12} {} ms, {} MiB",
                f.function_id,
                f.name,
                f.version,
                r.language,
                if r.handler.is_empty() { "-" } else { &r.handler },
                r.code_size,
                r.code_digest.get(..12).unwrap_or(&r.code_digest),
                r.timeout_ms,
                r.memory_mb
            ),
            None => println!("{:>6}  {:<24} {:>3}  built-in {kind}", f.function_id, f.name, f.version),
        }
    }
    Ok(0)
}
