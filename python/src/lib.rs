//! `taskmesh._native`: the Rust side of the `taskmesh` Python package.
//!
//! A thin layer over the taskmesh library (PyO3): it starts a [`Node`] on
//! the tokio runtime of `bridge`, turns the node's calls into asyncio
//! awaitables, and runs Python workers' coroutines on the asyncio loop that
//! started the node. The Ceylon-shaped API, JSON encoding and error texts
//! live in `python/taskmesh/` (pure Python).
//!
//! Rules of this layer: the node's event loop never waits on Python (every
//! call into Python, a worker's dispatch or its cancellation, runs on
//! tokio's blocking pool, and a worker's outcome comes back on a oneshot
//! channel); and no thread touches Python once the interpreter exits
//! (everything goes through `bridge::with_python`).

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use taskmesh::scheduler::CancelOutcome;
use taskmesh::task::{MAX_PRIORITY, MAX_RETRIES, MAX_TIMEOUT_MS};
use taskmesh::{
    Error, Multiaddr, Node, NodeConfig, NodeHandle, Payload, ProcessError, Task, TaskError, TaskId,
    TaskReport, TaskRequest, Trigger, WorkerInfo,
};
use tokio::sync::oneshot;

mod bridge;

pyo3::create_exception!(
    taskmesh,
    MeshError,
    pyo3::exceptions::PyException,
    "A taskmesh call failed: the node is gone, no admin was found, a network failure, a refusal."
);
pyo3::create_exception!(
    taskmesh,
    SubmitError,
    MeshError,
    "The admin refused a submission (duplicate id, unknown dependency, a cycle, a bad name or number)."
);
pyo3::create_exception!(
    taskmesh,
    DuplicateTaskError,
    SubmitError,
    "The admin already holds a task with this id (it was submitted before)."
);
pyo3::create_exception!(
    taskmesh,
    ConfigError,
    MeshError,
    "The node or its workers are set up wrongly (an address, a name, a key file)."
);

/// A library error as the Python exception of its kind, with the whole
/// chain of causes in the message.
fn to_py(e: Error) -> PyErr {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    match e {
        Error::Submit(taskmesh::scheduler::SubmitError::DuplicateId { .. }) => {
            DuplicateTaskError::new_err(text)
        }
        Error::Submit(_) => SubmitError::new_err(text),
        Error::Config(_) | Error::Disk(_) => ConfigError::new_err(text),
        _ => MeshError::new_err(text),
    }
}

fn parse_id(id: &str) -> PyResult<TaskId> {
    id.parse()
        .map_err(|e| PyValueError::new_err(format!("task id {id:?} is not a UUID: {e}")))
}

fn parse_ids(ids: &[String]) -> PyResult<Vec<TaskId>> {
    ids.iter().map(|s| parse_id(s)).collect()
}

/// Longest wait, timeout or grace this layer takes: 30 days (the tasks'
/// own limit, `MAX_TIMEOUT_MS`), so that no deadline overflows a clock.
const MAX_SECONDS: f64 = (MAX_TIMEOUT_MS / 1000) as f64;

