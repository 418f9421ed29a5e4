//! The node's TOML configuration file (`taskmesh node --config FILE`).
//! Every key mirrors a command-line option (`--task-timeout` is
//! `task_timeout`); flags given on the command line override the file.
//! Seconds may be written as integers or decimals. Unknown keys are
//! refused by name, with their line. Errors are [`Error::Config`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::builtin::WorkerArg;
use crate::{Error, Multiaddr};

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
    /// As `--listen`.
    pub listen: Option<Vec<Multiaddr>>,
    /// As `--join`.
    pub join: Option<Vec<Multiaddr>>,
    /// `false` as `--no-mdns`.
    pub mdns: Option<bool>,
    /// As `--mesh`.
    pub mesh: Option<String>,
    /// As `--key`.
    pub key: Option<PathBuf>,
    /// As `--psk`.
    pub psk: Option<PathBuf>,
    /// As `--allow-admins`.
    pub allow_admins: Option<PathBuf>,
    /// As `--allow-workers`.
    pub allow_workers: Option<PathBuf>,
    /// As `--allow-clients`.
    pub allow_clients: Option<PathBuf>,
    /// The `[limits]` table.
    pub limits: Option<LimitsFile>,
    /// As `--seed`.
    pub seed: Option<u64>,
    /// As `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// As `--metrics` (`"PORT"` or `"HOST:PORT"`).
    pub metrics: Option<String>,
    /// As `--http` (`"PORT"` or `"HOST:PORT"`).
    pub http: Option<String>,
    /// `false` as `--no-admin`.
    pub admin: Option<bool>,
    /// As `--admin-priority`.
    pub admin_priority: Option<u8>,
    /// As `--admin-wait` (seconds).
    #[serde(default, deserialize_with = "seconds")]
    pub admin_wait: Option<f64>,
    /// Built-in workers, `NAME:ROLE:SKILL[:SLOTS]` each, as `--worker`.
    pub workers: Option<Vec<String>>,
    /// Command workers, as `--exec` (one table each).
    #[serde(default)]
    pub exec: Vec<ExecEntry>,
    /// As `--work-ms`.
    pub work_ms: Option<u64>,
    /// As `--no-worker-timeout` (seconds).
    #[serde(default, deserialize_with = "seconds")]
    pub no_worker_timeout: Option<f64>,
    /// As `--grace` (seconds).
    #[serde(default, deserialize_with = "seconds")]
    pub grace: Option<f64>,
    // Task limits, leases and retention: see `tuning`.
    /// As `--task-timeout` (seconds).
    #[serde(default, deserialize_with = "seconds")]
    pub task_timeout: Option<f64>,
    /// As `--queue-timeout` (seconds).
    #[serde(default, deserialize_with = "seconds")]
    pub queue_timeout: Option<f64>,
    /// As `--deadline` (seconds).
    #[serde(default, deserialize_with = "seconds")]
    pub deadline: Option<f64>,
    /// As `--retries`.
    pub retries: Option<u32>,
    /// As `--max-attempts`.
    pub max_attempts: Option<u32>,
    /// As `--lease` (seconds).
    #[serde(default, deserialize_with = "seconds")]
    pub lease: Option<f64>,
    /// As `--kill-grace` (seconds).
    #[serde(default, deserialize_with = "seconds")]
    pub kill_grace: Option<f64>,
    /// As `--worker-queue`.
    pub worker_queue: Option<u32>,
    /// As `--retention-tasks`.
    pub retention_tasks: Option<usize>,
    /// As `--retention-age` (seconds).
    #[serde(default, deserialize_with = "seconds")]
    pub retention_age: Option<f64>,
    /// Seconds, as `--retention-min-age`.
    pub retention_min_age: Option<f64>,
    /// As `--retention-mib`.
    pub retention_mib: Option<usize>,
}

/// The `[limits]` table: how much a node gives to peers (see
/// `taskmesh::access::Limits` for each limit and its default).
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// [`crate::access::Limits::max_connections`].
    pub max_connections: Option<u32>,
    /// [`crate::access::Limits::max_connections_per_peer`].
    pub max_connections_per_peer: Option<u32>,
    /// [`crate::access::Limits::max_pending_connections`].
    pub max_pending_connections: Option<u32>,
    /// [`crate::access::Limits::max_streams_per_connection`].
    pub max_streams_per_connection: Option<usize>,
    /// [`crate::access::Limits::read_timeout`] (seconds).
    #[serde(default, deserialize_with = "seconds")]
    pub read_timeout: Option<f64>,
    /// [`crate::access::Limits::idle_peer`] (seconds).
    #[serde(default, deserialize_with = "seconds")]
    pub idle_peer: Option<f64>,
    /// [`crate::access::Limits::stall_timeout`] (seconds).
    #[serde(default, deserialize_with = "seconds")]
    pub stall_timeout: Option<f64>,
    /// [`crate::access::Limits::inbound_budget`] (MiB).
    pub inbound_budget_mib: Option<usize>,
    /// [`crate::access::Limits::max_unfinished_per_client`].
    pub max_unfinished_per_client: Option<usize>,
    /// [`crate::access::Limits::max_queued_bytes_per_client`] (MiB).
    pub max_queued_mib_per_client: Option<u64>,
    /// [`crate::access::Limits::max_gossip`] (KiB).
    pub max_gossip_kib: Option<usize>,
    /// [`crate::access::Limits::max_strikes`].
    pub max_strikes: Option<u32>,
    /// [`crate::access::Limits::cut_off_for`] (seconds).
    #[serde(default, deserialize_with = "seconds")]
    pub cut_off_for: Option<f64>,
}

