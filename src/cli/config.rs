//! The node's TOML configuration file (`taskmesh node --config FILE`).
//! Every key mirrors a command-line option (`--task-timeout` is
//! `task_timeout`); flags given on the command line override the file.
//! Seconds may be written as integers or decimals.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Deserializer};
use taskmesh::builtin::WorkerArg;
use taskmesh::Multiaddr;

/// A command worker as the config file describes it.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ExecEntry {
    /// The worker's name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Its skill.
    pub skill: u32,
    /// Its slots (default 1).
    #[serde(default = "one")]
    pub slots: u32,
    /// The program and its arguments.
    pub command: Vec<String>,
}

fn one() -> u32 {
    1
}

/// Everything `taskmesh node` can read from its config file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    pub listen: Option<Vec<Multiaddr>>,
    pub join: Option<Vec<Multiaddr>>,
    pub mdns: Option<bool>,
    pub mesh: Option<String>,
    pub key: Option<PathBuf>,
    pub psk: Option<PathBuf>,
    pub allow_admins: Option<PathBuf>,
    pub allow_workers: Option<PathBuf>,
    pub allow_clients: Option<PathBuf>,
    pub limits: Option<LimitsFile>,
    pub seed: Option<u64>,
    pub data_dir: Option<PathBuf>,
    pub admin: Option<bool>,
    pub admin_priority: Option<u8>,
    #[serde(default, deserialize_with = "seconds")]
    pub admin_wait: Option<f64>,
    pub workers: Option<Vec<String>>,
    #[serde(default)]
    pub exec: Vec<ExecEntry>,
    pub work_ms: Option<u64>,
    #[serde(default, deserialize_with = "seconds")]
    pub no_worker_timeout: Option<f64>,
    #[serde(default, deserialize_with = "seconds")]
    pub grace: Option<f64>,
    // Task limits, leases and retention: see `tuning`.
    #[serde(default, deserialize_with = "seconds")]
    pub task_timeout: Option<f64>,
    #[serde(default, deserialize_with = "seconds")]
    pub queue_timeout: Option<f64>,
    #[serde(default, deserialize_with = "seconds")]
    pub deadline: Option<f64>,
    pub retries: Option<u32>,
    pub max_attempts: Option<u32>,
    #[serde(default, deserialize_with = "seconds")]
    pub lease: Option<f64>,
    #[serde(default, deserialize_with = "seconds")]
    pub kill_grace: Option<f64>,
    pub retention_tasks: Option<usize>,
    #[serde(default, deserialize_with = "seconds")]
    pub retention_age: Option<f64>,
    pub retention_min_age: Option<f64>,
    pub retention_mib: Option<usize>,
}

/// The `[limits]` table: how much a node gives to peers (see
/// `taskmesh::access::Limits` for each limit and its default).
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub max_connections: Option<u32>,
    pub max_connections_per_peer: Option<u32>,
    pub max_pending_connections: Option<u32>,
    pub max_streams_per_connection: Option<usize>,
    #[serde(default, deserialize_with = "seconds")]
    pub read_timeout: Option<f64>,
    pub inbound_budget_mib: Option<usize>,
    pub max_unfinished_per_client: Option<usize>,
    pub max_queued_mib_per_client: Option<u64>,
    pub max_gossip_kib: Option<usize>,
    pub max_strikes: Option<u32>,
    #[serde(default, deserialize_with = "seconds")]
    pub cut_off_for: Option<f64>,
}