/// `seconds` as a duration; refuses negative, NaN and values over
/// [`MAX_SECONDS`].
fn seconds(seconds: f64, what: &str) -> PyResult<Duration> {
    if !(0.0..=MAX_SECONDS).contains(&seconds) {
        return Err(PyValueError::new_err(format!(
            "{what} must be a number of seconds from 0 to {MAX_SECONDS} (30 days), not {seconds}"
        )));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Optional seconds as whole milliseconds (rounded), for a task's limits.
fn millis(value: Option<f64>, what: &str) -> PyResult<Option<u64>> {
    value
        .map(|v| seconds(v, what).map(|d| d.as_secs_f64().mul_add(1000.0, 0.5) as u64))
        .transpose()
}

/// A task as the Python layer hands it over: a dict with these keys.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct TaskSpec {
    id: String,
    name: String,
    role: String,
    difficulty: u32,
    input: Vec<u8>,
    dependencies: Vec<String>,
    timeout: Option<f64>,
    queue_timeout: Option<f64>,
    deadline: Option<f64>,
    retries: Option<u32>,
    max_attempts: Option<u32>,
    priority: i32,
    trigger: String,
}

impl TaskSpec {
    fn into_task(self) -> PyResult<Task> {
        let mut task = Task::with_id(parse_id(&self.id)?, self.name, self.role, self.difficulty)
            .with_payload(Payload::from_bytes(self.input));
        for dep in &self.dependencies {
            task = task.depends_on(parse_id(dep)?);
        }
        task.timeout_ms = millis(self.timeout, "timeout")?;
        task.queue_timeout_ms = millis(self.queue_timeout, "queue_timeout")?;
        task.deadline_ms = millis(self.deadline, "deadline")?;
        task.retries = self.retries;
        task.max_attempts = self.max_attempts;
        task.priority = self.priority;
        task.trigger = Trigger::from_str(&self.trigger).map_err(PyValueError::new_err)?;
        Ok(task)
    }
}

/// A report as a dict: `id`, `name`, `role`, `difficulty`, `status`,
/// `worker`, `node`, `attempts`, `output` (bytes or None), `error` (the
/// whole error text or None), `worker_error` (the worker's own message
/// when the worker failed the task), `elapsed_ms`, `run_ms`, `reason` (why
/// the winner won), `dependencies` (ids).
fn report_dict<'py>(py: Python<'py>, r: &TaskReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("id", r.id.0.to_string())?;
    d.set_item("name", &r.name)?;
    d.set_item("role", &r.role)?;
    d.set_item("difficulty", r.difficulty)?;
    d.set_item("status", r.status.to_string())?;
    d.set_item("worker", r.worker.as_deref())?;
    d.set_item("node", r.node.as_ref().map(|n| n.as_str().to_string()))?;
    d.set_item("attempts", r.attempts)?;
    d.set_item(
        "output",
        r.output.as_ref().map(|p| PyBytes::new(py, p.as_bytes())),
    )?;
    d.set_item("error", r.error.as_ref().map(|e| e.to_string()))?;
    let worker_error = match &r.error {
        Some(TaskError::Processing { message, .. }) => Some(message.as_str()),
        _ => None,
    };
    d.set_item("worker_error", worker_error)?;
    d.set_item("elapsed_ms", r.elapsed_ms)?;
    d.set_item("run_ms", r.run_ms)?;
    d.set_item("reason", r.auction.as_ref().map(|a| a.reason.as_str()))?;
    let deps: Vec<String> = r.dependencies.iter().map(|d| d.0.to_string()).collect();
    d.set_item("dependencies", deps)?;
    Ok(d)
}

fn reports_list(py: Python<'_>, reports: &[TaskReport]) -> PyResult<Py<PyAny>> {
    let list = PyList::empty(py);
    for r in reports {
        list.append(report_dict(py, r)?)?;
    }
    Ok(list.into_any().unbind())
}

fn workers_list(py: Python<'_>, workers: &[WorkerInfo]) -> PyResult<Py<PyAny>> {
    let list = PyList::empty(py);
    for w in workers {
        let d = PyDict::new(py);
        d.set_item("name", &w.name)?;
        d.set_item("role", &w.role)?;
        d.set_item("skill", w.skill)?;
        d.set_item("capacity", w.capacity)?;
        d.set_item("load", w.load)?;
        d.set_item("node", w.node.as_str())?;
        list.append(d)?;
    }
    Ok(list.into_any().unbind())
}

/// How a Python worker's coroutine ended.
enum Outcome {
    /// It returned this output (JSON text).
    Output(String),
    /// It failed with this message; another attempt may succeed or not.
    Failed { message: String, retryable: bool },
    /// It was cancelled on its loop (by the mesh, or by the loop shutting
    /// down).
    Cancelled,
}