impl LimitsFile {
    /// Sets the limits the table gives; refuses zeros where a zero would
    /// stop the node from working.
    pub fn apply(&self, l: &mut crate::access::Limits) -> Result<(), Error> {
        fn set<T: Copy + PartialEq + Default + std::fmt::Display>(
            to: &mut T,
            v: Option<T>,
            name: &str,
        ) -> Result<(), Error> {
            if let Some(v) = v {
                if v == T::default() {
                    return Err(Error::Config(format!("[limits] {name} must be above 0")));
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
            l.inbound_budget = scaled(mib as u64, 1 << 20, "inbound_budget_mib")?;
        }
        let mut queued = 0;
        set(
            &mut queued,
            self.max_queued_mib_per_client,
            "max_queued_mib_per_client",
        )?;
        if queued > 0 {
            l.max_queued_bytes_per_client = scaled(queued, 1 << 20, "max_queued_mib_per_client")?;
        }
        let mut gossip = 0;
        set(&mut gossip, self.max_gossip_kib, "max_gossip_kib")?;
        if gossip > 0 {
            l.max_gossip = scaled(gossip as u64, 1 << 10, "max_gossip_kib")?;
        }
        for (to, v, name) in [
            (&mut l.idle_peer, self.idle_peer, "idle_peer"),
            (&mut l.stall_timeout, self.stall_timeout, "stall_timeout"),
            (&mut l.read_timeout, self.read_timeout, "read_timeout"),
        ] {
            if let Some(s) = v {
                let d = seconds_to_duration(s, &format!("[limits] {name}"))?;
                if d.is_zero() {
                    return Err(Error::Config(format!("[limits] {name} must be above 0")));
                }
                *to = d;
            }
        }
        if let Some(s) = self.cut_off_for {
            l.cut_off_for = seconds_to_duration(s, "[limits] cut_off_for")?;
        }
        Ok(())
    }
}

/// `n` units of `unit` bytes, refused when the product does not fit.
fn scaled<T: TryFrom<u128>>(n: impl Into<u128>, unit: u128, name: &str) -> Result<T, Error> {
    n.into()
        .checked_mul(unit)
        .and_then(|b| T::try_from(b).ok())
        .ok_or_else(|| Error::Config(format!("[limits] {name} is too large")))
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

/// Parses a config file's text (TOML), refusing unknown keys; the error
/// names the key and its line.
pub fn parse(text: &str) -> Result<NodeFile, toml::de::Error> {
    toml::from_str(text)
}

/// Seconds as a duration, refusing negative and non-finite values; `what`
/// names the setting in the error.
pub fn seconds_to_duration(s: f64, what: &str) -> Result<std::time::Duration, Error> {
    std::time::Duration::try_from_secs_f64(s)
        .map_err(|_| Error::Config(format!("{what}: {s} is not a valid number of seconds")))
}

impl NodeFile {
    /// Reads and checks a config file; relative paths inside it (the key
    /// file) are taken relative to the file.
    pub fn load(path: &Path) -> Result<NodeFile, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read config file {}: {e}", path.display())))?;
        let mut file: NodeFile =
            parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
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
    pub fn worker_args(&self) -> Result<Vec<WorkerArg>, Error> {
        self.workers
            .iter()
            .flatten()
            .map(|w| w.parse().map_err(|e| Error::Config(format!("workers: {e}"))))
            .collect()
    }
}

/// Parses an `[[exec]]` entry into a worker spec and its command line.
pub fn exec_entry(e: &ExecEntry) -> Result<(WorkerArg, String, Vec<String>), Error> {
    let spec: WorkerArg = format!("{}:{}:{}:{}", e.name, e.role, e.skill, e.slots)
        .parse()
        .map_err(|err| Error::Config(format!("exec worker {:?}: {err}", e.name)))?;
    let (program, args) = e
        .command
        .split_first()
        .ok_or_else(|| Error::Config(format!("exec worker {:?} has an empty command", e.name)))?;
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
    fn limits_are_set_and_zeros_or_overflows_refused() {
        let mut l = crate::access::Limits::default();
        let f =
            parse("[limits]\ninbound_budget_mib = 32\nread_timeout = 1.5\nmax_gossip_kib = 16\n").unwrap();
        f.limits.unwrap().apply(&mut l).unwrap();
        assert_eq!(l.inbound_budget, 32 << 20);
        assert_eq!(l.max_gossip, 16 << 10);
        assert_eq!(l.read_timeout, std::time::Duration::from_millis(1500));
        for (text, want) in [
            ("max_connections = 0", "above 0"),
            ("inbound_budget_mib = 17592186044416", "too large"),
            ("max_queued_mib_per_client = 17592186044416", "too large"),
            ("max_gossip_kib = 18014398509481984", "too large"),
            ("read_timeout = -1", "not a valid number of seconds"),
            ("stall_timeout = 0", "above 0"),
        ] {
            let f = parse(&format!("[limits]\n{text}\n")).unwrap();
            let err = f.limits.unwrap().apply(&mut l).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
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
