//! The open-loop engine both `load` and `replay` run on: requests leave at their
//! intended times from a schedule built beforehand, each request's fate is kept in the
//! [`Ledger`], and the run ends at a fixed deadline, however large the backlog.

use super::completions::{self, Event, RunClock};
use super::ledger::Ledger;
use super::transport::{Link, Reply, Transport};
use super::{counters, pacer, process_cpu, LEAD};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use volley_client::commands::Target;
use volley_client::Client;

/// How long a run that lost its dispatcher tries the others of its list at a time.
const FOLLOW_WITHIN: Duration = Duration::from_secs(3);
/// How often a run with no dispatcher tries its list again.
const FOLLOW_EVERY: Duration = Duration::from_millis(50);
use volley_proto::api;

/// What a driven run leaves behind.
pub struct Driven {
    /// Every request's fate, indexed like the schedule.
    pub ledger: Ledger,
    /// The run's clock (its start, here and in Unix time).
    pub clock: RunClock,
    /// CPU time this process spent on the run.
    pub cpu: Duration,
    /// Times the live result stream broke and was reopened.
    pub breaks: u64,
    /// Why it last broke.
    pub last_break: String,
    /// The last transport error of a send, if any.
    pub transport_error: String,
    /// The dispatcher's mode and counters before the run, if it could be asked.
    pub before: Option<(String, api::Counters)>,
    /// The same after.
    pub after: Option<(String, api::Counters)>,
}

/// Connects `client` to whichever dispatcher of `follow` answers, at most every
/// [`FOLLOW_EVERY`]: while none does, every due request would try again.
async fn reconnect(follow: &Target, client: &mut Client, last: &mut Option<std::time::Instant>) {
    if last.is_some_and(|t| t.elapsed() < FOLLOW_EVERY) {
        return;
    }
    *last = Some(std::time::Instant::now());
    if let Ok(Ok(c)) = tokio::time::timeout(FOLLOW_WITHIN, follow.connect()).await {
        *client = c;
    }
}

