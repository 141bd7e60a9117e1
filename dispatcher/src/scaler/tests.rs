//! The scaler on virtual time: each policy's rules and the Knative documentation's worked
//! examples. Nothing here sleeps.

use super::hybrid::{Hybrid, HybridParams};
use super::kpa::{Kpa, KpaParams};
use super::*;

const F: &str = "f";

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn ready(id: u64, busy: u32, idle_since: Duration) -> Instance {
    Instance {
        id: InstanceId(id),
        starting: false,
        busy,
        idle_since,
    }
}

fn view<'a>(queued: u32, in_flight: u32, slots: u32, instances: &'a [Instance]) -> FunctionView<'a> {
    FunctionView {
        function: F,
        queued,
        in_flight,
        slots,
        instances,
    }
}

fn starts(d: &[Decision]) -> u32 {
    d.iter()
        .map(|d| match d {
            Decision::Start { count, .. } => *count,
            Decision::Retire { .. } => 0,
        })
        .sum()
}

fn retired(d: &[Decision]) -> Vec<u64> {
    d.iter()
        .filter_map(|d| match d {
            Decision::Retire { instance, .. } => Some(instance.0),
            Decision::Start { .. } => None,
        })
        .collect()
}

#[test]
fn specs_parse_with_defaults_and_refuse_what_is_wrong() {
    assert_eq!(
        "fixed".parse::<PolicySpec>(),
        Ok(PolicySpec::Fixed { keepalive: s(600) })
    );
    assert_eq!(
        "fixed:keepalive=1m".parse::<PolicySpec>(),
        Ok(PolicySpec::Fixed { keepalive: s(60) })
    );
    let PolicySpec::Kpa(k) =
        "kpa:target=1,utilization=0.7,stable=60s,panic=6s,panic-threshold=2.0,grace=30s,max-scale=16"
            .parse()
            .expect("kpa")
    else {
        panic!("not kpa")
    };
    assert_eq!(
        k,
        KpaParams {
            max_scale: 16,
            ..KpaParams::default()
        }
    );
    assert!(matches!("kpa".parse::<PolicySpec>(), Ok(PolicySpec::Kpa(k)) if k.max_scale == 0));
    assert!(matches!("hybrid".parse::<PolicySpec>(), Ok(PolicySpec::Hybrid(h)) if h == HybridParams::default()));
    let err = |spec: &str| spec.parse::<PolicySpec>().expect_err(spec).to_string();
    assert!(err("lru").contains("unknown policy 'lru'; use fixed, kpa or hybrid"));
    assert!(err("kpa:window=60s").contains("unknown parameter 'window'"));
    assert!(err("kpa:utilization=1.5").contains("outside 0.01..=1"));
    assert!(err("kpa:stable=soon").contains("stable=soon"));
    assert!(err("kpa:stable=10s,panic=20s").contains("panic window must not be longer"));
    assert!(err("fixed:keepalive").contains("not name=value"));
    assert!(err("hybrid:tail=101").contains("outside"));
    assert_eq!(
        "fixed:keepalive=10m".parse::<PolicySpec>().expect("fixed").label(),
        "fixed-10m"
    );
}

#[test]
fn fixed_starts_for_demand_and_retires_after_exactly_the_keepalive() {
    let mut p = fixed::Fixed::new(s(600));
    // Three tasks, no instance, one slot each: three cold starts.
    assert_eq!(starts(&p.decide(s(0), &view(3, 0, 1, &[]))), 3);
    // Two slots per instance: two instances hold three tasks.
    assert_eq!(starts(&p.decide(s(0), &view(3, 0, 2, &[]))), 2);
    // Idle since t=100: kept at t=699, retired at t=700.
    let idle = [ready(1, 0, s(100)), ready(2, 1, s(0))];
    assert!(p.decide(s(699), &view(0, 1, 1, &idle)).is_empty());
    assert_eq!(retired(&p.decide(s(700), &view(0, 1, 1, &idle))), [1]);
}

#[test]
fn kpa_desired_count_is_the_documented_ratio() {
    // Knative's docs: target 100 at 70 % utilization aims at 70 per pod; 350 → 5 pods.
    let kpa = Kpa::new(KpaParams {
        target: 100.0,
        utilization: 0.7,
        ..KpaParams::default()
    });
    assert_eq!(kpa.desired_for(350.0), 5);
    assert_eq!(kpa.desired_for(351.0), 6);
    assert_eq!(kpa.desired_for(0.0), 0);
    // Concurrency 1 at 0.7: one task keeps two instances (1 / 0.7 = 1.43 → 2).
    assert_eq!(Kpa::new(KpaParams::default()).desired_for(1.0), 2);
}