/// Where a Python worker's outcome arrives, once, from the asyncio loop
/// when its coroutine ends: `send(ok, text, retryable)` or `cancelled()`.
/// A later call is ignored.
#[pyclass(frozen)]
struct Done {
    tx: Mutex<Option<oneshot::Sender<Outcome>>>,
}

impl Done {
    fn give(&self, outcome: Outcome) {
        if let Some(tx) = self.tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(outcome);
        }
    }
}

#[pymethods]
impl Done {
    /// `ok`: the text is the output (JSON); otherwise it is the error
    /// message, and `retryable` says whether another attempt may succeed.
    fn send(&self, ok: bool, text: String, retryable: bool) {
        self.give(if ok {
            Outcome::Output(text)
        } else {
            Outcome::Failed {
                message: text,
                retryable,
            }
        });
    }

    /// The coroutine was cancelled on its loop.
    fn cancelled(&self) {
        self.give(Outcome::Cancelled);
    }
}

/// A Python worker: its bidding is data (skill, slots, standing bid), so
/// that bids are answered without Python; processing calls the object's
/// `_dispatch(request, done)`, which schedules the coroutine on the asyncio
/// loop and returns a handle whose `cancel()` cancels it.
struct PyWorker {
    name: String,
    role: String,
    skill: u32,
    slots: u32,
    standing: Option<u32>,
    object: Arc<Py<PyAny>>,
    /// Fired when the worker's asyncio loop is gone (closed, or cancelling
    /// everything as it shuts down): its node then leaves the mesh, so that
    /// the admin gives its tasks to other workers instead of failing them.
    orphaned: Arc<tokio::sync::Notify>,
}

impl PyWorker {
    /// The loop is gone: tell the node to leave, and hold the attempt until
    /// the node drops it (the admin then runs the task elsewhere).
    async fn orphaned(&self) -> Result<Payload, ProcessError> {
        tracing::warn!(
            worker = %self.name,
            "the worker's asyncio loop is gone: its node leaves the mesh so that its tasks run elsewhere"
        );
        self.orphaned.notify_one();
        std::future::pending().await
    }
}

/// The request as a dict: `task_id`, `name`, `role`, `difficulty`,
/// `attempt`, `input` (bytes), `dependencies` (a list of dicts with `id`,
/// `name`, `ok`, and `output` bytes or `error` text).
fn request_dict<'py>(py: Python<'py>, req: &TaskRequest) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("task_id", req.id.0.to_string())?;
    d.set_item("name", &req.name)?;
    d.set_item("role", &req.role)?;
    d.set_item("difficulty", req.difficulty)?;
    d.set_item("attempt", req.attempt)?;
    d.set_item("input", PyBytes::new(py, req.input.as_bytes()))?;
    let deps = PyList::empty(py);
    for dep in &req.deps {
        let e = PyDict::new(py);
        e.set_item("id", dep.id.0.to_string())?;
        e.set_item("name", &dep.name)?;
        match &dep.outcome {
            Ok(p) => {
                e.set_item("ok", true)?;
                e.set_item("output", PyBytes::new(py, p.as_bytes()))?;
            }
            Err(text) => {
                e.set_item("ok", false)?;
                e.set_item("error", text)?;
            }
        }
        deps.append(e)?;
    }
    d.set_item("dependencies", deps)?;
    Ok(d)
}

#[async_trait::async_trait]
impl taskmesh::Worker for PyWorker {
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
    fn standing_bid(&self) -> Option<u32> {
        self.standing
    }