/// Sends request `i` (built by `requests(i)`) at `schedule[i]` from the start over
/// `transport`, collects every outcome, and stops at `until` from the start. With
/// `follow` (a list of dispatchers under `--ha`), a break reconnects to whichever of
/// them answers, so the run goes on through a failover.
pub async fn drive(
    client: &Client,
    follow: Option<&Target>,
    transport: Transport,
    schedule: Arc<Vec<Duration>>,
    requests: impl Fn(usize) -> api::ExecuteRequest,
    until: Duration,
) -> anyhow::Result<Driven> {
    let mut client = client.clone();
    let before = counters(&client).await;
    let cpu_before = process_cpu();

    let clock = RunClock::starting_in(LEAD);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut link = Link::open(&client, transport).await.map_err(|s| {
        anyhow::anyhow!(
            "opening the {} link: {} ({:?})",
            transport.as_str(),
            s.message(),
            s.code()
        )
    })?;
    let live = match link.carries_results() {
        true => None,
        false => Some(completions::watch_all(&client, clock, events_tx.clone()).await?),
    };
    let mut pacer =
        pacer::Pacer::new(schedule.clone(), clock.start, pacer::DEFAULT_SLACK).context("starting the pacer's timer")?;
    let mut ledger = Ledger::new(schedule.len());
    let mut catching_up: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let mut caught_up = std::collections::HashSet::new();
    let (mut pacing, mut breaks, mut last_break) = (true, 0u64, String::new());
    let mut last_transport_error = String::new();
    // Made once: a fresh `sleep_until` each turn would enter and leave the timer wheel
    // on every request and reply.
    let deadline = tokio::time::sleep_until(tokio::time::Instant::from_std(clock.start + until));
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut held: Option<std::ops::Range<usize>> = None;
    let mut last_follow: Option<std::time::Instant> = None;
    loop {
        while link.can_send() {
            let Some(range) = held.take() else { break };
            let end = range.end.min(range.start + pacer::MAX_DUE);
            if end < range.end {
                held = Some(end..range.end);
            }
            ledger.sent(range.start..end, clock.now());
            let request = api::ExecuteBatchRequest {
                tasks: (range.start..end).map(&requests).collect(),
            };
            let due = pacer::Due {
                first: range.start,
                end,
            };
            link.send(&client, due, request).await;
        }
        if !pacing && held.is_none() && ledger.settled() {
            break;
        }
        tokio::select! {
            d = pacer.next(), if pacing => match d.context("waiting for the pacer's timer")? {
                Some(d) => {
                    // Past the in-flight bound, due requests wait here and leave together
                    // when an answer frees a stream: late (and counted so), never lost.
                    held = Some(held.map_or(d.first..d.end, |h: std::ops::Range<usize>| h.start..d.end));
                }
                None => pacing = false,
            },
            reply = link.reply() => match reply {
                Reply::Answer(d, Ok(ids)) if ids.len() == d.end - d.first => ledger.acknowledged(d.first..d.end, &ids),
                Reply::Answer(d, Ok(ids)) => {
                    let why = format!("the dispatcher named {} tasks for {} requests", ids.len(), d.end - d.first);
                    ledger.refused(d.first..d.end, tonic::Code::Internal, &why);
                }
                // A status the dispatcher sent is a refusal; a transport error (it has a
                // source: the connection, not the dispatcher, failed) leaves unknown
                // whether the dispatcher took the tasks.
                Reply::Answer(d, Err(s)) if std::error::Error::source(&s).is_none() => {
                    ledger.refused(d.first..d.end, s.code(), s.message())
                }
                Reply::Answer(d, Err(s)) => {
                    ledger.lost_in_transit(d.first..d.end);
                    last_transport_error = format!("{} ({:?})", s.message(), s.code());
                }
                Reply::Finished(tasks) => {
                    let at = clock.now();
                    tasks.into_iter().for_each(|t| {
                        let (id, f) = completions::finish(t, clock, at, false);
                        ledger.finished(id, f);
                    });
                }
                Reply::Unsent(d, why) => {
                    ledger.refused(d.first..d.end, tonic::Code::Unavailable, &why);
                    last_transport_error = why;
                    if let Some(f) = follow {
                        reconnect(f, &mut client, &mut last_follow).await;
                    }
                }
                Reply::Broke { why, unanswered } => {
                    breaks += 1;
                    unanswered.iter().for_each(|d| ledger.lost_in_transit(d.first..d.end));
                    last_transport_error.clone_from(&why);
                    last_break = why;
                    if let Some(f) = follow {
                        reconnect(f, &mut client, &mut last_follow).await;
                    }
                }
            },
            Some(event) = events.recv() => match event {
                Event::Finished(done) => done.into_iter().for_each(|(id, f)| ledger.finished(id, f)),
                Event::Unknown(ids) => ids.into_iter().for_each(|id| ledger.unknown(id)),
                Event::Broke(why) => {
                    breaks += 1;
                    last_break = why;
                }
            },
            _ = tick.tick() => {
                link.tidy();
                // After a break, results may have gone by unseen: once sending is over,
                // read back by id whatever has no result yet.
                if !pacing && (breaks > 0 || ledger.lost_early) {
                    let ids: Vec<u64> = ledger.unresolved_tasks().into_iter().filter(|id| caught_up.insert(*id)).collect();
                    if !ids.is_empty() {
                        catching_up.extend(completions::catch_up(&client, clock, ids, &events_tx));
                    }
                }
            }
            _ = &mut deadline => break,
        }
    }
    if let Some(live) = live {
        live.abort();
    }
    catching_up.iter().for_each(|h| h.abort());
    link.close();
    let cpu = process_cpu().saturating_sub(cpu_before);
    let after = counters(&client).await;
    Ok(Driven {
        ledger,
        clock,
        cpu,
        breaks,
        last_break,
        transport_error: last_transport_error,
        before,
        after,
    })
}
