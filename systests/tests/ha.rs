//! Dispatchers that stand in for each other (`--ha`) on one Redis, and the Redis layout
//! they share: a killed leader is replaced and every task finishes once; a stalled leader
//! that wakes up writes nothing; tasks stored by the hash layout of earlier releases are
//! recovered.

use volley_testbed::fixtures as common;

use common::*;
use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use volley_client::{connect, register_spec};
use volley_proto::api;
use volley_testbed::cluster::Signal;
use volley_testbed::HaMember;

/// Short, so that takeovers in tests take well under a second.
const LEASE_MS: u64 = 400;

/// `n` members on one Redis and prefix, the first leading, the others standing by,
/// with two workers (2 slots each) following them; and the lists of their addresses.
struct Group {
    members: Vec<HaMember>,
    urls: String,
    _workers: [Child; 2],
}

async fn group(url: &str, prefix: &str, label: &str, n: usize) -> Group {
    let logs = temp_dir(label);
    let extra = ["--heartbeat-ms", "100"];
    let mut first = HaMember::start(url, prefix, LEASE_MS, &logs, "a", &extra).expect("start");
    first.leads(Duration::from_secs(20)).await.expect("the first leads");
    let mut members = vec![first];
    for label in ["b", "c"].iter().take(n - 1) {
        members.push(HaMember::start(url, prefix, LEASE_MS, &logs, label, &extra).expect("start"));
    }
    let list = |f: fn(&HaMember) -> &str| members.iter().map(f).collect::<Vec<_>>().join(",");
    let (urls, endpoints) = (list(|m| &m.grpc), list(|m| &m.workers));
    Group {
        _workers: [worker(&endpoints, "w0"), worker(&endpoints, "w1")],
        urls,
        members,
    }
}

fn worker(endpoints: &str, name: &str) -> Child {
    Command::new(volley_testbed::binaries::path("worker").expect("worker binary"))
        .args([
            "2",
            endpoints,
            "--mode",
            "push",
            "--name",
            name,
            "--max-backoff-ms",
            "200",
        ])
        .env_remove("VOLLEY_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn worker")
}

/// Polls every task until each is terminal, through whichever dispatcher of `urls` leads.
async fn outcomes(urls: &str, ids: &[u64], limit: Duration) -> HashMap<u64, api::TaskInfo> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut done = HashMap::new();
    while done.len() < ids.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} finished",
            done.len(),
            ids.len()
        );
        if let Ok(mut client) = connect(urls).await {
            let pending: Vec<u64> = ids.iter().filter(|id| !done.contains_key(*id)).copied().collect();
            for id in &pending {
                let call = client.get_result(api::GetResultRequest { task_id: *id });
                let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), call).await else {
                    break;
                };
                let t = r.into_inner().task.expect("task");
                if t.state == api::TaskState::Completed as i32 || t.state == api::TaskState::Failed as i32 {
                    done.insert(*id, t);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done
}

async fn submit(urls: &str, spec: &str, n: usize) -> Vec<u64> {
    let mut client = connect(urls).await.expect("connect to the leader");
    let (f, args) = register_spec(&mut client, spec).await.expect("register");
    client
        .execute_batch(api::ExecuteBatchRequest {
            tasks: vec![api::ExecuteRequest { function_id: f, args }; n],
        })
        .await
        .expect("submit")
        .into_inner()
        .task_ids
}

/// Every task's stored bytes under `prefix`, to compare before and after.
async fn snapshot(url: &str, prefix: &str) -> HashMap<String, Vec<u8>> {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}task:*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    let mut out = HashMap::new();
    for k in keys {
        let v: Vec<u8> = redis::cmd("GET").arg(&k).query_async(&mut conn).await.expect("get");
        out.insert(k, v);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_standbys_takes_over_from_a_killed_leader_and_every_task_finishes_once() {
    let url = redis_url();
    let prefix = unique_prefix("ha-kill");
    let Group {
        mut members,
        urls,
        _workers,
    } = group(&url, &prefix, "ha-kill", 3).await;
    let ids = submit(&urls, "sleep:100", 40).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        members[1..].iter().all(|m| !m.log_text().contains("leading")),
        "standbys wait"
    );
    members[0].child.kill().await.expect("kill -9 the leader");
    let killed = std::time::Instant::now();
    let mut c = members.pop().expect("c");
    let mut b = members.pop().expect("b");
    let (mut b_ready, mut c_ready) = (b.ready.take().expect("b"), c.ready.take().expect("c"));
    let b_first = tokio::select! {
        _ = &mut b_ready => true,
        _ = &mut c_ready => false,
        _ = tokio::time::sleep(Duration::from_secs(10)) => panic!("no standby took over"),
    };
    let took = killed.elapsed();
    let (leader, other, mut other_ready) = if b_first { (b, c, c_ready) } else { (c, b, b_ready) };
    // Two leases later the other still stands by: one leader at a time.
    let second = tokio::time::timeout(Duration::from_millis(1000), &mut other_ready).await;
    assert!(second.is_err(), "both standbys lead:\n{}", other.log_text());

    // Submitted after the takeover, through the same list of addresses.
    let after = submit(&urls, "sleep:20", 20).await;
    let all: Vec<u64> = ids.iter().chain(&after).copied().collect();
    let done = outcomes(&urls, &all, Duration::from_secs(60)).await;
    assert!(
        done.values().all(|t| t.state == api::TaskState::Completed as i32),
        "every task completes: {:?}",
        done.values()
            .filter(|t| t.state != api::TaskState::Completed as i32)
            .collect::<Vec<_>>()
    );
    let log = leader.log_text();
    assert!(log.contains("leading") && log.contains("epoch=2"), "{log}");
    println!("takeover after kill -9 in {took:?}");
    leader.stop().await;
    other.stop().await;
    purge(&url, &prefix).await;
}