    async fn process(&self, req: TaskRequest) -> Result<Payload, ProcessError> {
        let (tx, rx) = oneshot::channel();
        let object = self.object.clone();
        let cancel = req.cancel.clone();
        let dispatch = tokio::task::spawn_blocking(move || {
            bridge::with_python(|py| -> PyResult<Option<Py<PyAny>>> {
                let request = request_dict(py, &req)?;
                let done = Py::new(
                    py,
                    Done {
                        tx: Mutex::new(Some(tx)),
                    },
                )?;
                let handle = object.bind(py).call_method1("_dispatch", (request, done))?;
                // None: the loop is closed.
                Ok((!handle.is_none()).then(|| handle.unbind()))
            })
        });
        let handle = match dispatch.await {
            Ok(Some(Ok(Some(handle)))) => handle,
            // The loop is closed, or the interpreter is exiting.
            Ok(Some(Ok(None))) | Ok(None) => return self.orphaned().await,
            Ok(Some(Err(e))) => return Err(could_not_start(e)),
            Err(e) => return Err(could_not_start(e)),
        };
        tokio::select! {
            outcome = rx => match outcome {
                Ok(Outcome::Output(text)) => Ok(Payload::from_bytes(text.into_bytes())),
                Ok(Outcome::Failed { message, retryable: true }) => Err(ProcessError::retryable(message)),
                Ok(Outcome::Failed { message, retryable: false }) => Err(ProcessError::permanent(message)),
                // Cancelled on the loop, not by the mesh: the loop is
                // shutting down, or dropped the coroutine unfinished.
                Ok(Outcome::Cancelled) | Err(_) => self.orphaned().await,
            },
            _ = cancel.cancelled() => {
                // Cancel the coroutine on its loop; its outcome no longer counts.
                tokio::task::spawn_blocking(move || {
                    bridge::with_python(|py| {
                        if let Err(e) = handle.bind(py).call_method0("cancel") {
                            e.print(py);
                        }
                    })
                });
                Err(ProcessError::retryable("cancelled"))
            }
        }
    }
}

/// A dispatch that failed before the coroutine started (a bug in the
/// package, or a worker object the user broke): no retry would help.
fn could_not_start(e: impl std::fmt::Display) -> ProcessError {
    ProcessError::permanent(format!("the Python worker could not start: {e}"))
}

fn worker_from(
    object: &Bound<'_, PyAny>,
    orphaned: &Arc<tokio::sync::Notify>,
) -> PyResult<Arc<dyn taskmesh::Worker>> {
    let name: String = object.getattr("name")?.extract()?;
    let role: String = object.getattr("role")?.extract()?;
    let skill: u32 = object.getattr("skill")?.extract()?;
    let slots: u32 = object.getattr("slots")?.extract()?;
    let standing: Option<u32> = object.getattr("standing_bid")?.extract()?;
    Ok(Arc::new(PyWorker {
        name,
        role,
        skill,
        slots,
        standing,
        object: Arc::new(object.clone().unbind()),
        orphaned: orphaned.clone(),
    }))
}

/// A running taskmesh node, from Python. Every method but the `*_now`
/// ones returns an awaitable.
#[pyclass(frozen)]
struct MeshNode {
    node: Arc<Mutex<Option<Node>>>,
    handle: NodeHandle,
    peer_id: String,
    addrs: Vec<String>,
    /// Join addresses given, and whether mDNS is on: with joins only, an
    /// admin wait ends early once every join has failed.
    joins: usize,
    mdns: bool,
}

impl MeshNode {
    fn now<T: Send>(
        &self,
        py: Python<'_>,
        timeout: f64,
        call: impl std::future::Future<Output = Result<T, Error>> + Send,
    ) -> PyResult<T> {
        let wait = seconds(timeout, "timeout")?;
        let rt = bridge::runtime();
        py.detach(|| rt.block_on(async move { tokio::time::timeout(wait, call).await }))
            .map_err(|_| to_py(Error::Timeout(wait)))?
            .map_err(to_py)
    }
}

#[pymethods]
impl MeshNode {
    /// This node's peer id.
    #[getter]
    fn peer_id(&self) -> String {
        self.peer_id.clone()
    }

    /// The addresses this node listens on, with `/p2p/<peer id>`: what
    /// another node joins.
    #[getter]
    fn addrs(&self) -> Vec<String> {
        self.addrs.clone()
    }

    /// Whether this node is the admin now.
    #[getter]
    fn is_admin(&self) -> bool {
        self.handle.state().is_admin
    }

