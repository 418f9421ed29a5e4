//! `taskmesh node`: one peer of the mesh.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use taskmesh::builtin::{CommandWorker, EchoWorker, WorkerArg};
use taskmesh::{identity, Multiaddr, Node, Worker};

use super::tuning::TuningArgs;
use super::{secs, MeshArgs};
use taskmesh::config::{exec_entry, NodeFile};

/// The port a node listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7411;

/// Options of `taskmesh node`. Each can also come from `--config FILE`;
/// a flag given here overrides the file.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// TOML file with any of these options (keys: listen, join, mdns, mesh,
    /// psk, key, seed, data_dir, allow_admins, allow_workers, allow_clients,
    /// [limits], admin, admin_priority, admin_wait, workers, [[exec]],
    /// work_ms, no_worker_timeout, grace, task_timeout, queue_timeout,
    /// deadline, retries, max_attempts, lease, kill_grace, worker_queue,
    /// retention_tasks, retention_age, retention_mib, retention_min_age).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on (repeatable) [default: /ip4/0.0.0.0/tcp/7411].
    /// Use tcp/0 for any free port.
    #[arg(long = "listen", value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// Derive the identity from a number (demos and tests; not secret).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Keep this node's replica of the ledger (Raft log and snapshots) and,
    /// without --key or --seed, its identity in DIR (created, mode 0700),
    /// so that a mesh stopped and started again with the same directories
    /// resumes every accepted, unfinished task. Without it the ledger lives
    /// in memory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// After a majority of voters is lost for good: found a new ledger from
    /// this node's --data-dir, with this node as its only voter and every
    /// task its replica had seen committed (see the README, "Recovering a
    /// mesh that lost a majority").
    #[arg(long)]
    pub recover: bool,
    /// Built-in worker NAME:ROLE:SKILL[:SLOTS] (repeatable): spends
    /// difficulty × --work-ms, then echoes its input.
    #[arg(long = "worker", value_name = "NAME:ROLE:SKILL[:SLOTS]")]
    pub workers: Vec<WorkerArg>,
    /// Command worker NAME:ROLE:SKILL[:SLOTS] (repeatable) running the
    /// program given after `--`: task input (then dependency outputs) on
    /// stdin, stdout is the output, a non-zero exit fails the task with its
    /// status and the tail of stderr.
    #[arg(long = "exec", value_name = "NAME:ROLE:SKILL[:SLOTS]", requires = "command")]
    pub exec: Vec<WorkerArg>,
    /// The program (and its arguments) for --exec workers.
    #[arg(last = true, value_name = "PROGRAM ARGS")]
    pub command: Vec<String>,
    /// Milliseconds a built-in worker spends per point of difficulty [default: 10].
    #[arg(long, value_name = "MS")]
    pub work_ms: Option<u64>,
    /// Never become admin, nor keep a replica of the ledger.
    #[arg(long)]
    pub no_admin: bool,
    /// Preference to be admin, 0-255 [default: 0]: a node that joins (by
    /// --join or mDNS) and hears of no admin founds a ledger of its own
    /// after 3 s / (1 + N), so the preferred one founds first; the admin
    /// promotes preferred learners to voters first, and hands its office
    /// to a voter preferred over itself once that voter holds the whole
    /// log (and, when it stops, to the most preferred up-to-date voter).
    #[arg(long, value_name = "N")]
    pub admin_priority: Option<u8>,
    /// Seconds a task may wait for a capable worker before failing [default: 5].
    #[arg(long, value_name = "SECS")]
    pub no_worker_timeout: Option<f64>,
    /// Serve Prometheus/OpenMetrics metrics at http://ADDR/metrics: a
    /// PORT (on 127.0.0.1) or HOST:PORT (0.0.0.0:PORT for every
    /// interface). Off by default.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Serve the live mesh page and its JSON API at http://ADDR/: a PORT
    /// (on 127.0.0.1) or HOST:PORT. Off by default.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// Seconds to let running tasks finish on Ctrl-C or SIGTERM [default: 10].
    #[arg(long, value_name = "SECS")]
    pub grace: Option<f64>,
    /// Peer ids (a file, one per line, `#` comments) that may keep a
    /// replica of the ledger and so become admin; a node not on its own
    /// list never does. Default: any peer.
    #[arg(long, value_name = "FILE")]
    pub allow_admins: Option<PathBuf>,
    /// Peer ids (a file, as for --allow-admins) that may host workers:
    /// register, bid, report results. Default: any peer.
    #[arg(long, value_name = "FILE")]
    pub allow_workers: Option<PathBuf>,
    /// Peer ids (a file, as for --allow-admins) that may submit, read
    /// status, cancel, wait and list workers and peers (clients get a
    /// stable id with --key). Default: any peer.
    #[arg(long, value_name = "FILE")]
    pub allow_clients: Option<PathBuf>,
    #[command(flatten)]
    pub tuning: TuningArgs,
}

