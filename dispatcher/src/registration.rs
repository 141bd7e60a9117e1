//! What a worker's `Hello` may say. Every field a peer sends is bounded here before it is
//! kept, shown by `ClusterInfo` or logged: a 5 MiB name would make every `ClusterInfo`
//! too large for stock clients, and a newline in it would forge log lines.

use crate::core::WorkerSpec;
use volley_proto::text::escaped;
use volley_proto::Mode;

/// Slots one worker may announce.
pub const MAX_WORKER_SLOTS: u32 = 4096;
/// Bytes of a worker's name, host name or function name.
pub const MAX_WORKER_TEXT: usize = 256;
/// Bytes of a worker's release string.
pub const MAX_VERSION_TEXT: usize = 64;

/// Why a registration is refused, in words for the worker's operator; `None`: admitted.
/// `version` and `expect_mode` are the Hello's; `mode` is this dispatcher's; `holder` is
/// the live worker already registered under the same name over another connection.
pub fn refusal(
    spec: &WorkerSpec,
    version: &str,
    expect_mode: Option<Mode>,
    mode: Mode,
    holder: Option<&WorkerSpec>,
) -> Option<String> {
    let texts = [
        ("name", spec.name.as_str(), MAX_WORKER_TEXT),
        ("host", spec.host.as_str(), MAX_WORKER_TEXT),
        ("function", spec.function.as_deref().unwrap_or(""), MAX_WORKER_TEXT),
        ("version", version, MAX_VERSION_TEXT),
    ];
    for (field, text, max) in texts {
        if text.len() > max {
            return Some(format!(
                "the worker's {field} has {} bytes; at most {max} are allowed",
                text.len()
            ));
        }
        if text.chars().any(char::is_control) {
            return Some(format!(
                "the worker's {field} {} has control characters",
                escaped(text, 64)
            ));
        }
    }
    if spec.name.is_empty() {
        return Some("a worker needs a name".into());
    }
    if let Some(expected) = expect_mode.filter(|m| *m != mode) {
        return Some(format!(
            "this dispatcher runs in {mode} mode, but the worker was started with --mode {}",
            expected.as_str()
        ));
    }
    if spec.slots == 0 || spec.slots > MAX_WORKER_SLOTS {
        return Some(format!(
            "a worker must announce between 1 and {MAX_WORKER_SLOTS} slots, not {}",
            spec.slots
        ));
    }
    match holder {
        Some(holder) if !may_replace(holder, spec) => Some(format!(
            "the name {} belongs to a live worker (pid {} on {}); give this one another --name",
            escaped(&spec.name, 64),
            holder.pid,
            escaped(&holder.host, 64)
        )),
        _ => None,
    }
}

/// Whether a new `Hello` under a name already registered may replace that registration:
/// only the same process reconnecting (same host and pid). Anyone else is refused, so a
/// peer cannot take over a live worker's name and make the real one flap.
fn may_replace(registered: &WorkerSpec, newcomer: &WorkerSpec) -> bool {
    registered.host == newcomer.host && registered.pid == newcomer.pid
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Capacity;

    fn spec(name: &str, host: &str, pid: u32) -> WorkerSpec {
        WorkerSpec {
            name: name.into(),
            host: host.into(),
            pid,
            slots: 2,
            capacity: Capacity::Slots,
            monitored: true,
            function: None,
            start: None,
        }
    }

    #[test]
    fn oversized_or_forged_fields_are_refused_with_their_size_not_their_text() {
        let long = spec(&"n".repeat(5 << 20), "h", 1);
        let why = refusal(&long, "0.1.0", None, Mode::Push, None).unwrap();
        assert!(why.len() < 100 && why.contains("5242880 bytes"), "{why}");
        let forged = spec("w1\nINFO volley: forged", "h", 1);
        let why = refusal(&forged, "0.1.0", None, Mode::Push, None).unwrap();
        assert!(!why.contains('\n') && why.contains("\\n"), "{why}");
        assert!(refusal(&spec("w", "h", 1), &"v".repeat(65), None, Mode::Push, None).is_some());
        assert!(refusal(&spec("", "h", 1), "0.1.0", None, Mode::Push, None).is_some());
        assert_eq!(
            refusal(&spec("w", "h", 1), "0.1.0", Some(Mode::Push), Mode::Push, None),
            None
        );
        assert!(refusal(&spec("w", "h", 1), "0.1.0", Some(Mode::Pull), Mode::Push, None).is_some());
    }

    #[test]
    fn only_the_same_process_may_take_a_name_over() {
        assert!(may_replace(&spec("w", "h", 7), &spec("w", "h", 7)));
        let holder = spec("w", "h", 7);
        let why = refusal(&spec("w", "h", 8), "0.1.0", None, Mode::Push, Some(&holder)).unwrap();
        assert!(why.contains("belongs to a live worker"), "{why}");
        assert_eq!(
            refusal(&spec("w", "h", 7), "0.1.0", None, Mode::Push, Some(&holder)),
            None
        );
        assert!(!may_replace(&spec("w", "h", 7), &spec("w", "h", 8)));
        assert!(!may_replace(&spec("w", "h", 7), &spec("w", "other", 7)));
    }
}
