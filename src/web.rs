//! The live mesh page and its JSON API, served when
//! [`crate::NodeConfig::http`] names an address (the CLI's `--http ADDR`).
//! The page (HTML, CSS and JavaScript embedded in the binary: it needs no
//! internet) polls the API once a second and shows the admin and voters,
//! every peer with its workers, the tasks in flight and recently finished
//! with their reasons, the dependency graph of the latest 40 tasks coloured
//! by status, and throughput and ready-queue depth over the last ten minutes.
//!
//! The API, for tools as well (JSON, `GET`):
//! - `/api/mesh`: this node, the admin it follows, term, voters (`null` on
//!   a node that keeps no replica of the ledger), `no_quorum`,
//!   `peers` (as `taskmesh peers --json`), `workers` (as `taskmesh workers
//!   --json`), and `error` when the admin could not be asked.
//! - `/api/tasks`: `tasks`, the most recent submissions (up to 1,000, oldest
//!   first), each `{id, name, role, difficulty, status, worker, node,
//!   attempts, elapsed_ms, reason, error, dependencies, bids}` (`bids` as in
//!   `taskmesh submit --json`: [`BidLine`]; no outputs); `error` as above.
//! - `/api/series`: `samples`, one a second for the last ten minutes while
//!   this node is the admin, each `{at_ms, finished, ready, running}`:
//!   tasks finished since its replica began applying the ledger (a
//!   counter: the page shows its rate), tasks waiting for an award, tasks
//!   assigned, queued or running.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde::Serialize;

use crate::net::Command;
use crate::node::NodeHandle;
use crate::protocol::PeerInfo;
use crate::scheduler::Lookup;
use crate::task::{BidLine, TaskReport, WorkerInfo};

const INDEX: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/app.js");
const STYLE: &str = include_str!("web/style.css");

/// How long the API waits for the admin's answer before it says so.
const ASK_WITHIN: Duration = Duration::from_secs(3);

/// Samples kept for `/api/series`: ten minutes, one a second.
const SAMPLES: usize = 600;

/// One `/api/series` sample.
#[derive(Clone, Copy, Debug, Serialize)]
struct Sample {
    /// Wall-clock milliseconds since the Unix epoch.
    at_ms: u64,
    /// Tasks finished since this replica began applying the ledger.
    finished: u64,
    /// Tasks waiting for an award.
    ready: u64,
    /// Tasks assigned, queued or running.
    running: u64,
}

#[derive(Clone)]
struct Web {
    handle: NodeHandle,
    samples: Arc<Mutex<VecDeque<Sample>>>,
}

/// `/api/mesh`.
#[derive(Serialize)]
struct MeshView {
    node: String,
    admin: Option<String>,
    term: u64,
    is_admin: bool,
    /// `None` on a node that keeps no replica of the ledger (it does not
    /// know the voters).
    voters: Option<usize>,
    no_quorum: Option<(usize, usize)>,
    peers: Vec<PeerInfo>,
    workers: Vec<WorkerInfo>,
    error: Option<String>,
}

/// One task in `/api/tasks`.
#[derive(Serialize)]
struct TaskView {
    id: String,
    name: String,
    role: String,
    difficulty: u32,
    status: String,
    worker: Option<String>,
    node: Option<String>,
    attempts: u32,
    elapsed_ms: u64,
    reason: Option<String>,
    error: Option<String>,
    dependencies: Vec<String>,
    bids: Vec<BidLine>,
}

impl From<TaskReport> for TaskView {
    fn from(r: TaskReport) -> Self {
        TaskView {
            id: r.id.to_string(),
            status: r.status.to_string(),
            node: r.node.map(|n| n.to_string()),
            reason: r.auction.as_ref().map(|a| a.reason.clone()),
            error: r.error.map(|e| e.to_string()),
            dependencies: r.dependencies.iter().map(ToString::to_string).collect(),
            bids: r.auction.as_ref().map_or_else(Vec::new, |a| {
                let each = a.bids.iter().map(|b| BidLine::new(b, r.difficulty, a.queued));
                each.collect()
            }),
            name: r.name,
            role: r.role,
            difficulty: r.difficulty,
            worker: r.worker,
            attempts: r.attempts,
            elapsed_ms: r.elapsed_ms,
        }
    }
}

