//! The workloads on the running mesh: warm-up, W1–W5 and W8. Every clock
//! starts right before the first submit and stops once the client holds the
//! checked final value; tasks are built before the clock starts.

use std::time::Instant;

use anyhow::ensure;
use serde_json::json;
use taskmesh::{NodeHandle, TaskId};

use crate::bodies::{blob, chain, extra_rounds, fan, identity, sleep, value};
use crate::mesh::Mesh;
use crate::util::{ms, nearest_rank, Line, Rng};
use crate::Plan;

/// 100 tasks at once, then 10 in sequence, untimed.
pub async fn warm_up(node: &NodeHandle) -> anyhow::Result<()> {
    let reports = node.execute_batch((0..100).map(identity).collect()).await?;
    for (i, r) in reports.iter().enumerate() {
        ensure!(value(r)? == i as u64, "warm-up: wrong value from {}", r.name);
    }
    for i in 0..10 {
        let r = node.execute_batch(vec![identity(i)]).await?;
        ensure!(value(&r[0])? == i, "warm-up: wrong value");
    }
    Ok(())
}

/// W1: one trivial task submitted and awaited, `n` times in sequence.
pub async fn w1(node: &NodeHandle, plan: &Plan) -> anyhow::Result<Line> {
    let n = plan.w1_tasks;
    let (mut p50, mut p99, mut mean, mut extra) = (vec![], vec![], vec![], 0);
    for run in 0..plan.runs {
        let mut lat = Vec::with_capacity(n);
        for i in 0..n as u64 {
            let task = identity(i);
            let t = Instant::now();
            let ids = node.submit_batch(vec![task]).await?;
            let reports = node.wait_all(ids).await?;
            ensure!(value(&reports[0])? == i, "W1: wrong value");
            lat.push(ms(t.elapsed()));
            extra += extra_rounds(&reports);
        }
        mean.push(lat.iter().sum::<f64>() / n as f64);
        lat.sort_by(f64::total_cmp);
        p50.push(nearest_rank(&lat, 50.0));
        p99.push(nearest_rank(&lat, 99.0));
        eprintln!(
            "[W1] run {}/{}: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            run + 1,
            plan.runs,
            p50[run],
            p99[run],
            lat[n - 1]
        );
    }
    Ok(Line::new("W1", plan.runs, "p50_ms", &p50)
        .figure("p99_ms", &p99)
        .figure("mean_ms", &mean)
        .with("tasks", json!(n))
        .with("extra_auction_rounds_all_runs", json!(extra)))
}

/// One W2 run: `n` independent tasks at once; returns tasks/s and the
/// extra auction rounds.
pub async fn w2_run(node: &NodeHandle, n: usize) -> anyhow::Result<(f64, u64)> {
    let tasks: Vec<_> = (0..n as u64).map(identity).collect();
    let t = Instant::now();
    let ids = node.submit_batch(tasks).await?;
    let reports = node.wait_all(ids).await?;
    let mut sum = 0;
    for r in &reports {
        sum += value(r)?;
    }
    let n = n as u64;
    ensure!(sum == n * (n - 1) / 2, "W2: sum {sum} != n(n-1)/2");
    let secs = t.elapsed().as_secs_f64();
    Ok((n as f64 / secs, extra_rounds(&reports)))
}

/// W2: independent tasks at once, in batches of each of `plan.w2_sizes`;
/// tasks/s (the headline figure is the 10,000-task batch, or the largest
/// in a quick run), and the peak RSS summed over the mesh's processes
/// while each size runs (`VmHWM`, reset before each size through
/// `/proc/<pid>/clear_refs`; memory a process took for an earlier size
/// and did not give back still counts).
pub async fn w2(node: &NodeHandle, mesh: &Mesh, plan: &Plan) -> anyhow::Result<Line> {
    let mut extra = 0;
    let mut by_size = Vec::new();
    let mut rss = serde_json::Map::new();
    let mut rss_sums = Vec::new();
    for &n in &plan.w2_sizes {
        mesh.reset_peak_rss();
        let mut rates = Vec::new();
        for run in 0..plan.runs {
            let (rate, more) = w2_run(node, n).await?;
            extra += more;
            let runs = plan.runs;
            eprintln!(
                "[W2] {n} tasks, run {}/{runs}: {rate:.0} tasks/s, {more} extra rounds",
                run + 1
            );
            rates.push(rate);
        }
        let peaks = mesh.peak_rss_mib();
        let sum: f64 = peaks.iter().map(|p| p.1).sum();
        let per: serde_json::Map<_, _> = peaks.into_iter().map(|(k, v)| (k, json!(v))).collect();
        rss.insert(label(n), json!(per));
        rss_sums.push((label(n), sum));
        by_size.push((format!("tasks_per_s_{}", label(n)), rates));
    }
    let main = by_size.iter().position(|(name, _)| name == "tasks_per_s_10k");
    let main = main.unwrap_or(by_size.len() - 1);
    let (name, rates) = by_size.remove(main);
    let (main_size, main_rss) = rss_sums[main].clone();
    let mut line = Line::new("W2", plan.runs, &name, &rates);
    for (name, rates) in &by_size {
        line = line.figure(name, rates);
    }
    for (size, sum) in &rss_sums {
        line = line.with(&format!("peak_rss_sum_mib_{size}"), json!(sum));
    }
    Ok(line
        .with("peak_rss_sum_mib", json!(main_rss))
        .with("peak_rss_sum_of", json!(main_size))
        .with("peak_rss_mib", json!(rss))
        .with(
            "rss_method",
            json!("sum of VmHWM of the 4 processes over each size's runs, reset before each size"),
        )
        .with("extra_auction_rounds_all_runs", json!(extra)))
}

