//! Swarm events: connections, discovery (mDNS, identify) and gossip.
//! Each event becomes a state-machine input or a small bookkeeping step.

use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::SwarmEvent;
use libp2p::{gossipsub, PeerId};
use tokio::time::Instant;
use tracing::{debug, info};

use super::{BehaviourEvent, EventLoop, PeerMeta, Pending, JOIN_RETRY, MAX_JOIN_RETRY};
use crate::protocol::{self, Gossip, Request};

impl EventLoop {
    pub(super) fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
        if let Some(m) = &self.metrics {
            use libp2p::metrics::Recorder;
            m.libp2p.record(&event);
            match &event {
                SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => m.libp2p.record(e),
                SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => m.libp2p.record(e),
                SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => m.libp2p.record(e),
                _ => {}
            }
        }
        if let SwarmEvent::ConnectionClosed { connection_id, .. } = &event {
            self.pongs.remove(connection_id);
        }
        match event {
            SwarmEvent::Behaviour(ev) => self.on_behaviour(ev),
            SwarmEvent::NewListenAddr { address, .. } => {
                let address = address.with_p2p(self.me).unwrap_or_else(|a| a);
                info!(%address, "listening");
                self.listening.push(address);
                self.ledger_start();
                self.publish_state();
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                let address = address.with_p2p(self.me).unwrap_or_else(|a| a);
                self.listening.retain(|a| *a != address);
                self.publish_state();
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                connection_id,
                endpoint,
                ..
            } => {
                let now = std::time::Instant::now();
                if let Some((addr, _)) = self.joining.remove(&connection_id) {
                    self.failed_joins.retain(|(a, _)| *a != addr);
                    self.book.seed(peer_id, addr, now);
                } else if endpoint.is_dialer() {
                    self.book
                        .learn(peer_id, [endpoint.get_remote_address().clone()], now);
                }
                self.book.connected(peer_id, now);
                self.pongs.insert(connection_id, Instant::now());
                debug!(peer = %peer_id, "connected");
                if num_established.get() == 1 {
                    self.presence.insert(
                        peer_id,
                        super::guard::Presence {
                            since: now,
                            last_asked: None,
                        },
                    );
                    self.evict_idle();
                    self.publish_state();
                    if self.admin.is_some_and(|(a, _)| a == peer_id) {
                        self.register();
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                debug!(peer = %peer_id, ?cause, "disconnected");
                self.links.forget(&peer_id);
                self.links_lost(peer_id, None);
                if self.worth_redialing(&peer_id) {
                    self.book.disconnected(peer_id, std::time::Instant::now());
                } else {
                    self.book.forget(peer_id);
                }
                self.presence.remove(&peer_id);
                self.peer_meta.remove(&peer_id);
                self.peer_left(peer_id);
                self.publish_state();
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id,
                error,
                connection_id,
            } => {
                debug!(?peer_id, %error, "dial failed");
                if let Some(peer) = peer_id {
                    self.book.dial_failed(peer, std::time::Instant::now());
                }
                if let Some((addr, failures)) = self.joining.remove(&connection_id) {
                    let error = explain_dial_error(&error, self.cfg.psk.is_some());
                    // Keep trying: the peer may simply not be up yet.
                    let backoff = JOIN_RETRY
                        .saturating_mul(1 << failures.min(5))
                        .min(MAX_JOIN_RETRY);
                    info!(%addr, %error, retry_in = ?backoff, "cannot join");
                    self.failed_joins.retain(|(a, _)| *a != addr);
                    self.failed_joins.push((addr.clone(), error.to_string()));
                    self.rejoin.push((Instant::now() + backoff, addr, failures + 1));
                    self.publish_state();
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                // Logged at most once a second: a flood of strangers must
                // not flood the log too.
                let now = Instant::now();
                if self
                    .incoming_logged
                    .is_none_or(|t| now >= t + std::time::Duration::from_secs(1))
                {
                    self.incoming_logged = Some(now);
                    let why = match &error {
                        libp2p::swarm::ListenError::Denied { cause } => {
                            format!("refused by this node's limits or cut-off list: {cause}")
                        }
                        other if handshake_failed(&other.to_string()) => format!(
                            "its handshake failed ({other}): {}",
                            key_hint(self.cfg.psk.is_some())
                        ),
                        other => other.to_string(),
                    };
                    info!(from = %send_back_addr, "incoming connection refused: {why}");
                }
            }
            _ => {}
        }
    }

    /// Closes connections that answered no ping for
    /// [`super::behaviour::SILENT_CONNECTION`], so their peers count as
    /// gone and the address book dials them again.
    pub(super) fn close_silent(&mut self, now: Instant) {
        let limit = super::behaviour::SILENT_CONNECTION;
        let silent: Vec<_> = self
            .pongs
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) >= limit)
            .map(|(c, _)| *c)
            .collect();
        for c in silent {
            self.pongs.remove(&c);
            debug!(connection = %c, "no ping answered for {limit:?}; closing the connection");
            self.swarm.close_connection(c);
        }
    }

