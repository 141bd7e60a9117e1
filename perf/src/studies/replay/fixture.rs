//! A small synthetic trace in the Azure 2019 schema, generated from a seed: the project's
//! own test data (the real trace is never copied into the project). Its memory file puts
//! the hash columns in another order, as real samples do, so readers must go by name.

use rand::{RngExt, SeedableRng};
use rand_xorshift::XorShiftRng;
use std::fmt::Write as _;
use std::path::Path;

pub use volley_testbed::fixtures::temp_dir;

fn hash(rng: &mut XorShiftRng) -> String {
    (0..4).fold(String::new(), |mut s, _| {
        let _ = write!(s, "{:016x}", rng.random::<u64>());
        s
    })
}

/// Writes `functions` functions over `minutes` minutes (columns `1`…`minutes`) into `dir`.
/// Rates spread log-uniformly from a few invocations an hour to about 600 a minute;
/// durations from about 1 ms to a few seconds; two functions share each app.
pub fn write(dir: &Path, functions: usize, minutes: usize, seed: u64) -> std::io::Result<()> {
    let mut rng = XorShiftRng::seed_from_u64(seed);
    let minute_cols: Vec<String> = (1..=minutes).map(|m| m.to_string()).collect();
    let mut inv = format!("HashOwner,HashApp,HashFunction,Trigger,{}\n", minute_cols.join(","));
    let mut dur = String::from(
        "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,percentile_Average_1,\
         percentile_Average_25,percentile_Average_50,percentile_Average_75,percentile_Average_99,percentile_Average_100\n",
    );
    let mut mem = String::from(
        "HashFunction,HashOwner,HashApp,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1,AverageAllocatedMb_pct5,\
         AverageAllocatedMb_pct25,AverageAllocatedMb_pct50,AverageAllocatedMb_pct75,AverageAllocatedMb_pct95,\
         AverageAllocatedMb_pct99,AverageAllocatedMb_pct100\n",
    );
    let (mut owner, mut app) = (hash(&mut rng), hash(&mut rng));
    for i in 0..functions {
        if i % 2 == 0 {
            owner = hash(&mut rng);
            app = hash(&mut rng);
        }
        let function = hash(&mut rng);
        let trigger = ["http", "timer", "queue", "event"][rng.random_range(0..4)];
        let rate = 10f64.powf(rng.random_range(-1.5..2.8));
        let counts: Vec<String> = (0..minutes)
            .map(|_| {
                let jitter = rng.random_range(0.5..1.5);
                ((rate * jitter).round() as u64).to_string()
            })
            .collect();
        let _ = writeln!(inv, "{owner},{app},{function},{trigger},{}", counts.join(","));
        let median = 10f64.powf(rng.random_range(0.0..3.5));
        let p = [0.5, 0.7, 0.9, 1.0, 1.2, 2.5, 6.0].map(|f| (median * f).round().max(1.0));
        let _ = writeln!(
            dur,
            "{owner},{app},{function},{},{},{},{},{},{},{},{},{},{},{}",
            p[3], 1000, p[0], p[6], p[0], p[1], p[2], p[3], p[4], p[5], p[6]
        );
        let mb = rng.random_range(20.0..300.0f64).round();
        let m = [0.8, 0.85, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4].map(|f| (mb * f).round());
        let _ = writeln!(
            mem,
            "{function},{owner},{app},100,{mb},{},{},{},{},{},{},{},{}",
            m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7]
        );
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("invocations.csv"), inv)?;
    std::fs::write(dir.join("durations.csv"), dur)?;
    std::fs::write(dir.join("memory.csv"), mem)
}
