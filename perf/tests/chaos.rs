//! A short chaos run: every kind of fault once or twice, then the audit of every task.
//! Push mode restarts its dispatcher; pull mode runs an `--ha` pair and kills its leader.

use std::time::Duration;
use volley_perf::studies::chaos::{self, ChaosSpec};
use volley_proto::Mode;

async fn short_chaos(mode: Mode, ha: bool) {
    let spec = ChaosSpec {
        mode,
        ha,
        ha_lease_ms: 500,
        workers: 3,
        slots: 2,
        duration: Duration::from_secs(12),
        rate: 150.0,
        worker_kills: 2,
        ..ChaosSpec::default()
    };
    let report = chaos::run(&spec).await.expect("the scenario ran");
    eprintln!("{}", report.summary());
    assert!(report.passed(), "{:#?}", report.problems);
    assert_eq!(
        (
            report.workers_killed,
            report.workers_stalled,
            report.dispatcher_restarts + report.leader_kills,
            report.redis_restarts
        ),
        (2, 1, 1, 1)
    );
    assert_eq!(report.leader_kills, usize::from(ha));
    assert_eq!(report.takeover_ms.len(), usize::from(ha));
    if ha {
        // A standby waiting on the same ports leads within a lease and a poll.
        assert!(report.takeover_ms[0] < 5_000.0, "{:?}", report.takeover_ms);
    }
    assert!(report.acknowledged > 500, "{}", report.acknowledged);
    assert!(report.stored >= report.acknowledged);
    assert_eq!(report.kill_detect_ms.len(), 2);
    assert_eq!(report.dispatcher_recover_ms.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_mode_loses_nothing_under_chaos() {
    short_chaos(Mode::Push, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_mode_on_an_ha_pair_loses_nothing_under_chaos_and_a_leader_kill() {
    short_chaos(Mode::Pull, true).await;
}