#[test]
fn kpa_follows_the_stable_window_and_panics_on_a_burst() {
    let mut kpa = Kpa::new(KpaParams::default());
    // The activator: a task and no instance start one at once, between ticks too.
    assert_eq!(starts(&kpa.decide(s(0), &view(1, 0, 1, &[]))), 1);
    // Steady concurrency 2 on 3 instances for a minute: desired ceil(2/0.7) = 3, no change.
    let three: Vec<Instance> = (1..=3).map(|i| ready(i, 1, s(0))).collect();
    for t in 1..=60 {
        let d = kpa.decide(s(t), &view(0, 2, 1, &three));
        assert!(d.is_empty(), "t={t}: {d:?}");
    }
    assert!(!kpa.panicking(F));
    // A burst to 7 for a few seconds: the panic window's estimate reaches
    // ceil(avg/0.7) ≥ 2 × 3 ready, so it panics and scales on the panic window.
    let mut peak = 3;
    for t in 61..=64 {
        let d = kpa.decide(s(t), &view(5, 2, 1, &three));
        peak = peak.max(3 + starts(&d));
    }
    assert!(kpa.panicking(F));
    assert!(peak >= 6, "scaled only to {peak}");
    // The burst ends: while panicking nothing is retired, though the stable estimate is low.
    let many: Vec<Instance> = (1..=10).map(|i| ready(i, u32::from(i <= 1), s(65))).collect();
    for t in 65..=123 {
        let d = kpa.decide(s(t), &view(0, 1, 1, &many));
        assert!(retired(&d).is_empty(), "t={t}: retired during panic: {d:?}");
    }
    // A stable window after the last panic condition, panic ends and the surplus goes.
    let d = kpa.decide(s(125), &view(0, 1, 1, &many));
    assert!(!kpa.panicking(F));
    assert!(!retired(&d).is_empty(), "{d:?}");
}

#[test]
fn kpa_scales_to_zero_only_after_the_stable_window_and_the_grace_period() {
    let mut kpa = Kpa::new(KpaParams::default());
    let one = [ready(1, 1, s(0))];
    for t in 0..=10 {
        kpa.decide(s(t), &view(0, 1, 1, &one));
    }
    // Last traffic at t=10; idle from then on.
    let idle = [ready(1, 0, s(11))];
    for t in 11..100 {
        let d = kpa.decide(s(t), &view(0, 0, 1, &idle));
        assert!(retired(&d).is_empty(), "t={t}: went to zero after {} s", t - 10);
    }
    assert_eq!(retired(&kpa.decide(s(100), &view(0, 0, 1, &idle))), [1]);
}

#[test]
fn kpa_never_passes_max_scale() {
    let mut kpa = Kpa::new(KpaParams {
        max_scale: 4,
        ..KpaParams::default()
    });
    let one = [ready(1, 1, s(0))];
    let mut wanted = 0;
    for t in 0..10 {
        wanted = wanted.max(1 + starts(&kpa.decide(s(t), &view(100, 1, 1, &one))));
    }
    assert_eq!(wanted, 4);
}

fn regular_hybrid() -> Hybrid {
    // A function invoked every 30 minutes, give or take: a sharp histogram.
    let mut h = Hybrid::new(HybridParams::default());
    for i in 0..20u64 {
        h.record_idle_time(F, s(30 * 60 + (i % 3) * 10));
    }
    h
}

#[test]
fn hybrid_windows_come_from_the_histograms_head_and_tail() {
    let h = regular_hybrid();
    let w = h.windows(F).expect("a sharp histogram is representative");
    // Head: the 30-minute bin's start less 10 %; tail: its end plus 10 %.
    assert_eq!(w.prewarm, Duration::from_secs_f64(30.0 * 60.0 * 0.9));
    assert_eq!(w.prewarm + w.keepalive, Duration::from_secs_f64(31.0 * 60.0 * 1.1));
    // Too few idle times, or times spread evenly over the range: not representative.
    let mut few = Hybrid::new(HybridParams::default());
    for _ in 0..9 {
        few.record_idle_time(F, s(1800));
    }
    assert_eq!(few.windows(F), None);
    let mut spread = Hybrid::new(HybridParams::default());
    for i in 0..240u64 {
        spread.record_idle_time(F, s(i * 60));
    }
    assert_eq!(spread.windows(F), None);
}

#[test]
fn hybrid_unloads_prewarms_and_keeps_alive_then_falls_back_when_unsure() {
    let mut h = regular_hybrid();
    let w = h.windows(F).expect("representative");
    // An execution ends at t=0.
    h.arrival(F, s(0));
    h.decide(s(0), &view(0, 1, 1, &[ready(1, 1, s(0))]));
    let idle = [ready(1, 0, s(1))];
    // Right after: unloaded.
    assert_eq!(retired(&h.decide(s(1), &view(0, 0, 1, &idle))), [1]);
    // Inside the keep-alive window: one instance is loaded again (pre-warmed) and kept.
    let at = w.prewarm + s(1);
    assert_eq!(starts(&h.decide(at, &view(0, 0, 1, &[]))), 1);
    assert!(h.decide(at + s(60), &view(0, 0, 1, &[ready(2, 0, at)])).is_empty());
    // After it: unloaded.
    let end = w.prewarm + w.keepalive + s(1);
    assert_eq!(retired(&h.decide(end, &view(0, 0, 1, &[ready(2, 0, at)]))), [2]);

    // A function with no history keeps idle instances the fallback's 10 minutes.
    let mut fresh = Hybrid::new(HybridParams::default());
    let idle = [ready(7, 0, s(0))];
    assert!(fresh.decide(s(599), &view(0, 0, 1, &idle)).is_empty());
    assert_eq!(retired(&fresh.decide(s(600), &view(0, 0, 1, &idle))), [7]);
}

#[test]
fn the_scaler_cuts_starts_at_the_global_bound() {
    let mut scaler = Scaler::new(&PolicySpec::Fixed { keepalive: s(60) }, 5);
    let d = scaler.decide(s(0), &view(10, 0, 1, &[]), 3);
    assert_eq!(starts(&d), 2);
    assert!(scaler.decide(s(0), &view(10, 0, 1, &[]), 5).is_empty());
}