    /// Submits tasks (dicts, see `TaskSpec`) as one batch; their ids.
    fn submit<'py>(&self, py: Python<'py>, tasks: Vec<TaskSpec>) -> PyResult<Bound<'py, PyAny>> {
        let tasks = tasks
            .into_iter()
            .map(TaskSpec::into_task)
            .collect::<PyResult<Vec<_>>>()?;
        let h = self.handle.clone();
        let submit = async move { h.submit_batch(tasks).await.map_err(to_py) };
        bridge::awaitable(py, submit, |py, ids| {
            let ids: Vec<String> = ids.into_iter().map(|i| i.0.to_string()).collect();
            Ok(ids.into_pyobject(py)?.into_any().unbind())
        })
    }

    /// Waits until every task ended; their reports, in order.
    fn wait<'py>(&self, py: Python<'py>, ids: Vec<String>) -> PyResult<Bound<'py, PyAny>> {
        let ids = parse_ids(&ids)?;
        let h = self.handle.clone();
        let wait = async move { h.wait_all(ids).await.map_err(to_py) };
        bridge::awaitable(py, wait, |py, reports| reports_list(py, &reports))
    }

    /// The reports of these tasks now (None for an unknown id).
    fn tasks<'py>(&self, py: Python<'py>, ids: Vec<String>) -> PyResult<Bound<'py, PyAny>> {
        let ids = parse_ids(&ids)?;
        let h = self.handle.clone();
        let read = async move { h.tasks(ids).await.map_err(to_py) };
        bridge::awaitable(py, read, |py, reports| {
            let list = PyList::empty(py);
            for r in &reports {
                match r {
                    Some(r) => list.append(report_dict(py, r)?)?,
                    None => list.append(py.None())?,
                }
            }
            Ok(list.into_any().unbind())
        })
    }

    /// One task's report now, blocking the calling thread (not the node)
    /// for at most `timeout` seconds; None when the admin does not know
    /// the id.
    fn task_now(&self, py: Python<'_>, id: &str, timeout: f64) -> PyResult<Option<Py<PyAny>>> {
        let id = parse_id(id)?;
        let h = self.handle.clone();
        let mut reports = self.now(py, timeout, async move { h.tasks(vec![id]).await })?;
        match reports.pop().flatten() {
            Some(r) => Ok(Some(report_dict(py, &r)?.into_any().unbind())),
            None => Ok(None),
        }
    }

    /// The workers connected to the admin, as dicts.
    fn workers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let h = self.handle.clone();
        let read = async move { h.connected_workers().await.map_err(to_py) };
        bridge::awaitable(py, read, |py, workers| workers_list(py, &workers))
    }

    /// The workers connected to the admin now, blocking the calling thread
    /// for at most `timeout` seconds.
    fn workers_now(&self, py: Python<'_>, timeout: f64) -> PyResult<Py<PyAny>> {
        let h = self.handle.clone();
        let workers = self.now(py, timeout, async move { h.connected_workers().await })?;
        workers_list(py, &workers)
    }

    /// Waits until the admin lists at least `n` workers, for at most
    /// `timeout` seconds.
    fn wait_for_workers<'py>(&self, py: Python<'py>, n: usize, timeout: f64) -> PyResult<Bound<'py, PyAny>> {
        let wait = seconds(timeout, "timeout")?;
        let h = self.handle.clone();
        let read = async move { h.wait_for_workers(n, wait).await.map_err(to_py) };
        bridge::awaitable(py, read, |py, workers| workers_list(py, &workers))
    }

    /// Waits until an admin is known, for at most `timeout` seconds; its
    /// peer id.
    fn wait_for_admin<'py>(&self, py: Python<'py>, timeout: f64) -> PyResult<Bound<'py, PyAny>> {
        let wait = seconds(timeout, "timeout")?;
        let h = self.handle.clone();
        let (joins, only_joins) = (self.joins, !self.mdns);
        let read = async move {
            let state = h
                .wait_for_state(wait, |s| {
                    s.admin.is_some()
                        || s.no_quorum.is_some()
                        || (only_joins && joins > 0 && s.failed_joins.len() == joins)
                })
                .await
                .map_err(|_| to_py(Error::NoAdmin(wait)))?;
            match (state.admin, state.no_quorum) {
                (Some(admin), _) => Ok(admin),
                (None, Some((reached, voters))) => Err(to_py(Error::NoQuorum { reached, voters })),
                (None, None) => {
                    let why: Vec<String> = state
                        .failed_joins
                        .iter()
                        .map(|(a, e)| format!("{a}: {e}"))
                        .collect();
                    Err(MeshError::new_err(format!(
                        "cannot reach the mesh: {}",
                        why.join("; ")
                    )))
                }
            }
        };
        bridge::awaitable(py, read, |py, admin| {
            Ok(admin.to_string().into_pyobject(py)?.into_any().unbind())
        })
    }

    /// Cancels tasks; for each id, `"cancelled"`, `"finished:<status>"`,
    /// `"evicted"` or `"unknown"`.
    fn cancel<'py>(&self, py: Python<'py>, ids: Vec<String>) -> PyResult<Bound<'py, PyAny>> {
        let ids = parse_ids(&ids)?;
        let h = self.handle.clone();
        let cancel = async move { h.cancel(ids).await.map_err(to_py) };
        bridge::awaitable(py, cancel, |py, outcomes| {
            let outcomes: Vec<String> = outcomes
                .into_iter()
                .map(|o| match o {
                    CancelOutcome::Cancelled => "cancelled".to_string(),
                    CancelOutcome::AlreadyFinished(s) => format!("finished:{s}"),
                    CancelOutcome::Evicted => "evicted".to_string(),
                    CancelOutcome::Unknown => "unknown".to_string(),
                })
                .collect();
            Ok(outcomes.into_pyobject(py)?.into_any().unbind())
        })
    }

    /// Stops the node: its workers finish what they run (for at most
    /// `grace` seconds), then it leaves the mesh. A second call does nothing.
    fn shutdown<'py>(&self, py: Python<'py>, grace: f64) -> PyResult<Bound<'py, PyAny>> {
        let grace = seconds(grace, "grace")?;
        let node = self.node.lock().unwrap_or_else(|e| e.into_inner()).take();
        let stop = async move {
            if let Some(node) = node {
                node.shutdown_with_grace(grace).await;
            }
            Ok(())
        };
        bridge::awaitable(py, stop, |py, ()| Ok(py.None()))
    }
}

