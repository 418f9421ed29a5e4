//! A mesh node: starts the swarm and its event loop, and hands out cheap
//! cloneable handles to talk to it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{identity, Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::net::{build_swarm, Command, EventLoop, NodeState};
use crate::protocol::DEFAULT_MAX_FRAME;
use crate::scheduler::{CancelOutcome, Lookup, SchedulerConfig};
use crate::task::{Task, TaskId, TaskReport, WorkerInfo};
use crate::worker::{RuntimeConfig, Worker, WorkerRuntime};
use crate::Error;

/// Refuses a TCP listen address with a fixed port that another socket
/// already holds. libp2p's TCP transport sets `SO_REUSEPORT` on its
/// listeners, so a second node on the same port would otherwise start and
/// share the first one's incoming connections. A probe bound without
/// `SO_REUSEPORT` fails on a port in use; it is closed at once, before
/// libp2p binds (a process that takes the port in between still shares it).
fn check_port_free(addr: &Multiaddr) -> Result<(), Error> {
    use libp2p::multiaddr::Protocol;
    let mut parts = addr.iter();
    let ip: std::net::IpAddr = match parts.next() {
        Some(Protocol::Ip4(ip)) => ip.into(),
        Some(Protocol::Ip6(ip)) => ip.into(),
        _ => return Ok(()),
    };
    match parts.next() {
        Some(Protocol::Tcp(port)) if port != 0 => std::net::TcpListener::bind((ip, port))
            .map(drop)
            .map_err(|e| Error::Config(format!("cannot listen on {addr}: {e}"))),
        _ => Ok(()),
    }
}

/// How a node is set up. `Default` gives a loopback node on a random port,
/// mDNS off, admin-eligible with no preference.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The mesh name: nodes only talk to nodes of the same mesh.
    pub mesh: String,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start (multiaddrs, ideally with `/p2p/<peer id>`).
    pub join: Vec<Multiaddr>,
    /// Discover peers on the LAN with mDNS.
    pub mdns: bool,
    /// The node's identity; a fresh one when `None`.
    pub keypair: Option<identity::Keypair>,
    /// Whether and how this node keeps the ledger and may become admin.
    pub admin: AdminConfig,
    /// Scheduler settings, used while this node is admin.
    pub scheduler: SchedulerConfig,
    /// Largest request or response frame.
    pub max_frame: usize,
    /// How long a request may go unanswered.
    pub request_timeout: Duration,
    /// How long a client call waits for an admin to be elected.
    pub admin_wait: Duration,
    /// When shutting down with nothing left to finish, how long to keep the
    /// connections up so the last messages leave.
    pub shutdown_linger: Duration,
    /// How often this node renews the leases of the attempts it holds.
    /// Default 500 ms, a quarter of the default lease
    /// ([`SchedulerConfig::lease`]).
    pub renew_interval: Duration,
    /// Limits of this node's workers (output size, kill grace).
    pub runtime: RuntimeConfig,
    /// Where this node keeps its replica of the ledger (the Raft log and
    /// snapshots, in `ledger.redb`) and, when [`NodeConfig::keypair`] is
    /// `None`, its identity (`node.key`), so that a node started again
    /// with the same directory is the same peer and the same replica: a
    /// whole mesh stopped and started again resumes every accepted task
    /// not finished. `None` (the default): the ledger lives in memory, and
    /// survives only as long as a majority of voters stays up. Created
    /// (mode 0700) when missing; one node at a time.
    pub data_dir: Option<std::path::PathBuf>,
    /// The operator's step after a majority of the ledger's voters is lost
    /// for good (their machines and data directories gone): with
    /// [`NodeConfig::data_dir`] holding a replica, the node founds a new
    /// ledger with itself as the only voter and everything its replica
    /// had seen committed, and leads it; other nodes join it as usual.
    /// What the lost voters committed after this replica last heard from
    /// them is not in it. Start every other former voter with an empty
    /// data directory (its old ledger is a different one now). Node start
    /// fails with [`Error::Config`] when the directory holds no ledger.
    /// Default false.
    pub recover: bool,
    /// The mesh key (`--psk FILE`, see [`crate::access::read_psk`]): with
    /// one, every connection is encrypted with it before anything else
    /// (libp2p's private-network transport), and a peer without the same
    /// key cannot connect at all. `None` (the default): an open mesh.
    pub psk: Option<libp2p::pnet::PreSharedKey>,
    /// Who may be admin, host workers, or make client calls; default:
    /// everyone (an open mesh logs a warning at start).
    pub allow: crate::access::AllowLists,
    /// How much this node gives to peers (connections, streams, bytes,
    /// strikes); see [`crate::access::Limits`].
    pub limits: crate::access::Limits,
    /// Where to serve this node's metrics (`GET /metrics`, the
    /// Prometheus/OpenMetrics text format; see [`crate::metrics`]). `None`
    /// (the default): no metrics are kept or served. Port 0 picks a free
    /// port ([`Node::metrics_addr`] says which). Node start fails with
    /// [`Error::Config`] when the address cannot be bound.
    pub metrics: Option<std::net::SocketAddr>,
    /// Where to serve the live mesh page and its JSON API (see
    /// [`crate::web`]). `None` (the default): no page. Port 0 picks a free
    /// port ([`Node::http_addr`] says which). Node start fails with
    /// [`Error::Config`] when the address cannot be bound.
    pub http: Option<std::net::SocketAddr>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            mesh: "default".into(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr")],
            join: Vec::new(),
            mdns: false,
            keypair: None,
            admin: AdminConfig::default(),
            scheduler: SchedulerConfig::default(),
            max_frame: DEFAULT_MAX_FRAME,
            request_timeout: Duration::from_secs(60),
            admin_wait: Duration::from_secs(15),
            shutdown_linger: Duration::from_millis(50),
            renew_interval: Duration::from_millis(500),
            runtime: RuntimeConfig::default(),
            data_dir: None,
            recover: false,
            psk: None,
            allow: Default::default(),
            limits: Default::default(),
            metrics: None,
            http: None,
        }
    }
}

