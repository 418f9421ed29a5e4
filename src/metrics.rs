//! A node's metrics in the Prometheus/OpenMetrics text format, served at
//! `/metrics` when [`crate::NodeConfig::metrics`] names an address (the CLI's
//! `--metrics ADDR`). Built on prometheus-client, with libp2p's own metrics
//! (libp2p-metrics) for the swarm under `libp2p_`.
//!
//! Counters and histograms are counted as things happen: the admin counts
//! its scheduler's decisions ([`crate::scheduler::Observation`]), every node
//! its auctions' announcements and its swarm's events. Gauges are read when
//! the metrics are scraped: the admin's [`crate::scheduler::Census`], the
//! ledger's consensus state, this node's worker slots and connections. A
//! node that is not the admin reports no task gauges (scrape every node, or
//! the admin; the README's "Observing a mesh" has a scrape config).
//!
//! Names follow Prometheus conventions: `taskmesh_` prefix, base units
//! (seconds), `_total` on counters (added by the encoder).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::mpsc;

use crate::net::Command;
use crate::scheduler::{BidPath, Census, Observation};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    role: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AwardLabels {
    role: String,
    /// `announced`, `standing` or `late`.
    path: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    role: String,
    /// `completed`, `failed`, `timed_out`, `lost`, `aborted`, `undelivered`.
    how: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SlotLabels {
    /// `used` or `free`.
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

/// What the event loop reports when the metrics are scraped.
#[derive(Clone, Debug, Default)]
pub(crate) struct Reading {
    /// The admin's census; `None` on a node that is not the admin.
    pub(crate) census: Option<Census>,
    /// The admin this node follows, and its term.
    pub(crate) admin: Option<(libp2p::PeerId, u64)>,
    /// True on the admin.
    pub(crate) is_admin: bool,
    /// This replica's Raft term and commit index (0 without a replica).
    pub(crate) raft_term: u64,
    pub(crate) commit_index: u64,
    /// Voters of the ledger as this node's replica knows them.
    pub(crate) voters: u64,
    /// This node's workers: slots running a task, and all slots.
    pub(crate) local_used: u64,
    pub(crate) local_slots: u64,
    /// Peers with an open connection.
    pub(crate) connected: u64,
}

/// Every metric a node exports, registered in one registry.
pub(crate) struct Metrics {
    /// libp2p's own swarm and protocol metrics (`libp2p_…`).
    pub(crate) libp2p: libp2p::metrics::Metrics,
    /// Held while a scrape sets the gauges and encodes them.
    scraping: std::sync::Mutex<()>,
    submitted: Family<RoleLabels, Counter>,
    finished: Family<StatusLabels, Counter>,
    awards: Family<AwardLabels, Counter>,
    auction_rounds: Counter,
    attempts: Family<AttemptLabels, Counter>,
    attempts_lost: Counter,
    retries: Counter,
    ready_to_award: Histogram,
    award_to_end: Histogram,
    tasks: Family<StatusLabels, Gauge>,
    ready: Family<RoleLabels, Gauge>,
    workers: Gauge,
    mesh_slots: Family<SlotLabels, Gauge>,
    local_slots: Family<SlotLabels, Gauge>,
    connected: Gauge,
    is_admin: Gauge,
    admin: Family<PeerLabels, Gauge>,
    admin_term: Gauge,
    raft_term: Gauge,
    commit_index: Gauge,
    voters: Gauge,
}

/// Buckets for latencies in seconds: 0.25 ms to about 8 s, doubling.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_25, 2.0, 16)
}

impl Metrics {
    /// Registers every metric in `registry` (which the swarm's bandwidth
    /// counters may share).
    pub(crate) fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            libp2p: libp2p::metrics::Metrics::new(registry),
            scraping: std::sync::Mutex::new(()),
            submitted: Family::default(),
            finished: Family::default(),
            awards: Family::default(),
            auction_rounds: Counter::default(),
            attempts: Family::default(),
            attempts_lost: Counter::default(),
            retries: Counter::default(),
            ready_to_award: Histogram::new(latency_buckets()),
            award_to_end: Histogram::new(latency_buckets()),
            tasks: Family::default(),
            ready: Family::default(),
            workers: Gauge::default(),
            mesh_slots: Family::default(),
            local_slots: Family::default(),
            connected: Gauge::default(),
            is_admin: Gauge::default(),
            admin: Family::default(),
            admin_term: Gauge::default(),
            raft_term: Gauge::default(),
            commit_index: Gauge::default(),
            voters: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("taskmesh");
        r.register(
            "tasks_submitted",
            "Tasks the admin accepted, by role",
            m.submitted.clone(),
        );
        r.register(
            "tasks_finished",
            "Tasks that finished, by role and final status (completed, failed, cancelled, skipped)",
            m.finished.clone(),
        );
        r.register(
            "awards",
            "Awards, by role and how the winning bid came (announced, standing, late)",
            m.awards.clone(),
        );
        r.register(
            "auction_rounds",
            "Auction rounds this admin announced",
            m.auction_rounds.clone(),
        );
        r.register(
            "attempts_ended",
            "Attempts that ended, by role and how (completed, failed, timed_out, lost, aborted, undelivered)",
            m.attempts.clone(),
        );
        r.register(
            "attempts_lost",
            "Attempts lost with their worker after they started (its node left or its lease ran out); awards lost still waiting in a queue count as undelivered",
            m.attempts_lost.clone(),
        );
        r.register(
            "retries",
            "Retryable failures scheduled for a retry",
            m.retries.clone(),
        );
        r.register_with_unit(
            "ready_to_award",
            "Time from a task becoming ready (or its retry delay ending) to its award",
            Unit::Seconds,
            m.ready_to_award.clone(),
        );
        r.register_with_unit(
            "award_to_end",
            "Time from an award to the end of its attempt (its result, failure or loss)",
            Unit::Seconds,
            m.award_to_end.clone(),
        );
        r.register(
            "tasks",
            "Tasks the admin holds, by role and status (finished ones until evicted)",
            m.tasks.clone(),
        );
        r.register(
            "ready_tasks",
            "Tasks waiting for an award, by role (the ready queue)",
            m.ready.clone(),
        );
        r.register("workers", "Workers registered with the admin", m.workers.clone());
        r.register(
            "worker_slots",
            "Slots of the workers registered with the admin, used or free",
            m.mesh_slots.clone(),
        );
        r.register(
            "local_worker_slots",
            "Slots of this node's own workers, used or free",
            m.local_slots.clone(),
        );
        r.register(
            "connected_peers",
            "Peers with an open connection",
            m.connected.clone(),
        );
        r.register("is_admin", "1 on the admin, 0 elsewhere", m.is_admin.clone());
        r.register(
            "admin",
            "The admin this node follows (1, labelled by its peer id)",
            m.admin.clone(),
        );
        r.register(
            "admin_term",
            "The term of the admin this node follows",
            m.admin_term.clone(),
        );
        r.register(
            "raft_term",
            "This replica's Raft term (0 without a replica)",
            m.raft_term.clone(),
        );
        r.register(
            "raft_commit_index",
            "This replica's Raft commit index (0 without a replica)",
            m.commit_index.clone(),
        );
        r.register(
            "raft_voters",
            "Voters of the ledger as this replica knows them",
            m.voters.clone(),
        );
        m
    }

    /// Counts one of the admin's decisions.
    pub(crate) fn record(&self, o: &Observation) {
        match o {
            Observation::Submitted { role, count } => {
                let labels = RoleLabels { role: role.clone() };
                self.submitted.get_or_create(&labels).inc_by(*count);
            }
            Observation::Awarded {
                role, path, waited, ..
            } => {
                let path = match path {
                    BidPath::Announced => "announced",
                    BidPath::Standing => "standing",
                    BidPath::Late { .. } => "late",
                };
                let labels = AwardLabels {
                    role: role.clone(),
                    path,
                };
                self.awards.get_or_create(&labels).inc();
                self.ready_to_award.observe(waited.as_secs_f64());
            }
            Observation::AttemptEnded { role, how, ran } => {
                let labels = AttemptLabels {
                    role: role.clone(),
                    how,
                };
                self.attempts.get_or_create(&labels).inc();
                if *how == "lost" {
                    self.attempts_lost.inc();
                }
                self.award_to_end.observe(ran.as_secs_f64());
            }
            Observation::Retried { .. } => {
                self.retries.inc();
            }
        }
    }

    /// Counts `rounds` auction rounds announced.
    pub(crate) fn announced(&self, rounds: u64) {
        self.auction_rounds.inc_by(rounds);
    }

    /// Sets the gauges from a reading (labels no longer seen are dropped).
    fn set(&self, r: &Reading) {
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.tasks.clear();
        self.ready.clear();
        self.mesh_slots.clear();
        if let Some(c) = &r.census {
            for ((role, status), n) in &c.tasks {
                let labels = StatusLabels {
                    role: role.clone(),
                    status: status.clone(),
                };
                self.tasks.get_or_create(&labels).set(g(*n));
            }
            for (role, n) in &c.ready {
                let labels = RoleLabels { role: role.clone() };
                self.ready.get_or_create(&labels).set(g(*n));
            }
            // Counted by the ledger (tasks a dependency ended included):
            // the counter follows it, and only ever goes up.
            for ((role, status), n) in &c.finished {
                let labels = StatusLabels {
                    role: role.clone(),
                    status: status.clone(),
                };
                let counter = self.finished.get_or_create(&labels);
                let seen = counter.get();
                if *n > seen {
                    counter.inc_by(n - seen);
                }
            }
            self.workers.set(g(c.workers));
            self.mesh_slots
                .get_or_create(&SlotLabels { state: "used" })
                .set(g(c.slots_used));
            self.mesh_slots
                .get_or_create(&SlotLabels { state: "free" })
                .set(g(c.slots_free));
        } else {
            self.workers.set(0);
        }
        let free = r.local_slots.saturating_sub(r.local_used);
        self.local_slots
            .get_or_create(&SlotLabels { state: "used" })
            .set(g(r.local_used));
        self.local_slots
            .get_or_create(&SlotLabels { state: "free" })
            .set(g(free));
        self.connected.set(g(r.connected));
        self.is_admin.set(i64::from(r.is_admin));
        self.admin.clear();
        if let Some((peer, term)) = r.admin {
            self.admin
                .get_or_create(&PeerLabels {
                    peer: peer.to_string(),
                })
                .set(1);
            self.admin_term.set(g(term));
        } else {
            self.admin_term.set(0);
        }
        self.raft_term.set(g(r.raft_term));
        self.commit_index.set(g(r.commit_index));
        self.voters.set(g(r.voters));
    }
}

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `GET /metrics` on `listener` until the node's loop is gone: each
/// scrape asks the loop for a [`Reading`], sets the gauges and encodes the
/// whole registry.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    commands: mpsc::Sender<Command>,
) {
    use axum::http::{header, StatusCode};
    use axum::routing::get;
    let scrape = move || {
        let (registry, metrics, commands) = (registry.clone(), metrics.clone(), commands.clone());
        async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let reading = match commands.send(Command::Read(tx)).await {
                Ok(()) => rx.await.ok(),
                Err(_) => None,
            };
            let Some(reading) = reading else {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::CONTENT_TYPE, "text/plain")],
                    "the node is stopping\n".to_string(),
                );
            };
            // Setting the gauges clears and refills them: two scrapes at
            // once take turns, or one would encode the other's half-set
            // gauges.
            let mut text = String::new();
            let encoded = {
                let _turn = metrics.scraping.lock().unwrap_or_else(|e| e.into_inner());
                metrics.set(&reading);
                prometheus_client::encoding::text::encode(&mut text, &registry)
            };
            match encoded {
                Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text),
                Err(e) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(header::CONTENT_TYPE, "text/plain")],
                    format!("cannot encode the metrics: {e}\n"),
                ),
            }
        }
    };
    let app = axum::Router::new()
        .route("/metrics", get(scrape))
        .layer(axum::middleware::from_fn(crate::web::known_host));
    crate::web::serve_bounded(listener, app, "the metrics").await;
}