    fn peer_left(&mut self, peer: PeerId) {
        self.ledger_peer_left(peer);
    }

    fn on_behaviour(&mut self, ev: BehaviourEvent) {
        match ev {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                let verdict = self.on_gossip(message);
                if matches!(verdict, gossipsub::MessageAcceptance::Reject) {
                    self.strike(propagation_source, super::guard::strike::GOSSIP, "invalid gossip");
                }
                // Only accepted messages are relayed; rejected ones cost
                // their sender score.
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, verdict);
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { topic, .. })
                if topic == self.admin_topic.hash() && self.sched.is_some() =>
            {
                // A newcomer learns who the admin is without waiting.
                self.publish_notice();
            }
            BehaviourEvent::Rr(ev) => self.on_rr(ev),
            BehaviourEvent::Mdns(libp2p::mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    if peer != self.me && !self.swarm.is_connected(&peer) {
                        debug!(%peer, %addr, "mdns found a peer");
                        self.swarm.add_peer_address(peer, addr.clone());
                        self.book.learn(peer, [addr.clone()], std::time::Instant::now());
                        let _ = self.swarm.dial(addr.with_p2p(peer).unwrap_or_else(|a| a));
                    }
                }
            }
            BehaviourEvent::Identify(libp2p::identify::Event::Received { peer_id, info, .. }) => {
                for addr in info.listen_addrs.iter().take(16) {
                    self.swarm.add_peer_address(peer_id, addr.clone());
                }
                let listen = info.listen_addrs.iter().take(16).cloned();
                self.book.learn(peer_id, listen, std::time::Instant::now());
                let addrs = info.listen_addrs.into_iter().take(16).collect();
                let agent = info.agent_version.chars().take(64).collect();
                self.peer_meta.insert(peer_id, PeerMeta { addrs, agent });
            }
            BehaviourEvent::Ping(libp2p::ping::Event {
                connection,
                result: Ok(_),
                ..
            }) => {
                if let Some(t) = self.pongs.get_mut(&connection) {
                    *t = Instant::now();
                }
            }
            // A peer without ping (another implementation) is not judged
            // by it.
            BehaviourEvent::Ping(libp2p::ping::Event {
                connection,
                result: Err(libp2p::ping::Failure::Unsupported),
                ..
            }) => {
                self.pongs.remove(&connection);
            }
            // A failed ping alone closes nothing: a lossy link delays
            // pings; silence for SILENT_CONNECTION does (`close_silent`).
            BehaviourEvent::Ping(libp2p::ping::Event {
                peer, result: Err(e), ..
            }) => debug!(%peer, error = %e, "ping failed"),
            _ => {}
        }
    }

    /// Checks and handles one gossip message; the verdict goes back to
    /// gossipsub: `Accept` relays it, `Ignore` drops it quietly (stale, or
    /// not for this node to judge), `Reject` drops it and penalises the
    /// sender (malformed, or speaking for an admin it is not).
    fn on_gossip(&mut self, message: gossipsub::Message) -> gossipsub::MessageAcceptance {
        use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
        // Signed gossip (strict validation) always carries its source.
        let Some(source) = message.source else {
            return Reject;
        };
        let on_admin_topic = message.topic == self.admin_topic.hash();
        let msg: Gossip = match protocol::decode(&message.data) {
            Ok(m) => m,
            Err(e) => {
                debug!(peer = %source, error = %e, "malformed gossip rejected");
                return Reject;
            }
        };
        match msg {
            Gossip::Admin(_) | Gossip::NoQuorum { .. } if !on_admin_topic => Reject,
            Gossip::Announce { .. } if on_admin_topic => Reject,
            Gossip::Admin(notice) => {
                let mut verdict = self.vouch(source, notice.cluster, notice.term);
                if matches!(verdict, Accept) && source != self.me {
                    // Relayed only when followed.
                    verdict = self.on_notice(source, notice);
                } else {
                    debug!(peer = %source, term = notice.term, ?verdict, "admin notice not followed");
                }
                verdict
            }
            Gossip::NoQuorum {
                cluster,
                reached,
                voters,
            } => {
                // Only a voter of the ledger may say it has no quorum.
                if !self.cfg.allow.allows(crate::access::Right::Admin, &source) {
                    return Reject;
                }
                if !self.speaks_as_voter(source, cluster) {
                    return Ignore;
                }
                self.on_no_quorum(cluster, reached, voters);
                Accept
            }
            Gossip::Announce { term, tasks } => {
                if self.admin != Some((source, term)) || source == self.me {
                    debug!(peer = %source, term, "announcement from a non-admin ignored");
                    return Ignore;
                }
                let bids = self.workers.bids_for(&tasks);
                debug!(count = tasks.len(), bids = bids.len(), "announcement");
                if !bids.is_empty() {
                    self.send(source, Request::Bids { term, bids }, Pending::Bids);
                }
                Accept
            }
        }
    }

    /// Dials again the join addresses and the lost peers whose retry time
    /// has come.
    pub(super) fn redial_due(&mut self, now: Instant) {
        for (peer, addrs) in self.book.due(now.into_std()) {
            if self.swarm.is_connected(&peer) {
                self.book.connected(peer, now.into_std());
                continue;
            }
            debug!(%peer, "dialing a lost peer again");
            let opts = DialOpts::peer_id(peer).addresses(addrs).build();
            if self.swarm.dial(opts).is_err() {
                self.book.dial_failed(peer, now.into_std());
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.rejoin)
            .into_iter()
            .partition(|r| r.0 <= now);
        self.rejoin = later;
        for (_, addr, failures) in due {
            let opts = DialOpts::from(addr.clone());
            let id = opts.connection_id();
            if self.swarm.dial(opts).is_ok() {
                self.joining.insert(id, (addr, failures));
            }
        }
    }
}

