//! A short failover run per fault: the leader of an `--ha` pair SIGKILLed, then one
//! SIGSTOPped and resumed, under open-loop load; the audit of every task after each.

use std::time::Duration;
use volley_perf::studies::failover::{self, FailoverSpec, Fault};

async fn short_failover(fault: Fault) -> failover::FailoverReport {
    let spec = FailoverSpec {
        fault,
        rate: 400.0,
        duration: Duration::from_secs(8),
        fault_at: Duration::from_secs(2),
        lease: Duration::from_millis(300),
        workers: 2,
        slots: 2,
        aof: false,
        resume_after: Duration::from_secs(2),
        out: volley_testbed::fixtures::temp_dir(&format!("failover-{fault:?}")),
        seed: 3,
    };
    let report = failover::run(&spec).await.expect("the scenario ran");
    eprintln!("{report:#?}");
    assert!(report.sound(), "{report:#?}");
    assert!(report.acknowledged > 1000, "{}", report.acknowledged);
    assert_eq!(
        report.completed + report.failed + report.refused + report.in_doubt,
        report.sent
    );
    assert!(report.stored >= report.acknowledged);
    assert!(report.during.tasks > 0 && report.after.tasks > 0, "service came back");
    report
}

/// One test for both faults: each runs a pair, workers and a load on the 2 cores, so
/// they run one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_or_stalled_is_replaced_and_no_task_is_lost() {
    let killed = short_failover(Fault::Kill).await;
    assert_eq!(killed.old_leader_exit, None);
    let stalled = short_failover(Fault::Stall).await;
    assert_eq!(stalled.old_leader_exit, Some(3), "a resumed leader exits deposed");
    assert!(
        stalled.fenced_writes.is_some(),
        "its last words count its refused writes"
    );
}