/// The value of `name` on a `/metrics` page.
fn gauge(page: &str, name: &str) -> Option<i64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_shows_its_role_on_its_metrics_address_and_the_leaders_page_after_a_takeover() {
    let url = redis_url();
    let prefix = unique_prefix("ha-metrics");
    let logs = temp_dir("ha-metrics");
    let mut a = HaMember::start(&url, &prefix, LEASE_MS, &logs, "a", &[]).expect("start");
    a.leads(Duration::from_secs(20)).await.expect("a leads");
    let address = format!("127.0.0.1:{}", free_port());
    let mut b = HaMember::start(&url, &prefix, LEASE_MS, &logs, "b", &["--metrics", &address]).expect("start");
    let page = format!("http://{address}/metrics");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let standby = loop {
        // Its page is up at once; the leader's epoch once it polled the lease.
        if let Ok((200, body)) = http_get(&page).await {
            if gauge(&body, "volley_ha_epoch") == Some(1) {
                break body;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no standby page:\n{}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(gauge(&standby, "volley_ha_leader"), Some(0), "{standby}");
    assert_eq!(gauge(&standby, "volley_store_up"), Some(1), "{standby}");
    assert!(
        !standby.contains("volley_tasks_queued"),
        "a standby has no tasks to show"
    );

    a.child.kill().await.expect("kill -9 the leader");
    b.leads(Duration::from_secs(10)).await.expect("b takes over");
    let (status, leader) = http_get(&page).await.expect("the leader's page, same address");
    assert_eq!(status, 200);
    assert_eq!(gauge(&leader, "volley_ha_leader"), Some(1), "{leader}");
    assert_eq!(gauge(&leader, "volley_ha_epoch"), Some(2), "{leader}");
    assert_eq!(gauge(&leader, "volley_ha_takeovers"), Some(1), "{leader}");
    assert!(leader.contains("volley_tasks_queued"), "{leader}");
    b.stop().await;
    purge(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_rides_out_a_redis_restart_with_one_leader_and_no_task_lost() {
    let mut redis = volley_testbed::RedisServer::start(true).expect("redis-server");
    let prefix = unique_prefix("ha-redis");
    let Group {
        mut members,
        urls,
        _workers,
    } = group(&redis.url(), &prefix, "ha-redis", 2).await;
    let ids = submit(&urls, "sleep:50", 60).await;

    // Down for longer than a lease: when it is back, the lease has lapsed, and exactly
    // one of the two leads (the old leader taking it back, or the standby taking over
    // and the old leader exiting deposed).
    redis.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.restart().expect("redis back");
    let done = outcomes(&urls, &ids, Duration::from_secs(60)).await;
    assert!(done.values().all(|t| t.state == api::TaskState::Completed as i32));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut b = members.pop().expect("b");
    let mut a = members.pop().expect("a");
    let a_alive = a.child.try_wait().expect("try_wait").is_none();
    let b_leads = b.ready.take().is_some_and(|mut r| r.try_recv().is_ok());
    assert!(
        a_alive != b_leads,
        "exactly one leads: a alive {a_alive}, b leads {b_leads}\na:\n{}\nb:\n{}",
        a.log_text(),
        b.log_text()
    );
    if !a_alive {
        assert!(a.log_text().contains("deposed"), "{}", a.log_text());
    }
    a.stop().await;
    b.stop().await;
}

/// Redis without persistence restarted empty: epochs count from 1 again, so the next
/// leader may take the very epoch the old one led. Its fence token differs, and the old
/// leader stands down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_lost_its_data_deposes_the_leader_even_when_the_epoch_repeats() {
    let mut redis = volley_testbed::RedisServer::start(false).expect("redis-server");
    let prefix = unique_prefix("ha-amnesia");
    let Group {
        mut members,
        urls,
        _workers,
    } = group(&redis.url(), &prefix, "ha-amnesia", 2).await;
    let mut b = members.pop().expect("b");
    let mut a = members.pop().expect("a");
    assert!(a.log_text().contains("epoch=1"), "{}", a.log_text());
    redis.restart().expect("redis back, empty");
    let status = tokio::time::timeout(Duration::from_secs(10), a.child.wait())
        .await
        .expect("the old leader exits")
        .expect("wait");
    assert_eq!(status.code(), Some(3), "deposed; log:\n{}", a.log_text());
    b.leads(Duration::from_secs(10)).await.expect("the standby leads");
    assert!(
        b.log_text().contains("leading epoch=1"),
        "the epoch repeats:\n{}",
        b.log_text()
    );
    let ids = submit(&urls, "sleep:20", 20).await;
    let done = outcomes(&urls, &ids, Duration::from_secs(30)).await;
    assert!(done.values().all(|t| t.state == api::TaskState::Completed as i32));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_leader_that_wakes_after_a_takeover_writes_nothing_and_exits() {
    let url = redis_url();
    let prefix = unique_prefix("ha-stall");
    let Group {
        mut members,
        urls,
        _workers,
    } = group(&url, &prefix, "ha-stall", 2).await;
    let ids = submit(&urls, "sleep:200", 30).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    members[0].signal(Signal::SIGSTOP).expect("stop");
    members[1]
        .leads(Duration::from_secs(10))
        .await
        .expect("the standby leads");
    // The stalled leader's address is first in every list; the standby serves anyway.
    let done = outcomes(&urls, &ids, Duration::from_secs(60)).await;
    assert!(done.values().all(|t| t.state == api::TaskState::Completed as i32));

    let before = snapshot(&url, &prefix).await;
    assert_eq!(before.len(), ids.len());
    let b = members.pop().expect("b");
    let mut a = members.pop().expect("a");
    a.signal(Signal::SIGCONT).expect("resume");
    let status = tokio::time::timeout(Duration::from_secs(10), a.child.wait())
        .await
        .expect("the old leader exits once awake")
        .expect("wait");
    assert_eq!(status.code(), Some(3), "deposed exit code; log:\n{}", a.log_text());
    assert!(a.log_text().contains("deposed"), "{}", a.log_text());
    let after = snapshot(&url, &prefix).await;
    assert!(before == after, "the old leader changed stored tasks");
    b.stop().await;
    purge(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_stored_as_hashes_by_earlier_releases_are_recovered_and_read() {
    let url = redis_url();
    let prefix = unique_prefix("old-layout");
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    // What the hash layout wrote: a noop function, one finished task and two unfinished.
    let spec = serde_json::to_string(&volley_proto::function::FunctionKind::Noop).expect("spec");
    let mut pipe = redis::pipe();
    pipe.cmd("SET").arg(format!("{prefix}seq:function")).arg(1).ignore();
    pipe.cmd("SET").arg(format!("{prefix}seq:task")).arg(3).ignore();
    pipe.cmd("HSET")
        .arg(format!("{prefix}function:1"))
        .arg(&[("name", "noop"), ("spec", spec.as_str()), ("version", "1")])
        .ignore();
    pipe.cmd("HSET")
        .arg(format!("{prefix}task:1"))
        .arg(&[
            ("function_id", "1"),
            ("args", ""),
            ("state", "completed"),
            ("result", "null"),
            ("attempts", "1"),
            ("worker", "old-worker"),
            ("submitted_us", "10"),
            ("completed_us", "20"),
        ])
        .ignore();
    for id in [2, 3] {
        pipe.cmd("HSET")
            .arg(format!("{prefix}task:{id}"))
            .arg(&[
                ("function_id", "1"),
                ("args", ""),
                ("state", if id == 2 { "queued" } else { "running" }),
                ("attempts", "1"),
                ("submitted_us", "10"),
            ])
            .ignore();
    }
    pipe.cmd("SADD")
        .arg(format!("{prefix}unfinished"))
        .arg(&[2, 3])
        .ignore();
    pipe.query_async::<()>(&mut conn).await.expect("write the old layout");

    let spec = volley_testbed::ClusterSpec::new(volley_proto::Mode::Push, 1, 2)
        .store(url.as_str())
        .args(["--redis-prefix", prefix.as_str()])
        .label("old-layout");
    let cluster = volley_testbed::Cluster::start(spec).await.expect("cluster");
    let done = outcomes(&cluster.grpc_url(), &[1, 2, 3], Duration::from_secs(30)).await;
    assert_eq!(done[&1].worker, "old-worker", "an old finished task reads as it was");
    assert_eq!(done[&1].result, "null");
    for id in [2, 3] {
        assert_eq!(done[&id].state, api::TaskState::Completed as i32, "{:?}", done[&id]);
        assert_eq!(done[&id].attempts, 2, "its earlier attempt counts");
    }
    // New tasks take ids after the old ones, in the new layout.
    let client = connect(&cluster.grpc_url()).await.expect("connect");
    let outcome = volley_client::run_batch(&client, vec![(1, String::new()); 3], 3, Duration::from_secs(20))
        .await
        .expect("new tasks");
    assert!(outcome
        .tasks
        .iter()
        .all(|t| t.task_id > 3 && t.state == api::TaskState::Completed as i32));
    cluster.stop().await.expect("stop");
    purge(&url, &prefix).await;
}
