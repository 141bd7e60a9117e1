//! Each function's queue, instances and failures on the scrape page, the first
//! [`MAX_FUNCTION_LABELS`] by name on their own and the rest summed as `other`.

use crate::core::FunctionLoad;
use crate::metrics::{FunctionLabel, MAX_FUNCTION_LABELS};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Queue, running tasks and instances per function, the first [`MAX_FUNCTION_LABELS`]
/// by name on their own and the rest summed as `other`.
pub(super) fn per_function(e: &mut DescriptorEncoder, loads: &[FunctionLoad]) -> Result<(), std::fmt::Error> {
    let mut rows: Vec<(String, [i64; 7])> = Vec::new();
    for (i, f) in loads.iter().enumerate() {
        let values = [
            i64::from(f.queued),
            i64::from(f.running),
            i64::from(f.instances),
            i64::from(f.starting),
            f.failed_starts as i64,
            f.idle_instance_us as i64,
            f.init_failures as i64,
        ];
        if i < MAX_FUNCTION_LABELS {
            rows.push((f.function.clone(), values));
        } else {
            match rows.iter_mut().find(|(name, _)| name == "other") {
                Some((_, sum)) => sum.iter_mut().zip(values).for_each(|(s, v)| *s += v),
                None => rows.push(("other".into(), values)),
            }
        }
    }
    let families = [
        ("function_tasks_queued", "Tasks waiting, per function."),
        ("function_tasks_running", "Tasks held by workers, per function."),
        (
            "function_instances_ready",
            "Workers bound to the function and registered.",
        ),
        (
            "function_instances_starting",
            "Instances the elastic pool started that have not registered yet.",
        ),
    ];
    for (k, (name, help)) in families.into_iter().enumerate() {
        let mut family = e.encode_descriptor(name, help, None, prometheus_client::metrics::MetricType::Gauge)?;
        for (function, values) in &rows {
            let labels = FunctionLabel {
                function: function.clone(),
            };
            ConstGauge::new(values[k]).encode(family.encode_family(&labels)?)?;
        }
    }
    let counters = [
        (
            "function_failed_starts",
            "Instance starts that failed (binary missing, exited early, never registered).",
            1.0,
        ),
        (
            "function_idle_instance_seconds",
            "Time the function's instances spent registered and idle (wasted instance-time).",
            1e-6,
        ),
        (
            "function_init_failures",
            "Tasks whose code failed to load on a worker (init_failed).",
            1.0,
        ),
    ];
    for (k, (name, help, scale)) in counters.into_iter().enumerate() {
        let mut family = e.encode_descriptor(name, help, None, prometheus_client::metrics::MetricType::Counter)?;
        for (function, values) in &rows {
            let labels = FunctionLabel {
                function: function.clone(),
            };
            ConstCounter::new(values[4 + k] as f64 * scale).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}
