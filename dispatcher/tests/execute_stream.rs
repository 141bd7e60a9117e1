//! What `ExecuteStream` promises: each request answered in order, accepted or refused
//! (and the call goes on), each accepted task's outcome exactly once on the call, and the
//! end only after the client closed its side and the last outcome was sent.

mod common;

use common::Dispatcher;
use futures::StreamExt;
use std::collections::HashMap;
use std::time::Duration;
use volley_proto::api::{self, execute_stream_response::Event};
use volley_proto::function::FunctionKind;
use volley_proto::Mode;

fn request(function_id: u64, n: usize) -> api::ExecuteBatchRequest {
    api::ExecuteBatchRequest {
        tasks: (0..n)
            .map(|_| api::ExecuteRequest {
                function_id,
                args: String::new(),
            })
            .collect(),
    }
}

/// A call's opening, with a `volley-accept` header if given.
fn call<S>(requests: S, accept: Option<&'static str>) -> tonic::Request<S> {
    let mut call = tonic::Request::new(requests);
    if let Some(value) = accept {
        call.metadata_mut()
            .insert("volley-accept", tonic::metadata::MetadataValue::from_static(value));
    }
    call
}

/// Every event of a call until it ends.
async fn events(d: &mut Dispatcher, requests: Vec<api::ExecuteBatchRequest>) -> Vec<Event> {
    events_with(d, requests, None).await
}