/// An answer from the admin within [`ASK_WITHIN`], or why not.
async fn ask<T>(fut: impl std::future::Future<Output = Result<T, crate::Error>>) -> Result<T, String> {
    match tokio::time::timeout(ASK_WITHIN, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("the admin did not answer within {ASK_WITHIN:?}")),
    }
}

async fn mesh(State(web): State<Web>) -> Json<MeshView> {
    let s = web.handle.state();
    let (peers, workers) = tokio::join!(ask(web.handle.peers()), ask(web.handle.connected_workers()));
    let error = peers.as_ref().err().or(workers.as_ref().err()).cloned();
    Json(MeshView {
        node: web.handle.peer_id().to_string(),
        admin: s.admin.map(|a| a.to_string()),
        term: s.term,
        is_admin: s.is_admin,
        voters: (s.voters > 0).then_some(s.voters),
        no_quorum: s.no_quorum,
        peers: peers.unwrap_or_default(),
        workers: workers.unwrap_or_default(),
        error,
    })
}

#[derive(Serialize)]
struct TasksView {
    tasks: Vec<TaskView>,
    error: Option<String>,
}

async fn tasks(State(web): State<Web>) -> Json<TasksView> {
    match ask(web.handle.lookup(Vec::new())).await {
        Ok(lookups) => {
            let found = lookups.into_iter().filter_map(|l| match l {
                Lookup::Found(r) => Some(TaskView::from(*r)),
                _ => None,
            });
            Json(TasksView {
                tasks: found.collect(),
                error: None,
            })
        }
        Err(error) => Json(TasksView {
            tasks: Vec::new(),
            error: Some(error),
        }),
    }
}

#[derive(Serialize)]
struct SeriesView {
    samples: Vec<Sample>,
}

async fn series(State(web): State<Web>) -> Json<SeriesView> {
    let samples = web
        .samples
        .lock()
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default();
    Json(SeriesView { samples })
}

fn asset(kind: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")],
        body,
    )
}

/// Takes a sample a second while the node runs (an admin's census; nothing
/// on other nodes).
async fn sample(handle: NodeHandle, samples: Arc<Mutex<VecDeque<Sample>>>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        if handle.commands.send(Command::Read(tx)).await.is_err() {
            return;
        }
        let Ok(reading) = rx.await else { return };
        let Some(census) = reading.census else { continue };
        let running = census
            .tasks
            .iter()
            .filter(|((_, status), _)| matches!(status.as_str(), "assigned" | "queued" | "running"))
            .map(|(_, n)| n)
            .sum();
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let s = Sample {
            at_ms,
            finished: census.finished.values().sum(),
            ready: census.ready.values().sum(),
            running,
        };
        if let Ok(mut all) = samples.lock() {
            if all.len() == SAMPLES {
                all.pop_front();
            }
            all.push_back(s);
        }
    }
}

/// Serves the page and the API on `listener` until the node is gone.
pub(crate) async fn serve(listener: tokio::net::TcpListener, handle: NodeHandle) {
    let samples = Arc::new(Mutex::new(VecDeque::with_capacity(SAMPLES)));
    tokio::spawn(sample(handle.clone(), samples.clone()));
    let web = Web { handle, samples };
    let app = axum::Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route("/api/mesh", get(mesh))
        .route("/api/tasks", get(tasks))
        .route("/api/series", get(series))
        .layer(axum::middleware::from_fn(known_host))
        .with_state(web);
    serve_bounded(listener, app, "the mesh page").await;
}

/// Most connections one of the node's HTTP servers holds at once; more
/// wait to be accepted.
const MAX_CONNECTIONS: usize = 64;

/// Longest a connection to one of the node's HTTP servers stays open, in all
/// (a browser opens another): a client that sends half a request, or reads
/// nothing, holds a connection no longer.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` with at most [`MAX_CONNECTIONS`] connections
/// of at most [`CONNECTION_LIFETIME`] each, so that slow or idle clients
/// cannot take the node's file descriptors (which its peers need) or keep a
/// server busy for good. `what` names the server in the log.
pub(crate) async fn serve_bounded(listener: tokio::net::TcpListener, app: axum::Router, what: &str) {
    let bounded = Bounded {
        inner: listener,
        permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
    };
    if let Err(e) = axum::serve(bounded, app).await {
        tracing::warn!(error = %e, "{what}'s server stopped");
    }
}

