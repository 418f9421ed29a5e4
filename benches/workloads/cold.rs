//! W6, cold start: from launching fresh processes (an admin that is also
//! the client, and 3 worker peers) to the first task's checked result.
//!
//! The admin is launched first and prints its address as soon as it
//! listens; the workers are launched with that address right away. The admin
//! submits at once (the call waits inside the node until it is admin, and the
//! task waits until a worker registers), then prints the result.

use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use serde_json::{json, Value};
use taskmesh::{Multiaddr, Node, NodeConfig};

use crate::bodies::{identity, value};
use crate::mesh::{child_runtime, exit_when_stdin_closes, worker_args, Proc};
use crate::util::{ms, Line};
use crate::Plan;

const ANSWER: u64 = 42;

pub fn w6(plan: &Plan) -> anyhow::Result<Line> {
    let mut cold = vec![];
    let mut parts: Vec<Value> = vec![];
    for run in 0..plan.runs {
        let mesh = format!("bench-w6-{}-{run}", std::process::id());
        let seed = 2000 + 10 * run as u64;
        let t0 = Instant::now();
        let args = vec!["--admin-process".to_string(), mesh.clone(), seed.to_string()];
        let mut admin = Proc::spawn("w6-admin", &args, true)?;
        let mut lines = BufReader::new(admin.stdout().context("admin stdout")?).lines();
        let mut next_line = || -> anyhow::Result<String> {
            lines
                .next()
                .ok_or_else(|| anyhow!("W6 admin exited early"))?
                .context("reading the W6 admin")
        };
        let first = next_line()?;
        let addr: Multiaddr = first
            .strip_prefix("addr ")
            .ok_or_else(|| anyhow!("W6 admin said {first:?}"))?
            .parse()?;
        let address_s = t0.elapsed().as_secs_f64();
        let mut workers = Vec::new();
        for i in 1..=3 {
            let name = format!("worker-{i}");
            workers.push(Proc::spawn(
                &name,
                &worker_args(&addr, &name, seed + i, &mesh, false),
                false,
            )?);
        }
        let result = next_line()?;
        let secs = t0.elapsed().as_secs_f64();
        let child: Value = serde_json::from_str(&result).with_context(|| format!("W6 admin: {result}"))?;
        ensure!(child["value"] == json!(ANSWER), "W6: wrong result {result}");
        drop(workers);
        drop(admin);
        eprintln!("[W6] run {}/{}: {secs:.3} s ({result})", run + 1, plan.runs);
        cold.push(secs);
        let mut part = child;
        part["admin_address_known_s"] = json!(address_s);
        parts.push(part);
    }
    Ok(Line::new("W6", plan.runs, "cold_start_s", &cold)
        .with("breakdown", json!(parts))
        .with(
            "breakdown_note",
            json!("child-side ms since the admin's main(): listen, became admin, result"),
        ))
}

/// Child mode `--admin-process <mesh> <seed>`: an admin-preferring node with
/// no workers that prints `addr <multiaddr>`, submits identity(42), and
/// prints a JSON line with the result and its own timeline.
pub fn admin_main(args: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    let [mesh, seed] = args else {
        bail!("usage: --admin-process <mesh> <seed>");
    };
    exit_when_stdin_closes();
    let cfg = NodeConfig {
        mesh: mesh.clone(),
        ..NodeConfig::default()
    }
    .prefer_admin()
    .with_seed(seed.parse().context("seed")?);
    child_runtime()?.block_on(async move {
        let node = Node::start(cfg, Vec::new()).await?;
        let listen_ms = ms(started.elapsed());
        crate::mesh::print_addr(&node)?;
        let mut out = std::io::stdout();
        let handle = node.handle();
        let office = tokio::spawn(async move {
            handle
                .wait_for_state(Duration::from_secs(30), |s| s.is_admin)
                .await
                .map(|_| started.elapsed())
        });
        let first = async {
            let id = node.submit(identity(ANSWER)).await?;
            let report = node.wait(id).await?;
            Ok::<_, anyhow::Error>((value(&report)?, report))
        };
        let (v, report) = tokio::time::timeout(Duration::from_secs(30), first).await??;
        let result_ms = ms(started.elapsed());
        let admin_ms = ms(office.await??);
        let line = json!({
            "value": v,
            "listen_ms": listen_ms,
            "admin_ms": admin_ms,
            "result_ms": result_ms,
            "task_elapsed_ms": report.elapsed_ms,
            "auction_rounds": report.auction.as_ref().map_or(0, |a| a.rounds),
        });
        writeln!(out, "{line}")?;
        out.flush()?;
        futures::future::pending::<anyhow::Result<()>>().await
    })
}