async fn events_with(
    d: &mut Dispatcher,
    requests: Vec<api::ExecuteBatchRequest>,
    accept: Option<&'static str>,
) -> Vec<Event> {
    let mut stream = d
        .client
        .execute_stream(call(futures::stream::iter(requests), accept))
        .await
        .expect("the call opens")
        .into_inner();
    let mut out = Vec::new();
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the call moves or ends")
    {
        out.push(msg.expect("an event").event.expect("an event has a kind"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_answered_in_order_and_every_accepted_task_reports_once() {
    answered_in_order_and_once(Duration::ZERO, None).await;
}

/// A call that asks for its acceptances with its outcomes (`volley-accept:
/// with-outcome`) gets them later, never out of order or with anything missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_acceptances_sent_with_outcomes_requests_are_still_answered_in_order_and_tasks_report_once() {
    answered_in_order_and_once(Duration::ZERO, Some("with-outcome")).await;
}

/// Acceptances held for their outcomes (`--stream-ack-linger-us`) change when they
/// leave, never their order or what reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_linger_requests_are_still_answered_in_order_and_tasks_report_once() {
    answered_in_order_and_once(Duration::from_millis(2), None).await;
}

async fn answered_in_order_and_once(linger: Duration, accept: Option<&'static str>) {
    let mut d = Dispatcher::start(Mode::Local, |c| {
        c.local_slots = 2;
        c.stream_ack_linger = linger;
    })
    .await;
    let noop = d.register(FunctionKind::Noop).await;
    let sleep = d.register(FunctionKind::Sleep { ms: 150 }).await;
    let got = events_with(
        &mut d,
        vec![
            request(noop, 5),
            request(999, 1),
            request(sleep, 3),
            request(noop, 0),
            request(noop, 1),
        ],
        accept,
    )
    .await;

    let mut answers = Vec::new();
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for e in &got {
        match e {
            Event::Accepted(a) => answers.push(Ok(a.task_ids.clone())),
            Event::Refused(r) => answers.push(Err((r.code, r.message.clone()))),
            Event::Finished(f) => {
                for t in &f.tasks {
                    assert_eq!(t.state, api::TaskState::Completed as i32, "{t:?}");
                    *seen.entry(t.task_id).or_default() += 1;
                }
            }
        }
    }
    assert_eq!(answers.len(), 5, "one answer per request: {answers:?}");
    let accepted: Vec<u64> = [0, 2, 4]
        .iter()
        .flat_map(|&i| answers[i].clone().expect("accepted"))
        .collect();
    assert_eq!(
        answers
            .iter()
            .map(|a| a.as_ref().map(Vec::len).ok())
            .collect::<Vec<_>>(),
        vec![Some(5), None, Some(3), None, Some(1)]
    );
    let (code, message) = answers[1].clone().expect_err("an unknown function is refused");
    assert_eq!(code, tonic::Code::NotFound as i32, "{message}");
    let (code, message) = answers[3].clone().expect_err("an empty request is refused");
    assert_eq!(code, tonic::Code::InvalidArgument as i32, "{message}");
    assert_eq!(seen.len(), accepted.len(), "{seen:?}");
    assert!(accepted.iter().all(|id| seen.get(id) == Some(&1)), "{seen:?}");
    // The call outlived the client's side: the sleeps reported after it closed.
    assert!(matches!(got.last(), Some(Event::Finished(_))));

    // The stored records agree with the call.
    for id in accepted {
        let r = d
            .client
            .get_result(api::GetResultRequest { task_id: id })
            .await
            .expect("get_result")
            .into_inner()
            .task
            .expect("a record");
        assert_eq!(r.state, api::TaskState::Completed as i32);
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_no_requests_ends_at_once() {
    let mut d = Dispatcher::start(Mode::Local, |_| {}).await;
    assert!(events(&mut d, Vec::new()).await.is_empty());
    d.stop().await;
}

async fn next(stream: &mut tonic::Streaming<api::ExecuteStreamResponse>) -> Event {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event in time")
        .expect("the call is open")
        .expect("an event")
        .event
        .expect("a kind")
}

/// A call whose requests are sent one by one through the returned sender.
async fn open_call(
    d: &mut Dispatcher,
    accept: Option<&'static str>,
) -> (
    tokio::sync::mpsc::Sender<api::ExecuteBatchRequest>,
    tonic::Streaming<api::ExecuteStreamResponse>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let requests = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let stream = d
        .client
        .execute_stream(call(requests, accept))
        .await
        .expect("opens")
        .into_inner();
    (tx, stream)
}

/// The next event is the outcome of the tasks `accepted` named.
async fn outcome_of(stream: &mut tonic::Streaming<api::ExecuteStreamResponse>, accepted: &api::ExecuteBatchResponse) {
    let Event::Finished(f) = next(stream).await else {
        panic!("then the outcome")
    };
    assert_eq!(f.tasks.iter().map(|t| t.task_id).collect::<Vec<_>>(), accepted.task_ids);
}

/// The client closes its side; the call ends with nothing more.
async fn ends(
    tx: tokio::sync::mpsc::Sender<api::ExecuteBatchRequest>,
    mut stream: tonic::Streaming<api::ExecuteStreamResponse>,
) {
    drop(tx);
    let end = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("ends");
    assert!(end.is_none(), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_task_at_a_time_each_waits_for_its_outcome_on_the_open_call() {
    one_at_a_time(Duration::ZERO, FunctionKind::Noop).await;
}

/// A task slower than the linger: its acceptance leaves when the linger ends, before
/// the outcome, not with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_linger_a_slow_task_is_accepted_before_it_finishes() {
    one_at_a_time(Duration::from_millis(2), FunctionKind::Sleep { ms: 300 }).await;
}

async fn one_at_a_time(linger: Duration, kind: FunctionKind) {
    let mut d = Dispatcher::start(Mode::Local, |c| c.stream_ack_linger = linger).await;
    let noop = d.register(kind.clone()).await;
    let slow = matches!(kind, FunctionKind::Sleep { .. });
    let (tx, mut stream) = open_call(&mut d, None).await;
    for _ in 0..(if slow { 3 } else { 20 }) {
        tx.send(request(noop, 1)).await.expect("send");
        let sent = std::time::Instant::now();
        let Event::Accepted(a) = next(&mut stream).await else {
            panic!("the answer comes before the outcome")
        };
        if slow {
            assert!(
                sent.elapsed() < Duration::from_millis(250),
                "accepted after {:?}: held until the outcome",
                sent.elapsed()
            );
        }
        outcome_of(&mut stream, &a).await;
    }
    ends(tx, stream).await;
    d.stop().await;
}

/// With `volley-accept: with-outcome`, a slow task's acceptance waits for the call's next
/// event: a refusal (which is never held) takes it along at once, and otherwise its own
/// outcome, which it comes just before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_outcome_an_acceptance_leaves_with_the_next_refusal_or_just_before_its_outcome() {
    let mut d = Dispatcher::start(Mode::Local, |_| {}).await;
    let sleep = d.register(FunctionKind::Sleep { ms: 400 }).await;
    let (tx, mut stream) = open_call(&mut d, Some("with-outcome")).await;

    // Alone, the acceptance waits for the outcome and comes right before it.
    tx.send(request(sleep, 1)).await.expect("send");
    let sent = std::time::Instant::now();
    let Event::Accepted(a) = next(&mut stream).await else {
        panic!("the answer comes first")
    };
    assert!(
        sent.elapsed() >= Duration::from_millis(300),
        "accepted after {:?}, before its outcome could be",
        sent.elapsed()
    );
    outcome_of(&mut stream, &a).await;

    // A refusal behind it is not held, and takes the acceptance along in order.
    tx.send(request(sleep, 1)).await.expect("send");
    tx.send(request(999, 1)).await.expect("send");
    let sent = std::time::Instant::now();
    let Event::Accepted(a) = next(&mut stream).await else {
        panic!("the first request's answer comes first")
    };
    let Event::Refused(r) = next(&mut stream).await else {
        panic!("then the second's")
    };
    assert_eq!(r.code, tonic::Code::NotFound as i32, "{}", r.message);
    assert!(
        sent.elapsed() < Duration::from_millis(300),
        "the refusal was held {:?}",
        sent.elapsed()
    );
    outcome_of(&mut stream, &a).await;
    ends(tx, stream).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_volley_accept_value_is_an_invalid_argument() {
    let mut d = Dispatcher::start(Mode::Local, |_| {}).await;
    let err = d
        .client
        .execute_stream(call(futures::stream::iter(Vec::new()), Some("later")))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{}", err.message());
    assert!(
        err.message().contains("volley-accept") && err.message().contains("with-outcome"),
        "{}",
        err.message()
    );
    d.stop().await;
}