/// Flags over file over defaults.
fn pick<T>(flag: Option<T>, file: Option<T>, default: T) -> T {
    flag.or(file).unwrap_or(default)
}

/// A non-empty flag list over the file's list.
fn pick_list<T>(flag: Vec<T>, file: Option<Vec<T>>) -> Vec<T> {
    if flag.is_empty() {
        file.unwrap_or_default()
    } else {
        flag
    }
}

pub async fn run(a: NodeArgs) -> anyhow::Result<ExitCode> {
    let file = match &a.config {
        Some(path) => NodeFile::load(path)?,
        None => NodeFile::default(),
    };
    let mut mesh = a.mesh.clone();
    mesh.join = pick_list(mesh.join, file.join.clone());
    mesh.no_mdns = mesh.no_mdns || file.mdns == Some(false);
    mesh.mesh = mesh.mesh.or(file.mesh.clone());
    mesh.admin_wait = mesh.admin_wait.or(file.admin_wait);
    mesh.psk = mesh.psk.or(file.psk.clone());
    let key = mesh.key.take();
    if key.is_some() && a.seed.is_some() {
        bail!("give --key FILE or --seed N, not both");
    }
    let mut cfg = mesh.config()?;
    let list = |flag: &Option<PathBuf>, file: &Option<PathBuf>| -> anyhow::Result<_> {
        flag.as_ref()
            .or(file.as_ref())
            .map(|p| taskmesh::access::read_peer_list(p))
            .transpose()
            .map_err(anyhow::Error::from)
    };
    cfg.allow.admins = list(&a.allow_admins, &file.allow_admins)?;
    cfg.allow.workers = list(&a.allow_workers, &file.allow_workers)?;
    cfg.allow.clients = list(&a.allow_clients, &file.allow_clients)?;
    if let Some(limits) = &file.limits {
        limits.apply(&mut cfg.limits)?;
    }
    let default_listen = format!("/ip4/0.0.0.0/tcp/{DEFAULT_PORT}")
        .parse()
        .expect("valid multiaddr");
    cfg.listen = pick_list(a.listen.clone(), file.listen.clone());
    if cfg.listen.is_empty() {
        cfg.listen = vec![default_listen];
    }
    cfg.data_dir = a.data_dir.clone().or(file.data_dir.clone());
    if let Some(addr) = a.metrics.as_ref().or(file.metrics.as_ref()) {
        cfg.metrics = Some(http_addr(addr).context("--metrics")?);
    }
    if let Some(addr) = a.http.as_ref().or(file.http.as_ref()) {
        cfg.http = Some(http_addr(addr).context("--http")?);
    }
    cfg.recover = a.recover;
    cfg.keypair = match (&key, a.seed, &file.key, file.seed) {
        (Some(path), _, _, _) | (None, None, Some(path), _) => {
            Some(taskmesh::load_or_create_key(path).context("--key")?)
        }
        (None, Some(seed), _, _) | (None, None, None, Some(seed)) => Some(taskmesh::keypair_from_seed(seed)),
        // With a data directory, the node keeps its identity there.
        (None, None, None, None) if cfg.data_dir.is_some() => None,
        (None, None, None, None) => Some(identity::Keypair::generate_ed25519()),
    };
    cfg.admin.eligible = !a.no_admin && file.admin != Some(false);
    cfg.admin.priority = pick(a.admin_priority, file.admin_priority, 0);
    let no_worker = pick(a.no_worker_timeout, file.no_worker_timeout, 5.0);
    cfg.scheduler.no_worker_timeout = secs(no_worker).context("--no-worker-timeout")?;
    let grace = secs(pick(a.grace, file.grace, 10.0)).context("--grace")?;
    a.tuning.apply(&file, a.config.as_deref(), &mut cfg)?;
    let step = Duration::from_millis(pick(a.work_ms, file.work_ms, 10));
    let workers = build_workers(&a, &file, step, cfg.runtime.kill_grace)?;
    let node = Node::start(cfg, workers.iter().map(|(w, _)| w.clone()).collect()).await?;
    let mut printed = Vec::new();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "peer id: {}", node.peer_id())?;
        print_new_addrs(&mut out, &node.listen_addrs(), &mut printed)?;
        for (w, what) in &workers {
            writeln!(
                out,
                "worker {} (role {}, skill {}, slots {}): {what}",
                w.name(),
                w.role(),
                w.skill(),
                w.slots()
            )?;
        }
        if let Some(addr) = node.metrics_addr() {
            writeln!(out, "metrics: http://{addr}/metrics")?;
        }
        if let Some(addr) = node.http_addr() {
            writeln!(out, "mesh page: http://{addr}/")?;
        }
        out.flush()?;
    }
    // Interfaces report their addresses one by one: print each as it comes.
    let mut state = node.watch_state();
    let announce = tokio::spawn(async move {
        let mut office = None;
        while state.changed().await.is_ok() {
            let now = state.borrow_and_update().clone();
            let mut out = std::io::stdout().lock();
            if print_new_addrs(&mut out, &now.listen_addrs, &mut printed).is_err()
                || print_office(&mut out, &now, &mut office).is_err()
            {
                break;
            }
        }
    });
    wait_for_signal().await?;
    announce.abort();
    tracing::info!(?grace, "signal received; shutting down");
    node.shutdown_with_grace(grace).await;
    Ok(ExitCode::SUCCESS)
}

