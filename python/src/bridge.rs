//! Rust futures as asyncio awaitables, and every touch of Python from the
//! node's threads, with one rule: no thread attaches to Python once the
//! interpreter has begun to exit.
//!
//! CPython aborts a process when a foreign thread takes the GIL while the
//! interpreter finalizes ("PyGILState_Release: thread state must be current
//! when releasing"). A future completing just as `asyncio.run` returns does
//! exactly that: its thread wakes the loop with `call_soon_threadsafe`,
//! which releases the GIL around its write to the loop's self-pipe, the
//! loop finishes, the interpreter starts to exit, and the thread then takes
//! the GIL back. pyo3-async-runtimes has this race (its issue #40, open);
//! it crashed three of four runs of `benches/python/workloads.py` at exit,
//! so this module replaces it.
//!
//! The handshake: a thread counts itself in [`ATTACHED`] and then checks
//! [`EXITING`] before it attaches; [`exiting`] (an `atexit` handler, run
//! before finalization) sets `EXITING` and then waits, with the GIL
//! released, until `ATTACHED` is zero. With sequentially consistent
//! atomics, a thread either finishes with Python before the interpreter
//! exits or sees `EXITING` and leaves Python alone (dropping its Python
//! references unattached, which PyO3 defers safely).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use tokio::runtime::Runtime;

/// Set once the interpreter exits: no thread may attach after that.
static EXITING: AtomicBool = AtomicBool::new(false);
/// Threads attached to Python (or about to be) through [`with_python`].
static ATTACHED: AtomicUsize = AtomicUsize::new(0);
/// How long [`exiting`] waits for attached threads: each needs only the
/// GIL to finish, so this bounds a bug, not the normal case.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// The tokio runtime every node of this process runs on (multi-threaded,
/// one worker per core), started on first use.
pub(crate) fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("taskmesh")
            .build()
            .expect("the tokio runtime starts (threads and an epoll instance)")
    })
}

/// Runs `f` attached to Python, unless the interpreter is exiting (then
/// `None`, and Python is not touched).
pub(crate) fn with_python<R>(f: impl FnOnce(Python<'_>) -> R) -> Option<R> {
    ATTACHED.fetch_add(1, SeqCst);
    let result = if EXITING.load(SeqCst) {
        None
    } else {
        Some(Python::attach(f))
    };
    ATTACHED.fetch_sub(1, SeqCst);
    result
}

/// The `atexit` handler (registered by `taskmesh/__init__.py`): from now
/// on no node thread attaches to Python; returns once none is attached.
#[pyfunction]
pub(crate) fn exiting(py: Python<'_>) {
    EXITING.store(true, SeqCst);
    py.detach(|| {
        let end = Instant::now() + EXIT_WAIT;
        while ATTACHED.load(SeqCst) > 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

/// Called on the loop's thread: settles the asyncio future with the
/// outcome, unless it was settled already (cancelled).
#[pyclass(frozen)]
struct Settle {
    future: Py<PyAny>,
    outcome: Mutex<Option<PyResult<Py<PyAny>>>>,
}

#[pymethods]
impl Settle {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let future = self.future.bind(py);
        let outcome = self.outcome.lock().unwrap_or_else(|e| e.into_inner()).take();
        if future.call_method0("done")?.is_truthy()? {
            return Ok(());
        }
        match outcome {
            Some(Ok(value)) => future.call_method1("set_result", (value,))?,
            Some(Err(e)) => future.call_method1("set_exception", (e.into_value(py),))?,
            None => return Ok(()),
        };
        Ok(())
    }
}

/// The asyncio future's done-callback: a cancelled awaitable aborts its
/// Rust task.
#[pyclass(frozen)]
struct AbortOnCancel {
    task: tokio::task::AbortHandle,
}

#[pymethods]
impl AbortOnCancel {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future.call_method0("cancelled")?.is_truthy()? {
            self.task.abort();
        }
        Ok(())
    }
}

/// `fut` as an asyncio future of the running loop: `fut` runs on the
/// runtime, then `convert` turns its value into Python on a node thread
/// (through [`with_python`]), and the loop settles the future. Cancelling
/// the asyncio future aborts `fut`. Fails when no asyncio loop is running.
pub(crate) fn awaitable<'py, T, F, C>(py: Python<'py>, fut: F, convert: C) -> PyResult<Bound<'py, PyAny>>
where
    T: Send + 'static,
    F: Future<Output = PyResult<T>> + Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let future = event_loop.call_method0("create_future")?;
    let (event_loop_ref, future_ref) = (event_loop.unbind(), future.clone().unbind());
    let task = runtime().spawn(async move {
        let outcome = fut.await;
        with_python(move |py| {
            let settle = Settle {
                future: future_ref,
                outcome: Mutex::new(Some(outcome.and_then(|value| convert(py, value)))),
            };
            // A closed loop has no one left to tell.
            let _ = event_loop_ref.call_method1(py, "call_soon_threadsafe", (settle,));
        });
    });
    let on_done = AbortOnCancel {
        task: task.abort_handle(),
    };
    future.call_method1("add_done_callback", (on_done,))?;
    Ok(future)
}

/// Registers the bridge's Python-visible pieces in the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(exiting, m)?)?;
    m.add_class::<Settle>()?;
    m.add_class::<AbortOnCancel>()?;
    Ok(())
}
