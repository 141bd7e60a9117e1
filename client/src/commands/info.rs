//! `client info`: mode, store, workers, queue and counters of a running dispatcher.

use super::{status_error, Target};
use serde_json::json;
use volley_proto::api;

/// Prints the dispatcher's state.
pub async fn run(target: &Target, as_json: bool) -> anyhow::Result<i32> {
    let mut client = target.connect().await?;
    let i = client
        .cluster_info(api::ClusterInfoRequest {})
        .await
        .map_err(|s| status_error("ClusterInfo", s))?
        .into_inner();
    let c = i.counters.unwrap_or_default();
    if as_json {
        let workers: Vec<_> = i
            .workers
            .iter()
            .map(|w| json!({"id": w.id, "name": w.name, "host": w.host, "pid": w.pid, "slots": w.slots, "in_flight": w.in_flight, "function": w.function}))
            .collect();
        let functions: Vec<_> = i
            .functions
            .iter()
            .map(|f| json!({"name": f.name, "queued": f.queued, "running": f.running, "ready": f.ready, "starting": f.starting, "failed_starts": f.failed_starts, "idle_instance_us": f.idle_instance_us, "init_failures": f.init_failures}))
            .collect();
        println!(
            "{}",
            json!({
                "mode": i.mode, "store": i.store, "ha_epoch": i.ha_epoch, "ha_takeovers": i.ha_takeovers, "worker_endpoint": i.worker_endpoint, "version": i.version,
                "policy": i.policy, "prefetch": i.prefetch, "queued": i.queued, "running": i.running,
                "workers": workers,
                "functions": functions,
                "counters": {
                    "submitted": c.submitted, "dispatched": c.dispatched, "completed": c.completed,
                    "failed": c.failed, "requeued": c.requeued, "duplicate_results": c.duplicate_results,
                    "dropped_frames": c.dropped_frames, "workers_joined": c.workers_joined,
                    "workers_lost": c.workers_lost, "rejected_submissions": c.rejected_submissions,
                    "rejected_workers": c.rejected_workers, "unauthenticated_requests": c.unauthenticated_requests,
                }
            })
        );
    } else {
        println!(
            "mode {} · store {} · policy {} · prefetch {} · volley {}",
            i.mode, i.store, i.policy, i.prefetch, i.version
        );
        if i.ha_epoch > 0 {
            println!(
                "leader (--ha) of epoch {} · {} leaders before",
                i.ha_epoch, i.ha_takeovers
            );
        }
        if !i.worker_endpoint.is_empty() {
            println!("workers connect to {}", i.worker_endpoint);
        }
        println!("queued {} · running {}", i.queued, i.running);
        println!("{} workers:", i.workers.len());
        for w in &i.workers {
            let serves = if w.function.is_empty() {
                "every function".to_owned()
            } else {
                format!("only {}", w.function)
            };
            println!(
                "  #{:<4} {:<24} {:>4} slots {:>5} in flight  ({} pid {}; {serves})",
                w.id, w.name, w.slots, w.in_flight, w.host, w.pid
            );
        }
        if !i.functions.is_empty() {
            println!("functions:");
            for f in &i.functions {
                let mut failed = if f.failed_starts > 0 {
                    format!(", {} failed starts", f.failed_starts)
                } else {
                    String::new()
                };
                if f.init_failures > 0 {
                    failed.push_str(&format!(", {} init failures", f.init_failures));
                }
                if f.idle_instance_us > 0 {
                    failed.push_str(&format!(", idle {:.1} instance-s", f.idle_instance_us as f64 / 1e6));
                }
                println!(
                    "  {:<24} queued {:>7} · running {:>5} · instances ready {:>3}, starting {:>3}{failed}",
                    f.name, f.queued, f.running, f.ready, f.starting
                );
            }
        }
        println!(
            "submitted {} · dispatched {} · completed {} · failed {} · requeued {} · duplicate results {} · dropped frames {} · workers joined {} lost {} rejected {} · rejected submissions {} · unauthenticated calls {}",
            c.submitted, c.dispatched, c.completed, c.failed, c.requeued, c.duplicate_results, c.dropped_frames, c.workers_joined, c.workers_lost, c.rejected_workers, c.rejected_submissions, c.unauthenticated_requests
        );
    }
    Ok(0)
}