/// A listener that accepts a connection only with a permit in hand.
struct Bounded {
    inner: tokio::net::TcpListener,
    permits: Arc<tokio::sync::Semaphore>,
}

impl axum::serve::Listener for Bounded {
    type Io = Limited;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Limited, SocketAddr) {
        loop {
            let Ok(permit) = self.permits.clone().acquire_owned().await else {
                // Never closed; wait rather than spin if it were.
                std::future::pending::<()>().await;
                continue;
            };
            match self.inner.accept().await {
                Ok((io, addr)) => {
                    let deadline = Box::pin(tokio::time::sleep(CONNECTION_LIFETIME));
                    return (
                        Limited {
                            io,
                            deadline,
                            _permit: permit,
                        },
                        addr,
                    );
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment.
                    tracing::debug!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection that fails its reads and writes once its lifetime is over,
/// and gives its permit back when dropped.
struct Limited {
    io: tokio::net::TcpStream,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Limited {
    /// Ready with an error once the lifetime is over (and wakes the task
    /// then, even if the peer stays silent).
    fn expired(&mut self, cx: &mut std::task::Context<'_>) -> Option<std::io::Error> {
        use std::future::Future as _;
        let over = self.deadline.as_mut().poll(cx).is_ready();
        over.then(|| std::io::Error::new(std::io::ErrorKind::TimedOut, "connection lifetime over"))
    }
}

impl tokio::io::AsyncRead for Limited {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Some(e) = self.expired(cx) {
            return std::task::Poll::Ready(Err(e));
        }
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Limited {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if let Some(e) = self.expired(cx) {
            return std::task::Poll::Ready(Err(e));
        }
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Answers only requests addressed to this machine by an IP address,
/// `localhost` or its own host name (as `Host` says): a page on another
/// site that points a name of its own at this address (DNS rebinding)
/// cannot read the mesh through the visitor's browser.
pub(crate) async fn known_host(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if host_is_ours(host) {
        return next.run(req).await;
    }
    let text =
        format!("this page answers to an IP address, localhost or this machine's name, not {host:?}\n");
    (axum::http::StatusCode::MISDIRECTED_REQUEST, text).into_response()
}

/// See [`known_host`]: `host` is `NAME[:PORT]` or `[IPv6][:PORT]`.
fn host_is_ours(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split(']')
                .next()
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
        }
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let own = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let own = own.to_ascii_lowercase();
    !own.is_empty() && (name == own || name == format!("{own}.local"))
}

/// Binds `addr` for HTTP before the node starts (a taken port is an error
/// at start); `what` names the server in errors.
pub(crate) async fn bind(
    addr: SocketAddr,
    what: &str,
) -> Result<(tokio::net::TcpListener, SocketAddr), crate::Error> {
    let err = |e: std::io::Error| crate::Error::Config(format!("cannot serve {what} on {addr}: {e}"));
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(err)?;
    let bound = listener.local_addr().map_err(err)?;
    Ok((listener, bound))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_addresses_localhost_and_this_machine_are_known_hosts() {
        for ok in [
            "127.0.0.1:8080",
            "localhost:1",
            "LOCALHOST",
            "[::1]:8080",
            "192.168.1.20",
            "10.0.0.1:80",
        ] {
            assert!(super::host_is_ours(ok), "{ok}");
        }
        for bad in [
            "evil.example:80",
            "evil.example",
            "",
            "[evil]:80",
            "127.0.0.1.evil.example",
        ] {
            assert!(!super::host_is_ours(bad), "{bad}");
        }
        let own = nix::unistd::gethostname().unwrap().into_string().unwrap();
        assert!(super::host_is_ours(&format!("{own}:8080")));
    }

    /// A client that sends half a request is cut off at the connection's
    /// lifetime (virtual time: the runtime skips ahead while all wait).
    #[tokio::test(start_paused = true)]
    async fn a_half_sent_request_is_cut_off_at_the_connection_lifetime() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        tokio::spawn(super::serve_bounded(listener, app, "a test"));
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(super::CONNECTION_LIFETIME * 4, slow.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the connection is still open after four lifetimes");
        assert!(
            started.elapsed() >= super::CONNECTION_LIFETIME,
            "{:?}",
            started.elapsed()
        );
    }
}
