//! Swarm events: connections, discovery (mDNS, identify) and gossip.
//! Each event becomes a state-machine input or a small bookkeeping step.

use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::SwarmEvent;
use libp2p::{gossipsub, PeerId};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{BehaviourEvent, EventLoop, PeerMeta, Pending, JOIN_RETRY, MAX_JOIN_RETRY};
use crate::protocol::{self, Gossip, Request};

impl EventLoop {
    pub(super) fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
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
                self.book.disconnected(peer_id, std::time::Instant::now());
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
            BehaviourEvent::Gossipsub(gossipsub::Event::Message { message, .. }) => self.on_gossip(message),
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

    fn on_gossip(&mut self, message: gossipsub::Message) {
        // Signed gossip (strict validation) always carries its source.
        let Some(source) = message.source else { return };
        let msg: Gossip = match protocol::decode(&message.data) {
            Ok(m) => m,
            Err(e) => {
                warn!(peer = %source, error = %e, "malformed gossip dropped");
                return;
            }
        };
        match msg {
            Gossip::Admin(notice) => self.on_notice(source, notice),
            Gossip::NoQuorum {
                cluster,
                reached,
                voters,
            } => self.on_no_quorum(cluster, reached, voters),
            Gossip::Announce { term, tasks } => {
                if self.admin != Some((source, term)) || source == self.me {
                    debug!(peer = %source, term, "announcement from a non-admin ignored");
                    return;
                }
                let bids = self.workers.bids_for(&tasks);
                debug!(count = tasks.len(), bids = bids.len(), "announcement");
                if !bids.is_empty() {
                    self.send(source, Request::Bids { term, bids }, Pending::Bids);
                }
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