/// True when a connection error says the handshake failed, which is what a
/// peer without the same mesh key sees (its bytes are noise to the other).
fn handshake_failed(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    [
        "handshake",
        "multistream",
        "negotiat",
        "noise",
        "decrypt",
        "protocol",
    ]
    .iter()
    .any(|w| e.contains(w))
}

fn key_hint(have_key: bool) -> &'static str {
    if have_key {
        "the other side has a different mesh key (--psk) or none, or was too busy to finish it"
    } else {
        "the other side may use a mesh key (--psk) that this node lacks, not speak taskmesh, or be too busy to finish it"
    }
}

/// Why a join address could not be dialled, in the operator's words.
pub(super) fn explain_dial_error(error: &libp2p::swarm::DialError, have_key: bool) -> String {
    use libp2p::swarm::DialError;
    match error {
        DialError::WrongPeerId { obtained, .. } => format!(
            "the peer at this address is {obtained}, not the one its /p2p/ part names; \
             check the join address (the peer may have restarted with a new identity)"
        ),
        DialError::Denied { cause } => format!("refused by this node's connection limits: {cause}"),
        other => {
            let text = other.to_string();
            let lower = text.to_ascii_lowercase();
            if ["connection refused", "os error 111", "no route", "unreachable"]
                .iter()
                .any(|w| lower.contains(w))
            {
                format!("nothing answers at this address (is the node up, and the port right?) ({text})")
            } else if lower.contains("timeout has been reached") {
                format!(
                    "the connection's handshake did not finish within {:?}: {} ({text})",
                    super::behaviour::HANDSHAKE_TIMEOUT,
                    key_hint(have_key)
                )
            } else if handshake_failed(&text) {
                format!(
                    "the connection failed in its handshake: {} ({text})",
                    key_hint(have_key)
                )
            } else {
                text
            }
        }
    }
}