impl NodeConfig {
    /// Uses a deterministic identity derived from `seed`, so the peer id is
    /// the same on every run (demos and tests).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.keypair = Some(keypair_from_seed(seed));
        self
    }

    /// Adds a peer to join.
    pub fn join(mut self, addr: Multiaddr) -> Self {
        self.join.push(addr);
        self
    }

    /// Makes the node prefer to be admin (the playground): the highest
    /// priority, so that it founds a ledger at once even when it also
    /// looks for peers.
    pub fn prefer_admin(mut self) -> Self {
        self.admin.priority = u8::MAX;
        self
    }

    /// Makes the node never become admin nor keep a replica of the ledger.
    pub fn not_admin(mut self) -> Self {
        self.admin.eligible = false;
        self
    }
}

/// How a node takes part in the ledger: the Raft log of the scheduler's
/// events, whose leader is the admin (see [`crate::consensus`]). Ticks are
/// Raft's unit of time.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// May this node keep a replica of the ledger and become admin? Default
    /// true. Workers-only and client nodes set it false.
    pub eligible: bool,
    /// Preference to be admin (default 0; the playground uses 255). One
    /// with priority `p` that looks for a mesh waits `found_after / (1 +
    /// p)` before it founds a ledger of its own; the admin promotes
    /// preferred learners to voters first, hands its office to a live
    /// voter preferred over itself once that voter holds the whole log (at
    /// most once per `voter_timeout`), and, when it stops, to the most
    /// preferred voter that holds the whole log. It rides in the node's
    /// membership entry of the ledger.
    pub priority: u8,
    /// Voters the admin keeps (default 3: a mesh survives one failure;
    /// with two it survives none, since a majority of two is both).
    pub voters: usize,
    /// Raft's tick (default 200 ms: an idle voter wakes five times a
    /// second for it; 4 idle nodes use under 1 % of one core, W13).
    pub tick: Duration,
    /// Ticks without a leader before a voter asks for votes: an election
    /// timeout between this and twice this (default 5: 1–2 s).
    pub election_ticks: usize,
    /// Ticks between the leader's heartbeats (default 2: 400 ms).
    pub heartbeat_ticks: usize,
    /// A voter not heard from for this long is replaced by an up-to-date
    /// learner, when there is one (default 20 s).
    pub voter_timeout: Duration,
    /// How long an eligible node that joins a mesh (by address or mDNS)
    /// waits to hear of its admin before it founds a ledger of its own
    /// (default 3 s). A node with nothing to join founds one at once.
    pub found_after: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            eligible: true,
            priority: 0,
            voters: 3,
            tick: Duration::from_millis(200),
            election_ticks: 5,
            heartbeat_ticks: 2,
            voter_timeout: Duration::from_secs(20),
            found_after: Duration::from_secs(3),
        }
    }
}