pub fn label(n: usize) -> String {
    if n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// Extra auction rounds of finished tasks, read after the clock stopped.
async fn untimed_extra_rounds(node: &NodeHandle, ids: Vec<TaskId>) -> anyhow::Result<u64> {
    let reports: Vec<_> = node.tasks(ids).await?.into_iter().flatten().collect();
    Ok(extra_rounds(&reports))
}

/// W3: a chain of `n` tasks, each receiving the previous one's output.
pub async fn w3(node: &NodeHandle, plan: &Plan) -> anyhow::Result<Line> {
    let n = plan.w3_len;
    let (mut total, mut hop, mut extra) = (vec![], vec![], 0);
    for run in 0..plan.runs {
        let tasks = chain(n);
        let last = tasks[n - 1].id;
        let t = Instant::now();
        let ids = node.submit_batch(tasks).await?;
        let r = node.wait(last).await?;
        ensure!(value(&r)? == n as u64, "W3: final value is not {n}");
        let secs = t.elapsed().as_secs_f64();
        extra += untimed_extra_rounds(node, ids).await?;
        total.push(secs);
        hop.push(secs * 1e3 / n as f64);
        eprintln!(
            "[W3] run {}/{}: {secs:.3} s, {:.3} ms/hop",
            run + 1,
            plan.runs,
            hop[run]
        );
    }
    Ok(Line::new("W3", plan.runs, "per_hop_ms", &hop)
        .figure("total_s", &total)
        .with("hops", json!(n))
        .with("extra_auction_rounds_all_runs", json!(extra)))
}

/// W4: prep → `n` mids → agg.
pub async fn w4(node: &NodeHandle, plan: &Plan) -> anyhow::Result<Line> {
    let n = plan.w4_fan;
    let expected = (n + n * (n - 1) / 2) as u64;
    let (mut wall, mut extra) = (vec![], 0);
    for run in 0..plan.runs {
        let (tasks, agg) = fan(n);
        let t = Instant::now();
        let ids = node.submit_batch(tasks).await?;
        let r = node.wait(agg).await?;
        ensure!(value(&r)? == expected, "W4: aggregate is not {expected}");
        wall.push(t.elapsed().as_secs_f64());
        let more = untimed_extra_rounds(node, ids).await?;
        extra += more;
        let runs = plan.runs;
        eprintln!(
            "[W4] run {}/{runs}: {:.3} s, {more} extra rounds",
            run + 1,
            wall[run]
        );
    }
    Ok(Line::new("W4", plan.runs, "wall_s", &wall)
        .with("tasks", json!(n + 2))
        .with("expected", json!(expected))
        .with("extra_auction_rounds_all_runs", json!(extra)))
}

/// W5: `n` tasks of 100 ms on the 3 one-slot workers.
pub async fn w5(node: &NodeHandle, plan: &Plan) -> anyhow::Result<Line> {
    let n = plan.w5_tasks;
    let ideal = n.div_ceil(3) as f64 * 0.1;
    let (mut wall, mut eff, mut extra) = (vec![], vec![], 0);
    for run in 0..plan.runs {
        let tasks: Vec<_> = (0..n as u64).map(sleep).collect();
        let t = Instant::now();
        let ids = node.submit_batch(tasks).await?;
        let reports = node.wait_all(ids).await?;
        let mut sum = 0;
        for r in &reports {
            sum += value(r)?;
        }
        ensure!(sum == (n * (n - 1) / 2) as u64, "W5: wrong sum");
        let secs = t.elapsed().as_secs_f64();
        let more = extra_rounds(&reports);
        extra += more;
        wall.push(secs);
        eff.push(ideal / secs);
        let runs = plan.runs;
        eprintln!(
            "[W5] run {}/{runs}: {secs:.3} s, efficiency {:.3}, {more} extra rounds",
            run + 1,
            eff[run]
        );
    }
    Ok(Line::new("W5", plan.runs, "wall_s", &wall)
        .figure("efficiency", &eff)
        .with("tasks", json!(n))
        .with("ideal_s", json!(ideal))
        .with("extra_auction_rounds_all_runs", json!(extra)))
}

/// W8: one task whose input and output are `plan.w8_bytes` bytes.
pub async fn w8(node: &NodeHandle, plan: &Plan) -> anyhow::Result<Line> {
    let mut rng = Rng::new(8);
    let mut rtt = vec![];
    for run in 0..plan.runs {
        let bytes: Vec<u8> = (0..plan.w8_bytes).map(|_| rng.next_u64() as u8).collect();
        let task = blob(bytes.clone());
        let t = Instant::now();
        let id = node.submit(task).await?;
        let r = node.wait(id).await?;
        let same = r
            .output
            .as_ref()
            .is_some_and(|o| o.as_bytes() == bytes.as_slice());
        ensure!(same, "W8: output differs from input ({})", r.status);
        rtt.push(ms(t.elapsed()));
        eprintln!("[W8] run {}/{}: {:.3} ms", run + 1, plan.runs, rtt[run]);
    }
    Ok(Line::new("W8", plan.runs, "round_trip_ms", &rtt).with("bytes", json!(plan.w8_bytes)))
}
