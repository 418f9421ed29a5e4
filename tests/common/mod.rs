//! Helpers shared by the integration tests: test workers and bounded waits.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use taskmesh::{Node, NodeConfig, Payload, ProcessError, TaskId, TaskRequest, Worker};

pub mod cli;
pub mod http;
pub mod procs;
pub mod rogue;

/// Every wait in these tests is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(30);

/// Runs `fut`, failing the test if it takes longer than `LIMIT`.
pub async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {LIMIT:?}: {what}"),
    }
}

/// Sends the library's logs to the test's output when `RUST_LOG` is set
/// (e.g. `RUST_LOG=taskmesh=debug`); without it, does nothing.
pub fn logs_from_env() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Counts how many times each task was processed, across workers.
#[derive(Clone, Default)]
pub struct Runs(pub Arc<Mutex<HashMap<TaskId, Vec<String>>>>);

impl Runs {
    pub fn record(&self, id: TaskId, worker: &str) {
        self.0
            .lock()
            .unwrap()
            .entry(id)
            .or_default()
            .push(worker.to_string());
    }
    pub fn of(&self, id: &TaskId) -> Vec<String> {
        self.0.lock().unwrap().get(id).cloned().unwrap_or_default()
    }
}

/// A worker for tests. Task names steer it: `fail*` returns an error,
/// `slow*` takes `slow_ms`, `sum*` adds its dependencies' u64 outputs to its
/// u64 input, anything else echoes its input.
pub struct TestWorker {
    pub name: String,
    pub role: String,
    pub skill: u32,
    pub slots: u32,
    pub slow_ms: u64,
    pub runs: Runs,
}

impl TestWorker {
    pub fn shared(name: &str, skill: u32, runs: &Runs) -> Arc<dyn Worker> {
        Arc::new(TestWorker {
            name: name.into(),
            role: "worker".into(),
            skill,
            slots: 1,
            slow_ms: 3000,
            runs: runs.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Worker for TestWorker {
    fn name(&self) -> &str {
        &self.name
    }
    fn role(&self) -> &str {
        &self.role
    }
    fn skill(&self) -> u32 {
        self.skill
    }
    fn slots(&self) -> u32 {
        self.slots
    }
    async fn process(&self, req: TaskRequest) -> Result<Payload, ProcessError> {
        self.runs.record(req.id, &self.name);
        if req.name.starts_with("fail") {
            return Err(ProcessError::msg(format!("{} refuses {}", self.name, req.name)));
        }
        if req.name.starts_with("slow") {
            tokio::time::sleep(Duration::from_millis(self.slow_ms)).await;
        }
        if req.name.starts_with("sum") {
            let own: u64 = req.input()?;
            let deps: Vec<(String, u64)> = req.dependencies()?;
            return Ok(Payload::encode(&(own + deps.iter().map(|d| d.1).sum::<u64>()))?);
        }
        Ok(req.input)
    }
}

/// A loopback node config with short timeouts, suited to tests.
pub fn test_config() -> NodeConfig {
    let mut cfg = NodeConfig::default();
    cfg.scheduler.no_worker_timeout = Duration::from_millis(1500);
    cfg
}

/// Starts a non-admin node that joins `admin` and hosts `workers` (none for
/// a client node).
pub async fn worker_node(admin: &Node, workers: Vec<Arc<dyn Worker>>) -> Node {
    let cfg = test_config().not_admin().join(admin.listen_addrs()[0].clone());
    Node::start(cfg, workers).await.expect("worker node starts")
}
