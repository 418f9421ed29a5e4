//! Processes: the bench binary re-executed as a worker peer (or as the W6
//! admin, or the W7 scheduler run), child guards that kill them, and the
//! multi-process mesh whose admin and client is this process.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use taskmesh::{Multiaddr, Node, NodeConfig, Worker};

use crate::bodies::BenchWorker;
use crate::util::{proc_status_bytes, MIB};

/// A child process that dies with its guard. Its stdin is a pipe kept open
/// by the guard: children exit when it closes, so they also go when this
/// process dies without running destructors.
pub struct Proc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Proc {
    /// Re-executes this binary with `args`; stdout piped when `capture`.
    pub fn spawn(name: &str, args: &[String], capture: bool) -> anyhow::Result<Proc> {
        let exe = std::env::current_exe().context("current_exe")?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(if capture { Stdio::piped() } else { Stdio::null() })
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawning {name}"))?;
        let stdin = child.stdin.take();
        Ok(Proc {
            name: name.to_string(),
            child,
            stdin,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The captured stdout (once).
    pub fn stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// In a child: exit as soon as stdin closes (the parent is gone or done).
pub fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        std::process::exit(0);
    });
}

/// Arguments that start a worker peer joining `admin` in mesh `mesh`; an
/// `eligible` one keeps a replica of the ledger (and becomes a voter).
pub fn worker_args(admin: &Multiaddr, name: &str, seed: u64, mesh: &str, eligible: bool) -> Vec<String> {
    vec![
        "--worker-process".into(),
        admin.to_string(),
        name.into(),
        seed.to_string(),
        mesh.into(),
        if eligible { "voter" } else { "worker" }.into(),
    ]
}

/// Child mode `--worker-process <admin multiaddr> <name> <seed> <mesh>
/// voter|worker`: a node hosting one bench worker with one slot, until
/// stdin closes; a `voter` also keeps a replica of the ledger.
pub fn worker_main(args: &[String]) -> anyhow::Result<()> {
    let [admin, name, seed, mesh, kind] = args else {
        bail!("usage: --worker-process <admin multiaddr> <name> <seed> <mesh> voter|worker");
    };
    exit_when_stdin_closes();
    let admin: Multiaddr = admin.parse().context("admin multiaddr")?;
    let mut cfg = NodeConfig {
        mesh: mesh.clone(),
        ..NodeConfig::default()
    }
    .with_seed(seed.parse().context("seed")?)
    .join(admin);
    if kind != "voter" {
        cfg = cfg.not_admin();
    }
    let worker: Arc<dyn Worker> = Arc::new(BenchWorker { name: name.clone() });
    child_runtime()?.block_on(async move {
        let _node = Node::start(cfg, vec![worker]).await?;
        futures::future::pending::<anyhow::Result<()>>().await
    })
}

/// In a child: prints `addr <multiaddr>` (the node's first listen address)
/// for the parent to read, and returns it.
pub fn print_addr(node: &Node) -> anyhow::Result<Multiaddr> {
    let addr = node
        .listen_addrs()
        .into_iter()
        .next()
        .context("no listen address")?;
    let mut out = std::io::stdout();
    writeln!(out, "addr {addr}")?;
    out.flush()?;
    Ok(addr)
}

/// The runtime of a child process: one thread, as each process of the mesh
/// shares the machine's two cores with three others.
pub fn child_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The mesh of benchmarks.md: this process is the admin and the client, and
/// each worker peer is a separate process on loopback.
pub struct Mesh {
    pub node: Node,
    workers: Vec<Proc>,
}

impl Mesh {
    /// This process as admin and `n_workers` worker processes; `voters`
    /// keep the ledger (this process and `voters - 1` of the workers).
    /// Returns once every worker is registered and every voter promoted.
    pub async fn start(n_workers: usize, mesh: &str, voters: usize) -> anyhow::Result<Mesh> {
        let cfg = NodeConfig {
            mesh: mesh.to_string(),
            ..NodeConfig::default()
        }
        .prefer_admin()
        .with_seed(1000);
        let node = Node::start(cfg, Vec::new()).await?;
        node.wait_for_state(Duration::from_secs(30), |s| s.is_admin)
            .await?;
        let addr = node
            .listen_addrs()
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("admin has no listen address"))?;
        let mut workers = Vec::new();
        for i in 1..=n_workers {
            let name = format!("worker-{i}");
            let args = worker_args(&addr, &name, 1000 + i as u64, mesh, i < voters);
            workers.push(Proc::spawn(&name, &args, false)?);
        }
        node.wait_for_workers(n_workers, Duration::from_secs(30)).await?;
        let want = voters.clamp(1, n_workers + 1);
        node.wait_for_state(Duration::from_secs(30), |s| s.voters >= want)
            .await?;
        Ok(Mesh { node, workers })
    }

    /// The process id of the worker peer named `name`.
    pub fn pid_of(&self, name: &str) -> Option<u32> {
        self.workers.iter().find(|p| p.name == name).map(Proc::pid)
    }

    /// The process ids of the mesh: this process first, then the workers.
    pub fn pids(&self) -> Vec<u32> {
        std::iter::once(std::process::id())
            .chain(self.workers.iter().map(Proc::pid))
            .collect()
    }

    /// Resets every process's peak RSS (`VmHWM`) to its current RSS
    /// (Linux: `5` written to `/proc/<pid>/clear_refs`); a process whose
    /// peak cannot be reset keeps it.
    pub fn reset_peak_rss(&self) {
        for pid in self.pids() {
            if let Err(e) = std::fs::write(format!("/proc/{pid}/clear_refs"), "5") {
                eprintln!("[bench] cannot reset the peak RSS of {pid}: {e}");
            }
        }
    }

    /// Peak RSS (`VmHWM`) of every process of the mesh, in MiB: this
    /// process (admin + client) first, then the workers.
    pub fn peak_rss_mib(&self) -> Vec<(String, f64)> {
        let me = ("admin+client".to_string(), std::process::id());
        let all = std::iter::once(me).chain(self.workers.iter().map(|p| (p.name.clone(), p.pid())));
        all.map(|(name, pid)| {
            let b = proc_status_bytes(pid, "VmHWM").unwrap_or(0);
            (name, b as f64 / MIB)
        })
        .collect()
    }
}