/// An ed25519 identity derived from a number: the seed's bytes, spread over
/// 32 bytes with a fixed mix. Not secret; for stable demo and test ids only.
pub fn keypair_from_seed(seed: u64) -> identity::Keypair {
    let mut bytes = [0u8; 32];
    let mut x = seed ^ 0x7461_736b_6d65_7368; // "taskmesh"
    for chunk in bytes.chunks_mut(8) {
        // splitmix64
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    identity::Keypair::ed25519_from_bytes(bytes).expect("32 bytes is a valid ed25519 secret")
}

/// A cheap, cloneable way to talk to a running node.
#[derive(Clone)]
pub struct NodeHandle {
    pub(crate) commands: mpsc::Sender<Command>,
    state: watch::Receiver<NodeState>,
    peer_id: PeerId,
}

impl NodeHandle {
    async fn call<T>(&self, make: impl FnOnce(crate::net::Reply<T>) -> Command) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| Error::NodeGone)?;
        rx.await.map_err(|_| Error::NodeGone)?
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Submits a batch (any order; dependencies inside the batch or on known
    /// tasks). Accepted whole or refused whole.
    pub async fn submit_batch(&self, tasks: Vec<Task>) -> Result<Vec<TaskId>, Error> {
        self.call(|r| Command::Submit(tasks, r)).await
    }

    /// Submits one task.
    pub async fn submit(&self, task: Task) -> Result<TaskId, Error> {
        let ids = self.submit_batch(vec![task]).await?;
        ids.into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("empty submit answer".into()))
    }

    /// The task's report as of now (any status). Fails with
    /// [`Error::Evicted`] for a task finished and evicted after its
    /// retention, [`Error::UnknownTask`] for an id never seen.
    pub async fn task(&self, id: TaskId) -> Result<TaskReport, Error> {
        let mut r = self.lookup(vec![id]).await?;
        match r.pop() {
            Some(Lookup::Found(report)) => Ok(*report),
            Some(Lookup::Evicted) => Err(Error::Evicted(id)),
            _ => Err(Error::UnknownTask(id)),
        }
    }

    /// Reports of several tasks as of now (`None` for unknown or evicted
    /// ids); with no ids, the most recently submitted tasks (up to a
    /// thousand).
    pub async fn tasks(&self, ids: Vec<TaskId>) -> Result<Vec<Option<TaskReport>>, Error> {
        let found = self.lookup(ids).await?.into_iter().map(|l| match l {
            Lookup::Found(r) => Some(*r),
            _ => None,
        });
        Ok(found.collect())
    }

    /// What the admin knows of each id (report, evicted, unknown), in order;
    /// with no ids, the most recently submitted tasks.
    pub async fn lookup(&self, ids: Vec<TaskId>) -> Result<Vec<Lookup>, Error> {
        self.call(|r| Command::Status(ids, r)).await
    }

    /// Cancels tasks: a running attempt is stopped (a Rust worker sees it
    /// through [`TaskRequest::cancel`](crate::TaskRequest), a command
    /// worker's process group gets SIGTERM, then SIGKILL), and dependents
    /// follow their trigger rules. One outcome per id, in order.
    pub async fn cancel(&self, ids: Vec<TaskId>) -> Result<Vec<CancelOutcome>, Error> {
        self.call(|r| Command::Cancel(ids, r)).await
    }

    /// Waits until the task has completed or failed, and returns its report
    /// (a failed task is a report with an error, not an `Err`).
    pub async fn wait(&self, id: TaskId) -> Result<TaskReport, Error> {
        let mut r = self.wait_all(vec![id]).await?;
        r.pop().ok_or(Error::UnknownTask(id))
    }

    /// Waits until every task has completed or failed; reports in `ids` order.
    pub async fn wait_all(&self, ids: Vec<TaskId>) -> Result<Vec<TaskReport>, Error> {
        self.call(|r| Command::Await(ids, false, r)).await
    }

    /// Waits until at least one of the tasks has completed or failed, and
    /// returns the reports of all that have (in `ids` order): a way to follow
    /// a batch's progress without polling.
    pub async fn wait_any(&self, ids: Vec<TaskId>) -> Result<Vec<TaskReport>, Error> {
        self.call(|r| Command::Await(ids, true, r)).await
    }

    /// Submits a batch and waits for all of it; reports in submission order.
    pub async fn execute_batch(&self, tasks: Vec<Task>) -> Result<Vec<TaskReport>, Error> {
        let ids = self.submit_batch(tasks).await?;
        self.wait_all(ids).await
    }

    /// Ceylon's call: submits a task and, when `wait_for_completion`, waits
    /// for its end; otherwise returns its report right after submission.
    pub async fn add_and_execute_task(
        &self,
        task: Task,
        wait_for_completion: bool,
    ) -> Result<TaskReport, Error> {
        let id = self.submit(task).await?;
        if wait_for_completion {
            self.wait(id).await
        } else {
            self.task(id).await
        }
    }

    /// The workers connected to the admin, with their current load.
    pub async fn connected_workers(&self) -> Result<Vec<WorkerInfo>, Error> {
        self.call(Command::Workers).await
    }

    /// The admin and the peers connected to it, with the workers each hosts.
    pub async fn peers(&self) -> Result<Vec<crate::protocol::PeerInfo>, Error> {
        self.call(Command::Peers).await
    }

    /// Dials another node.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), Error> {
        self.call(|r| Command::Dial(addr, r)).await
    }

    /// The node's state as of now.
    pub fn state(&self) -> NodeState {
        self.state.borrow().clone()
    }

    /// A receiver that sees every change of the node's state (new listen
    /// addresses, admin changes, connections).
    pub fn watch_state(&self) -> watch::Receiver<NodeState> {
        self.state.clone()
    }

    /// Waits until `pred` holds for the node's state, or `timeout` passes.
    pub async fn wait_for_state(
        &self,
        timeout: Duration,
        pred: impl Fn(&NodeState) -> bool,
    ) -> Result<NodeState, Error> {
        let mut rx = self.state.clone();
        let fut = async {
            let s = rx.wait_for(|s| pred(s)).await.map_err(|_| Error::NodeGone)?;
            Ok::<_, Error>(s.clone())
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| Error::Timeout(timeout))?
    }

    /// Waits until some admin is known, and returns it.
    pub async fn wait_for_admin(&self, timeout: Duration) -> Result<PeerId, Error> {
        let s = self.wait_for_state(timeout, |s| s.admin.is_some()).await?;
        s.admin.ok_or(Error::NoAdmin(timeout))
    }

    /// Waits until the admin lists at least `n` workers.
    pub async fn wait_for_workers(&self, n: usize, timeout: Duration) -> Result<Vec<WorkerInfo>, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(ws) = self.connected_workers().await {
                if ws.len() >= n {
                    return Ok(ws);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(timeout));
            }
            // Registration is an event at the admin that this handle cannot
            // subscribe to across the network; ask again shortly.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A running node. Dropping it stops the node at once; [`Node::shutdown`]