impl LimitsFile {
    /// Sets the limits the table gives; refuses zeros where a zero would
    /// stop the node from working.
    pub fn apply(&self, l: &mut taskmesh::access::Limits) -> anyhow::Result<()> {
        fn set<T: Copy + PartialEq + Default + std::fmt::Display>(
            to: &mut T,
            v: Option<T>,
            name: &str,
        ) -> anyhow::Result<()> {
            if let Some(v) = v {
                if v == T::default() {
                    anyhow::bail!("[limits] {name} must be above 0");
                }
                *to = v;
            }
            Ok(())
        }
        set(&mut l.max_connections, self.max_connections, "max_connections")?;
        set(
            &mut l.max_connections_per_peer,
            self.max_connections_per_peer,
            "max_connections_per_peer",
        )?;
        set(
            &mut l.max_pending_connections,
            self.max_pending_connections,
            "max_pending_connections",
        )?;
        set(
            &mut l.max_streams_per_connection,
            self.max_streams_per_connection,
            "max_streams_per_connection",
        )?;
        set(
            &mut l.max_unfinished_per_client,
            self.max_unfinished_per_client,
            "max_unfinished_per_client",
        )?;
        set(&mut l.max_strikes, self.max_strikes, "max_strikes")?;
        let mut mib = 0;
        set(&mut mib, self.inbound_budget_mib, "inbound_budget_mib")?;
        if mib > 0 {
            l.inbound_budget = mib << 20;
        }
        let mut queued = 0;
        set(
            &mut queued,
            self.max_queued_mib_per_client,
            "max_queued_mib_per_client",
        )?;
        if queued > 0 {
            l.max_queued_bytes_per_client = queued << 20;
        }
        let mut gossip = 0;
        set(&mut gossip, self.max_gossip_kib, "max_gossip_kib")?;
        if gossip > 0 {
            l.max_gossip = gossip << 10;
        }
        if let Some(s) = self.read_timeout {
            l.read_timeout = super::secs(s).context("[limits] read_timeout")?;
        }
        if let Some(s) = self.cut_off_for {
            l.cut_off_for = super::secs(s).context("[limits] cut_off_for")?;
        }
        Ok(())
    }
}

/// Seconds as TOML writes them: an integer (`5`) or a float (`0.5`).
fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "a number of seconds")]
    enum Secs {
        Int(i64),
        Float(f64),
    }
    Ok(Some(match Secs::deserialize(d)? {
        Secs::Int(i) => i as f64,
        Secs::Float(f) => f,
    }))
}

impl NodeFile {
    /// Reads and checks a config file; relative paths inside it (the key
    /// file) are taken relative to the file.
    pub fn load(path: &Path) -> anyhow::Result<NodeFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut file: NodeFile =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut file.key,
            &mut file.psk,
            &mut file.allow_admins,
            &mut file.allow_workers,
            &mut file.allow_clients,
        ] {
            if let Some(rel) = p.as_ref().filter(|p| p.is_relative()) {
                *p = Some(dir.join(rel));
            }
        }
        Ok(file)
    }

    /// The built-in workers, parsed.
    pub fn worker_args(&self) -> anyhow::Result<Vec<WorkerArg>> {
        self.workers
            .iter()
            .flatten()
            .map(|w| w.parse().map_err(anyhow::Error::from))
            .collect()
    }
}

/// Parses an `[[exec]]` entry into a worker spec and its command line.
pub fn exec_entry(e: &ExecEntry) -> anyhow::Result<(WorkerArg, String, Vec<String>)> {
    let spec: WorkerArg = format!("{}:{}:{}:{}", e.name, e.role, e.skill, e.slots).parse()?;
    let (program, args) = e
        .command
        .split_first()
        .with_context(|| format!("exec worker {:?} has an empty command", e.name))?;
    Ok((spec, program.clone(), args.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses_and_bad_keys_are_named() {
        let text = r#"
listen = ["/ip4/0.0.0.0/tcp/7411"]
mdns = false
workers = ["Junior:worker:3"]
[[exec]]
name = "hasher"
role = "hash"
skill = 5
command = ["sha256sum"]
"#;
        let f: NodeFile = toml::from_str(text).unwrap();
        assert_eq!(f.worker_args().unwrap()[0].skill, 3);
        let (spec, program, _) = exec_entry(&f.exec[0]).unwrap();
        assert_eq!((spec.slots, program.as_str()), (1, "sha256sum"));
        let err = toml::from_str::<NodeFile>("lisen = []").unwrap_err().to_string();
        assert!(err.contains("lisen") && err.contains("line 1"), "{err}");
    }

    #[test]
    fn seconds_are_integers_or_decimals() {
        let f: NodeFile = toml::from_str("kill_grace = 0\nlease = 0.5\nretention_mib = 3\n").unwrap();
        assert_eq!(
            (f.kill_grace, f.lease, f.retention_mib),
            (Some(0.0), Some(0.5), Some(3))
        );
        let err = toml::from_str::<NodeFile>("grace = 'soon'")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a number of seconds") && err.contains("line 1"),
            "{err}"
        );
    }
}
