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
        if let Some(key) = &file.key {
            if key.is_relative() {
                file.key = Some(path.parent().unwrap_or(Path::new(".")).join(key));
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