/// stops it gracefully.
pub struct Node {
    handle: NodeHandle,
    task: Option<JoinHandle<()>>,
    metrics_addr: Option<std::net::SocketAddr>,
    http_addr: Option<std::net::SocketAddr>,
}

impl Node {
    /// Starts a node hosting `workers` (possibly none: a client or a pure
    /// admin). Returns once it listens on every address in `cfg.listen`.
    pub async fn start(mut cfg: NodeConfig, workers: Vec<Arc<dyn Worker>>) -> Result<Node, Error> {
        // The store first: it is locked, so a second node refused here
        // leaves nothing behind in a directory another one uses.
        let disk = match (&cfg.data_dir, cfg.admin.eligible) {
            (Some(dir), true) => {
                let known = dir.join("node.key").exists();
                let mut disk = crate::disk::LedgerDisk::open(dir)?;
                let saved = disk.load()?;
                if known && saved.is_none() {
                    tracing::warn!(
                        dir = %dir.display(),
                        "the data directory holds this node's identity but no ledger: it starts as a new replica"
                    );
                }
                Some((disk, crate::net::reopen(&cfg, saved)?))
            }
            _ if cfg.recover => {
                return Err(Error::Config(
                    "recovering needs the data directory of an admin-eligible node".into(),
                ));
            }
            _ => None,
        };
        let key = match (&cfg.keypair, &cfg.data_dir) {
            (Some(key), _) => key.clone(),
            (None, Some(dir)) => crate::disk::node_key(dir)?,
            (None, None) => identity::Keypair::generate_ed25519(),
        };
        let peer_id = key.public().to_peer_id();
        let mut disk = disk;
        if cfg.admin.eligible && !cfg.allow.allows(crate::access::Right::Admin, &peer_id) {
            if cfg.recover {
                return Err(Error::Config(format!(
                    "cannot recover: this node ({peer_id}) is not in its own --allow-admins list"
                )));
            }
            tracing::info!(
                peer = %peer_id,
                "not in this node's --allow-admins list: it keeps no replica of the ledger and never becomes admin"
            );
            cfg.admin.eligible = false;
            disk = None;
        }
        let mut runtime = WorkerRuntime::with_config(workers, cfg.runtime)?;
        runtime.set_lease(cfg.scheduler.lease);
        let mut metrics = None;
        let mut registry = prometheus_client::registry::Registry::default();
        let page = match cfg.http {
            Some(addr) => Some(crate::web::bind(addr, "the mesh page").await?),
            None => None,
        };
        if let Some(addr) = cfg.metrics {
            let (listener, bound) = crate::web::bind(addr, "metrics").await?;
            metrics = Some((
                listener,
                bound,
                Arc::new(crate::metrics::Metrics::new(&mut registry)),
            ));
        }
        let bandwidth = metrics.is_some().then_some(&mut registry);
        let (mut swarm, codec) = build_swarm(&cfg, key, bandwidth)?;
        for addr in &cfg.listen {
            check_port_free(addr)?;
            swarm
                .listen_on(addr.clone())
                .map_err(|e| Error::Transport(format!("cannot listen on {addr}: {e}")))?;
        }
        let mut joining = HashMap::new();
        for addr in &cfg.join {
            let opts = DialOpts::from(addr.clone());
            let id = opts.connection_id();
            swarm
                .dial(opts)
                .map_err(|e| Error::Transport(format!("cannot dial {addr}: {e}")))?;
            joining.insert(id, addr.clone());
        }
        let listens = cfg.listen.len();
        let (tx, rx) = mpsc::channel(1024);
        let (state_tx, state_rx) = watch::channel(NodeState::default());
        let span = tracing::info_span!("node", peer = %short(&peer_id));
        let recorder = metrics.as_ref().map(|(_, _, m)| m.clone());
        let task = tokio::spawn(
            EventLoop::new((swarm, codec), cfg, runtime, rx, state_tx, joining, disk)
                .with_metrics(recorder)
                .run()
                .instrument(span.clone()),
        );
        let mut metrics_addr = None;
        if let Some((listener, bound, m)) = metrics {
            let serve = crate::metrics::serve(listener, Arc::new(registry), m, tx.clone());
            tokio::spawn(serve.instrument(span.clone()));
            tracing::info!(addr = %bound, "serving metrics at /metrics");
            metrics_addr = Some(bound);
        }
        let handle = NodeHandle {
            commands: tx,
            state: state_rx,
            peer_id,
        };
        let mut http_addr = None;
        if let Some((listener, bound)) = page {
            tokio::spawn(crate::web::serve(listener, handle.clone()).instrument(span));
            tracing::info!(addr = %bound, "serving the mesh page");
            http_addr = Some(bound);
        }
        handle
            .wait_for_state(Duration::from_secs(10), |s| s.listen_addrs.len() >= listens)
            .await?;
        Ok(Node {
            handle,
            task: Some(task),
            metrics_addr,
            http_addr,
        })
    }

