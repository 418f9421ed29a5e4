//! Command-line definitions and the code behind each subcommand.

mod cancel;
mod node;
mod output;
mod submit;
mod tuning;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use taskmesh::{Multiaddr, Node, NodeConfig, TaskId};

/// taskmesh: a peer-to-peer task-processing mesh.
///
/// Start peers with `taskmesh node`, then submit a DAG of tasks with
/// `taskmesh submit FILE`. Peers find each other by mDNS on a LAN, or join
/// by multiaddr with `--join`.
#[derive(Parser, Debug)]
#[command(name = "taskmesh", version, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr. The level comes from RUST_LOG (default: info for
    /// `node`, warn for the other commands).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How logs are written.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a peer: listen, join the mesh, host workers, maybe become admin.
    Node(Box<node::NodeArgs>),
    /// Submit a task file (TOML or JSON) and wait for its results.
    ///
    /// Exits 0 only when every task completed or was skipped (its trigger
    /// rule did not fire); 1 when any failed, was cancelled, or finished
    /// but was evicted before its report was read.
    Submit(submit::SubmitArgs),
    /// Show tasks known to the admin: by id, or the most recent ones.
    ///
    /// A task that finished and was evicted after the admin's retention is
    /// shown as evicted; an id the admin never saw is an error (exit 1).
    Status(submit::StatusArgs),
    /// Cancel tasks by id: running attempts are stopped, dependents follow
    /// their trigger rules.
    ///
    /// Prints `ID<TAB>OUTCOME` per id: `cancelled`, `already <status>` (it
    /// had finished), `evicted` (finished, report no longer kept) or
    /// `unknown`. Exits 0 when every id was cancelled or had already
    /// finished, 2 when some id was unknown or evicted.
    Cancel(cancel::CancelArgs),
    /// List the workers connected to the admin.
    Workers(submit::WorkersArgs),
    /// List the peers connected to the admin, with the workers each hosts.
    Peers(submit::PeersArgs),
    /// Write a new mesh key to FILE (mode 0600; never overwrites), for
    /// `--psk FILE` on every node and client of a private mesh.
    Keygen(KeygenArgs),
    /// Print the peer id of an identity file (the `--key FILE` of nodes and
    /// client commands; created with mode 0600 if missing), for the
    /// `--allow-*` lists.
    Id(KeygenArgs),
}

/// Options of `taskmesh keygen` and `taskmesh id`.
#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// The key file (its directory is created when missing).
    #[arg(value_name = "FILE")]
    pub file: std::path::PathBuf,
}