/// Prints who the admin is and how many voters keep the ledger (as this
/// node's replica knows; none for a node that keeps no replica), when that
/// changed: `admin: this node (term T, V voters)` or `admin: PEER (term T,
/// V voters)`.
fn print_office(
    out: &mut impl Write,
    s: &taskmesh::net::NodeState,
    last: &mut Option<(Option<taskmesh::PeerId>, u64, bool, usize)>,
) -> std::io::Result<()> {
    let now = (s.admin, s.term, s.is_admin, s.voters);
    if last.as_ref() == Some(&now) {
        return Ok(());
    }
    *last = Some(now);
    let v = if s.voters == 1 { "voter" } else { "voters" };
    let voters = match s.voters {
        0 => String::new(),
        n => format!(", {n} {v}"),
    };
    match s.admin {
        _ if s.is_admin => writeln!(out, "admin: this node (term {}{voters})", s.term)?,
        Some(peer) => writeln!(out, "admin: {peer} (term {}{voters})", s.term)?,
        None => writeln!(out, "admin: none known{voters}")?,
    }
    out.flush()
}

/// Prints the addresses not printed before, ready to paste into `--join`.
fn print_new_addrs(
    out: &mut impl Write,
    addrs: &[Multiaddr],
    printed: &mut Vec<Multiaddr>,
) -> std::io::Result<()> {
    for addr in addrs {
        if !printed.contains(addr) {
            writeln!(out, "listening on {addr}")?;
            printed.push(addr.clone());
        }
    }
    out.flush()
}

/// The node's workers, each with a word on what it runs. Commands get
/// `kill_grace` between SIGTERM and SIGKILL when stopped.
fn build_workers(
    a: &NodeArgs,
    file: &NodeFile,
    step: Duration,
    kill_grace: Duration,
) -> anyhow::Result<Vec<(Arc<dyn Worker>, String)>> {
    let command = |spec: WorkerArg, program: &String, args: &[String]| {
        let mut w = CommandWorker::new(spec, program.clone(), args.to_vec());
        w.term_grace = kill_grace;
        Arc::new(w)
    };
    let mut out: Vec<(Arc<dyn Worker>, String)> = Vec::new();
    let builtin = if a.workers.is_empty() {
        file.worker_args()?
    } else {
        a.workers.clone()
    };
    for spec in builtin {
        out.push((Arc::new(EchoWorker { spec, step }), "built-in echo".into()));
    }
    if a.exec.is_empty() {
        for e in &file.exec {
            let (spec, program, args) = exec_entry(e)?;
            let what = format!("runs {}", e.command.join(" "));
            out.push((command(spec, &program, &args), what));
        }
    } else {
        let Some((program, args)) = a.command.split_first() else {
            bail!("--exec needs a program after `--`, e.g. --exec hasher:hash:5 -- sha256sum");
        };
        for spec in &a.exec {
            let what = format!("runs {}", a.command.join(" "));
            out.push((command(spec.clone(), program, args), what));
        }
    }
    if !a.command.is_empty() && a.exec.is_empty() {
        bail!("a program after `--` needs at least one --exec NAME:ROLE:SKILL[:SLOTS]");
    }
    Ok(out)
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// An address to serve HTTP on: `PORT` (on 127.0.0.1, so that nothing is
/// exposed unless asked) or `HOST:PORT`.
fn http_addr(text: &str) -> anyhow::Result<std::net::SocketAddr> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|e| {
        anyhow::anyhow!("{text:?} is not a port or HOST:PORT ({e}); for example 9464 or 0.0.0.0:9464")
    })
}
