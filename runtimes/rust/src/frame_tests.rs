//! The frame codec's tests: every frame round-trips, and bytes that are not a frame are
//! refused with why.

use super::*;
use proptest::prelude::*;

fn samples() -> Vec<Frame> {
    let failure = Failure {
        kind: "ValueError".into(),
        message: "naïve ☃".into(),
        traceback: "line 1\nline 2".into(),
    };
    vec![
        Frame::Init {
            protocol: PROTOCOL_VERSION,
            function: "f".into(),
            handler: "handle".into(),
            code: "/tmp/x.py".into(),
        },
        Frame::Ready {
            runtime: "python".into(),
            version: "3.11.7".into(),
            init_us: 1234,
        },
        Frame::InitFailed(failure.clone()),
        Frame::Invoke {
            task_id: u64::MAX,
            attempt: 2,
            deadline_ms: 1_700_000_000_000,
            args: "{\"a\":[1,2]}".into(),
        },
        Frame::Result {
            task_id: 7,
            result: "\"ok\"".into(),
        },
        Frame::Error {
            task_id: 8,
            failure: failure.clone(),
            value: None,
        },
        Frame::Error {
            task_id: 9,
            failure,
            value: Some("gASVBQ==\n".into()),
        },
    ]
}

#[test]
fn every_frame_round_trips_whole_and_byte_by_byte() {
    let mut stream = Vec::new();
    for frame in samples() {
        let bytes = frame.encode();
        assert_eq!(read_frame(&mut bytes.as_slice()).unwrap(), Some(frame.clone()));
        stream.extend(bytes);
    }
    let mut decoder = Decoder::default();
    let mut got = Vec::new();
    for b in stream {
        decoder.push(&[b]);
        while let Some(f) = decoder.next_frame().unwrap() {
            got.push(f);
        }
    }
    assert_eq!(got, samples());
    assert_eq!(decoder.pending(), 0);
}

#[test]
fn lengths_are_judged_before_the_body_arrives() {
    let mut decoder = Decoder::default();
    decoder.push(&(MAX_FRAME_BYTES as u32 + 1).to_be_bytes());
    assert_eq!(decoder.next_frame(), Err(FrameError::Length(MAX_FRAME_BYTES + 1)));
    let mut decoder = Decoder::default();
    decoder.push(&[0, 0, 0, 0]);
    assert_eq!(decoder.next_frame(), Err(FrameError::Length(0)));
}

#[test]
fn truncated_trailing_and_unknown_frames_are_refused() {
    assert_eq!(Frame::decode(&[99]), Err(FrameError::Kind(99)));
    assert!(matches!(Frame::decode(&[RESULT, 0, 0]), Err(FrameError::Shape(_))));
    let mut body = Frame::Result {
        task_id: 1,
        result: "1".into(),
    }
    .encode()[4..]
        .to_vec();
    body.push(0);
    assert!(matches!(Frame::decode(&body), Err(FrameError::Shape(_))));
    let mut bad_text = vec![RESULT];
    bad_text.extend(1u64.to_be_bytes());
    bad_text.extend(2u32.to_be_bytes());
    bad_text.extend([0xff, 0xfe]);
    assert_eq!(Frame::decode(&bad_text), Err(FrameError::Text));
}

proptest! {
    #[test]
    fn garbage_never_panics_and_errors_stay_errors(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..32)) {
        let mut decoder = Decoder::default();
        for chunk in chunks {
            decoder.push(&chunk);
            while let Ok(Some(_)) = decoder.next_frame() {}
        }
    }

    #[test]
    fn any_texts_round_trip(id in any::<u64>(), a in ".*", b in ".*", c in ".*") {
        let frame = Frame::Error { task_id: id, failure: Failure { kind: a, message: b, traceback: c }, value: None };
        let bytes = frame.encode();
        prop_assert_eq!(Frame::decode(&bytes[4..]), Ok(frame));
    }
}