/// Writes a new mesh key and says how to use it.
fn keygen(a: KeygenArgs) -> anyhow::Result<ExitCode> {
    let key = taskmesh::access::write_psk(&a.file)?;
    println!(
        "wrote mesh key {} (fingerprint {})",
        a.file.display(),
        key.fingerprint()
    );
    println!(
        "give every node and client of the mesh --psk {}",
        a.file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Options shared by every command that joins a mesh.
#[derive(Args, Debug, Clone)]
pub struct MeshArgs {
    /// Peer to join (repeatable): a multiaddr with its peer id, as printed by
    /// `taskmesh node`, e.g. /ip4/192.168.1.20/tcp/7411/p2p/12D3KooW…
    #[arg(long = "join", value_name = "MULTIADDR")]
    pub join: Vec<Multiaddr>,
    /// Do not discover peers on the LAN with mDNS (on by default).
    #[arg(long)]
    pub no_mdns: bool,
    /// Mesh name: peers only talk within the same mesh [default: default].
    #[arg(long, value_name = "NAME")]
    pub mesh: Option<String>,
    /// Seconds to wait for an admin (when none is known, or it changes) [default: 15].
    #[arg(long, value_name = "SECS")]
    pub admin_wait: Option<f64>,
    /// The mesh key (made by `taskmesh keygen`): every connection is
    /// encrypted with it, and peers without it cannot connect at all.
    #[arg(long, value_name = "FILE")]
    pub psk: Option<std::path::PathBuf>,
    /// Identity file (ed25519, created with mode 0600 if missing), so the
    /// peer id survives restarts (and can be put in a node's --allow-*
    /// lists).
    #[arg(long, value_name = "FILE")]
    pub key: Option<std::path::PathBuf>,
}

impl MeshArgs {
    /// A node configuration with these options applied.
    pub fn config(&self) -> anyhow::Result<NodeConfig> {
        let mut cfg = NodeConfig {
            mesh: self.mesh.clone().unwrap_or_else(|| "default".into()),
            join: self.join.clone(),
            mdns: !self.no_mdns,
            ..Default::default()
        };
        if let Some(w) = self.admin_wait {
            cfg.admin_wait = secs(w).context("--admin-wait")?;
        }
        if let Some(path) = &self.psk {
            cfg.psk = Some(taskmesh::access::read_psk(path)?);
        }
        if let Some(path) = &self.key {
            cfg.keypair = Some(taskmesh::load_or_create_key(path).context("--key")?);
        }
        Ok(cfg)
    }

    /// Starts a client node (no workers, never admin) and waits for an
    /// admin. Fails fast when every `--join` address is unreachable and
    /// mDNS is off.
    pub async fn client(&self) -> anyhow::Result<Node> {
        if self.join.is_empty() && self.no_mdns {
            anyhow::bail!("nothing to join: give --join MULTIADDR or allow mDNS");
        }
        let mut cfg = self.config()?.not_admin();
        cfg.listen = vec![];
        let wait = cfg.admin_wait;
        let joins = cfg.join.len();
        let only_joins = !cfg.mdns;
        let node = Node::start(cfg, vec![]).await?;
        let state = node
            .wait_for_state(wait, |s| {
                s.admin.is_some() || s.no_quorum.is_some() || (only_joins && s.failed_joins.len() == joins)
            })
            .await
            .map_err(|_| anyhow::anyhow!("no admin found within {wait:?}; is the mesh reachable?"))?;
        if let (None, Some((reached, voters))) = (state.admin, state.no_quorum) {
            return Err(taskmesh::Error::NoQuorum { reached, voters }.into());
        }
        if state.admin.is_none() {
            let why: Vec<String> = state
                .failed_joins
                .iter()
                .map(|(a, e)| format!("{a}: {e}"))
                .collect();
            anyhow::bail!("cannot reach the mesh: {}", why.join("; "));
        }
        Ok(node)
    }
}

/// A task id from the command line, with a clearer message than uuid's.
pub fn task_id(s: &str) -> Result<TaskId, String> {
    s.parse().map_err(|e| {
        format!("{s:?} is not a task id ({e}); task ids are uuids as `submit --no-wait` prints them")
    })
}

/// Seconds as a duration, refusing negative and non-finite values.
pub fn secs(s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| anyhow::anyhow!("{s} is not a valid number of seconds"))
}

/// Sets up tracing on stderr.
pub fn init_logging(cli: &Cli) {
    // A node narrates what it does; client commands only speak up on trouble.
    let default = match cli.command {
        Command::Node(_) => "info,libp2p_mdns=warn,libp2p_gossipsub=warn",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only for a terminal, not for a log file or a pipe.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs the chosen command; the exit code says whether it succeeded.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Node(a) => node::run(*a).await,
        Command::Submit(a) => submit::run(a).await,
        Command::Status(a) => submit::status(a).await,
        Command::Cancel(a) => cancel::run(a).await,
        Command::Workers(a) => submit::workers(a).await,
        Command::Peers(a) => submit::peers(a).await,
        Command::Keygen(a) => keygen(a),
        Command::Id(a) => {
            let key = taskmesh::load_or_create_key(&a.file)?;
            println!("{}", key.public().to_peer_id());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A path that must exist, for friendlier messages than a bare io error.
pub fn existing(path: &std::path::Path, what: &str) -> anyhow::Result<()> {
    if !path.exists() {
        anyhow::bail!("{what} {} does not exist", path.display());
    }
    Ok(())
}
