//! Small helpers: a seeded PRNG, `/proc` memory readings, summary statistics
//! and the one-JSON-line-per-workload output.

use std::time::Duration;

use serde_json::{json, Map, Value};

/// splitmix64: tiny, seeded, good enough to pick random dependencies.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x6265_6e63_686d_6573)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// A number in `0..n` (`n > 0`), by multiply-shift (bias is negligible).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// The splitmix64 finaliser: a cheap bijective hash of `x`.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A field of `/proc/<pid>/status` in bytes (`VmHWM`, `VmRSS`), if readable.
pub fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kb: u64 = line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

pub const MIB: f64 = 1024.0 * 1024.0;

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank percentile of sorted samples (`p` in 0..=100): p99 of 200
/// samples is the 198th.
pub fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// Median, min and max of per-run values.
pub fn summary(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
}

/// Rounds for printing: enough digits for sub-millisecond figures.
fn round(x: f64) -> f64 {
    if x.abs() >= 100.0 {
        (x * 100.0).round() / 100.0
    } else {
        (x * 10_000.0).round() / 10_000.0
    }
}

/// One workload's JSON line. The primary figure gives `median`, `min` and
/// `max` (over runs); every figure also appears by name (its median) with
/// `<name>_min` / `<name>_max`, and every per-run value under `samples`.
pub struct Line {
    fields: Map<String, Value>,
    samples: Map<String, Value>,
}

impl Line {
    pub fn new(workload: &str, runs: usize, primary: &str, values: &[f64]) -> Self {
        let mut line = Line {
            fields: Map::new(),
            samples: Map::new(),
        };
        let (median, min, max) = summary(values);
        line.set("workload", json!(workload));
        line.set("runs", json!(runs));
        line.set("figure", json!(primary));
        line.set("median", json!(round(median)));
        line.set("min", json!(round(min)));
        line.set("max", json!(round(max)));
        line.figure(primary, values)
    }

    /// Adds a figure measured once per run.
    pub fn figure(mut self, name: &str, values: &[f64]) -> Self {
        let (median, min, max) = summary(values);
        self.set(name, json!(round(median)));
        self.set(&format!("{name}_min"), json!(round(min)));
        self.set(&format!("{name}_max"), json!(round(max)));
        let rounded: Vec<f64> = values.iter().map(|x| round(*x)).collect();
        self.samples.insert(name.to_string(), json!(rounded));
        self
    }

    /// Adds any other field (sizes, methods, breakdowns).
    pub fn with(mut self, name: &str, value: Value) -> Self {
        self.set(name, value);
        self
    }

    fn set(&mut self, name: &str, value: Value) {
        self.fields.insert(name.to_string(), value);
    }

    /// Prints the line on stdout.
    pub fn print(mut self) {
        self.fields.insert("samples".into(), Value::Object(self.samples));
        println!("{}", Value::Object(self.fields));
    }
}