    /// A handle to this node.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.handle.peer_id
    }

    /// Where this node serves its metrics (`http://ADDR/metrics`), when
    /// [`NodeConfig::metrics`] asked for them.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_addr
    }

    /// Where this node serves its mesh page (`http://ADDR/`), when
    /// [`NodeConfig::http`] asked for it.
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http_addr
    }

    /// The addresses this node listens on, with `/p2p/<peer id>`.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.handle.state().listen_addrs
    }

    /// Stops gracefully: resigns if admin, stops bidding, lets running tasks
    /// finish and report for up to `grace`, then closes.
    pub async fn shutdown_with_grace(mut self, grace: Duration) {
        let (tx, rx) = oneshot::channel();
        if self
            .handle
            .commands
            .send(Command::Shutdown(grace, tx))
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops gracefully with a two-second grace period.
    pub async fn shutdown(self) {
        self.shutdown_with_grace(Duration::from_secs(2)).await
    }
}

impl std::ops::Deref for Node {
    type Target = NodeHandle;
    fn deref(&self) -> &NodeHandle {
        &self.handle
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The last characters of a peer id: enough to tell nodes apart in logs.
pub(crate) fn short(p: &PeerId) -> String {
    let s = p.to_base58();
    s[s.len().saturating_sub(6)..].to_string()
}