/// How to start a node: the keyword arguments of [`start`].
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct Options {
    mesh: String,
    listen: Vec<String>,
    join: Vec<String>,
    mdns: bool,
    /// `"prefer"` (a playground), `"eligible"` or `"never"`.
    admin: String,
    seed: Option<u64>,
    psk_file: Option<String>,
    no_worker_timeout: Option<f64>,
    task_timeout: Option<f64>,
    http: Option<String>,
    metrics: Option<String>,
}

fn config(o: Options) -> PyResult<NodeConfig> {
    let addr = |a: &str| {
        Multiaddr::from_str(a).map_err(|e| ConfigError::new_err(format!("{a:?} is not a multiaddr: {e}")))
    };
    taskmesh::check_name(&o.mesh)
        .map_err(|e| ConfigError::new_err(format!("mesh name {:?}: {e}", o.mesh)))?;
    let mut cfg = NodeConfig {
        mesh: o.mesh,
        mdns: o.mdns,
        ..NodeConfig::default()
    };
    cfg.listen = o.listen.iter().map(|a| addr(a)).collect::<PyResult<_>>()?;
    cfg.join = o.join.iter().map(|a| addr(a)).collect::<PyResult<_>>()?;
    if let Some(seed) = o.seed {
        cfg = cfg.with_seed(seed);
    }
    cfg = match o.admin.as_str() {
        "prefer" => cfg.prefer_admin(),
        "eligible" => cfg,
        "never" => cfg.not_admin(),
        other => {
            return Err(ConfigError::new_err(format!(
                "admin must be \"prefer\", \"eligible\" or \"never\", not {other:?}"
            )))
        }
    };
    if let Some(path) = o.psk_file {
        cfg.psk = Some(taskmesh::access::read_psk(std::path::Path::new(&path)).map_err(to_py)?);
    }
    if let Some(t) = millis(o.no_worker_timeout, "no_worker_timeout")? {
        cfg.scheduler.no_worker_timeout = Duration::from_millis(t);
    }
    // 0: no limit, as for a task's own timeout.
    if let Some(t) = millis(o.task_timeout, "task_timeout")? {
        cfg.scheduler.default_timeout = (t > 0).then(|| Duration::from_millis(t));
    }
    let socket = |a: &str| {
        std::net::SocketAddr::from_str(a)
            .map_err(|e| ConfigError::new_err(format!("{a:?} is not an address like 127.0.0.1:8080: {e}")))
    };
    cfg.http = o.http.as_deref().map(socket).transpose()?;
    cfg.metrics = o.metrics.as_deref().map(socket).transpose()?;
    Ok(cfg)
}

