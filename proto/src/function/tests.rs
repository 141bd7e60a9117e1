use super::*;

const MAX: u64 = 60_000;

#[test]
fn spec_strings_parse() {
    assert_eq!(FunctionKind::parse_spec("noop").unwrap().0, FunctionKind::Noop);
    assert_eq!(
        FunctionKind::parse_spec("sleep:250").unwrap().0,
        FunctionKind::Sleep { ms: 250 }
    );
    assert_eq!(
        FunctionKind::parse_spec("spin:5").unwrap().0,
        FunctionKind::Spin { ms: 5 }
    );
    assert_eq!(
        FunctionKind::parse_spec("trace:spin").unwrap().0,
        FunctionKind::Trace {
            spin: true,
            max_memory_mb: 256
        }
    );
    assert!(FunctionKind::parse_spec("trace:fly").is_err());
    let trace = FunctionKind::parse_spec("trace").unwrap().0;
    assert_eq!(trace.label(), "trace");
    assert_eq!(FunctionKind::from_api(Some(&trace.to_api())).unwrap(), trace);
    assert_eq!(
        trace.resolve(r#"{"ms": 40, "mb": 12}"#, MAX).unwrap(),
        Job::Trace {
            ms: 40,
            mb: 12,
            spin: false
        }
    );
    for bad in [
        "",
        r#"{"ms": 40}"#,
        r#"{"ms": 40, "mb": 257}"#,
        r#"{"ms": 61000, "mb": 1}"#,
        r#"{"ms": 1, "mb": 1, "x": 2}"#,
    ] {
        assert!(trace.resolve(bad, MAX).is_err(), "{bad} was accepted");
    }
    let (echo, args) = FunctionKind::parse_spec("echo:hi there").unwrap();
    assert_eq!(echo, FunctionKind::Echo);
    assert_eq!(args, "\"hi there\"");
    assert!(FunctionKind::parse_spec("sleep").is_err());
    assert!(FunctionKind::parse_spec("sleep:-3").is_err());
    assert!(FunctionKind::parse_spec("launch:1")
        .unwrap_err()
        .0
        .contains("unknown function"));
}

#[test]
fn args_override_parameters() {
    let sleep = FunctionKind::Sleep { ms: 10 };
    assert_eq!(sleep.resolve("", MAX).unwrap(), Job::Sleep { ms: 10 });
    assert_eq!(sleep.resolve(r#"{"ms": 250}"#, MAX).unwrap(), Job::Sleep { ms: 250 });
    let fail = FunctionKind::Fail { message: "a".into() };
    assert_eq!(
        fail.resolve(r#"{"message":"b"}"#, MAX).unwrap(),
        Job::Fail { message: "b".into() }
    );
    assert_eq!(
        FunctionKind::Echo.resolve("[1,2]", MAX).unwrap(),
        Job::Echo {
            payload: "[1,2]".into()
        }
    );
}

#[test]
fn bad_args_are_explained() {
    let spin = FunctionKind::Spin { ms: 10 };
    assert!(spin.resolve("{", MAX).unwrap_err().0.contains("not valid JSON"));
    assert!(spin
        .resolve(r#"{"ms": -5}"#, MAX)
        .unwrap_err()
        .0
        .contains("whole number"));
    assert!(spin
        .resolve(r#"{"ms": 1.5}"#, MAX)
        .unwrap_err()
        .0
        .contains("whole number"));
    assert!(spin
        .resolve(r#"{"msec": 5}"#, MAX)
        .unwrap_err()
        .0
        .contains("unknown argument 'msec'"));
    assert!(spin.resolve("[]", MAX).unwrap_err().0.contains("JSON object"));
    assert!(spin.resolve(r#"{"ms": 60001}"#, MAX).unwrap_err().0.contains("exceeds"));
    assert!(FunctionKind::Sleep { ms: 60_001 }.validate(MAX).is_err());
}

#[test]
fn api_round_trip() {
    for kind in [
        FunctionKind::Noop,
        FunctionKind::Sleep { ms: 3 },
        FunctionKind::Spin { ms: 4 },
        FunctionKind::Echo,
        FunctionKind::Fail { message: "x".into() },
    ] {
        assert_eq!(FunctionKind::from_api(Some(&kind.to_api())).unwrap(), kind);
    }
    assert!(FunctionKind::from_api(None).is_err());
    assert!(FunctionKind::from_api(Some(&api::FunctionSpec { kind: None })).is_err());
}

#[test]
fn only_work_that_takes_no_time_finishes_at_once() {
    assert!(Job::Noop.finishes_at_once());
    assert!(Job::Echo { payload: "1".into() }.finishes_at_once());
    assert!(Job::Fail { message: "x".into() }.finishes_at_once());
    assert!(Job::Sleep { ms: 0 }.finishes_at_once());
    assert!(!Job::Sleep { ms: 1 }.finishes_at_once());
    assert!(!Job::Spin { ms: 1 }.finishes_at_once());
    assert!(!Job::Trace {
        ms: 0,
        mb: 0,
        spin: false
    }
    .finishes_at_once());
}