/// Starts a node with these options (a dict, see `Options`) and Python
/// workers (objects with `name`, `role`, `skill`, `slots`, `standing_bid`
/// and `_dispatch`); resolves to a [`MeshNode`] once it listens.
#[pyfunction]
fn start<'py>(
    py: Python<'py>,
    options: Options,
    workers: Vec<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let cfg = config(options)?;
    let (joins, mdns) = (cfg.join.len(), cfg.mdns);
    let orphaned = Arc::new(tokio::sync::Notify::new());
    let workers = workers
        .iter()
        .map(|w| worker_from(w, &orphaned))
        .collect::<PyResult<Vec<_>>>()?;
    let start = async move {
        let node = Node::start(cfg, workers).await.map_err(to_py)?;
        let (peer_id, handle) = (node.peer_id().to_string(), node.handle());
        let addrs: Vec<String> = node.listen_addrs().iter().map(|a| a.to_string()).collect();
        let slot = Arc::new(Mutex::new(Some(node)));
        // A worker whose loop is gone stops the node (unless Python has
        // stopped it already, or dropped it).
        let watched = Arc::downgrade(&slot);
        tokio::spawn(async move {
            orphaned.notified().await;
            let node = watched
                .upgrade()
                .and_then(|slot| slot.lock().unwrap_or_else(|e| e.into_inner()).take());
            if let Some(node) = node {
                node.shutdown_with_grace(Duration::ZERO).await;
            }
        });
        Ok(MeshNode {
            peer_id,
            addrs,
            handle,
            node: slot,
            joins,
            mdns,
        })
    };
    bridge::awaitable(py, start, |py, node| Ok(Py::new(py, node)?.into_any()))
}

/// The module: [`start`], [`MeshNode`] and the exceptions.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(start, m)?)?;
    m.add_class::<MeshNode>()?;
    m.add_class::<Done>()?;
    bridge::register(m)?;
    // The admin's limits, so that the Python layer checks tasks the same way.
    m.add("MAX_RETRIES", MAX_RETRIES)?;
    m.add("MAX_PRIORITY", MAX_PRIORITY)?;
    m.add("MAX_TIMEOUT_SECONDS", MAX_TIMEOUT_MS / 1000)?;
    m.add("MAX_ERROR_BYTES", taskmesh::worker::MAX_ERROR_BYTES)?;
    m.add("MAX_WORKER_SLOTS", taskmesh::MAX_WORKER_SLOTS)?;
    m.add("MeshError", m.py().get_type::<MeshError>())?;
    m.add("SubmitError", m.py().get_type::<SubmitError>())?;
    m.add("DuplicateTaskError", m.py().get_type::<DuplicateTaskError>())?;
    m.add("ConfigError", m.py().get_type::<ConfigError>())?;
    Ok(())
}
