//! The composed libp2p behaviour and the swarm built around it: TCP, then
//! the mesh key when there is one (pnet), Noise and Yamux; connection limits
//! and a block list for peers cut off; gossipsub (signed, strict, validated
//! by the application, scored, only the mesh's topics); request-response
//! with the size-limited bincode codec; identify, ping, switchable mDNS.

use std::collections::HashSet;
use std::time::Duration;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, Transport as _};
use libp2p::core::upgrade::Version;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    allow_block_list, connection_limits, gossipsub, identify, identity, mdns, noise, ping, pnet,
    request_response, tcp, yamux, PeerId, StreamProtocol, Swarm,
};

use crate::node::NodeConfig;
use crate::protocol::{Codec, InboundBudget, PROTOCOL_NAME};
use crate::Error;

/// Gossipsub as the mesh runs it: only the mesh's own topics are tracked.
pub(crate) type Gossipsub =
    gossipsub::Behaviour<gossipsub::IdentityTransform, gossipsub::WhitelistSubscriptionFilter>;

/// Every protocol a taskmesh node speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub(crate) gossipsub: Gossipsub,
    pub(crate) rr: request_response::Behaviour<Codec>,
    pub(crate) stream: libp2p_stream::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
}

/// Builds the swarm for `cfg` with identity `key`.
/// How often each connection is pinged.
pub(crate) const PING_INTERVAL: Duration = Duration::from_secs(2);
/// How long a ping may go unanswered before it fails.
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection with no ping answered for this long is closed: a path that
/// stopped carrying packets (a firewall, a cut cable, a paused peer) leaves
/// TCP connected for minutes, and a ping to a paused peer fails only after
/// its stream negotiation times out (about 10 s). Long enough that a lossy
/// link whose TCP retransmissions delay a few pings keeps its connection.
pub(crate) const SILENT_CONNECTION: Duration = Duration::from_secs(6);

/// The node's swarm, and the codec its request-response streams use (its
/// links read with the same limits and the same inbound budget).
/// With `bandwidth`, the bytes of every connection are counted into that
/// registry (libp2p-metrics, by protocol stack and direction).
pub(crate) fn build_swarm(
    cfg: &NodeConfig,
    key: identity::Keypair,
    bandwidth: Option<&mut prometheus_client::registry::Registry>,
) -> Result<(Swarm<Behaviour>, Codec), Error> {
    let max_frame = cfg.max_frame;
    let mdns_on = cfg.mdns;
    let request_timeout = cfg.request_timeout;
    let limits = cfg.limits.clone();
    let psk = cfg.psk;
    let topics: HashSet<gossipsub::TopicHash> =
        [mesh_topic(&cfg.mesh, "admin"), mesh_topic(&cfg.mesh, "tasks")]
            .into_iter()
            .map(|t| t.hash())
            .collect();
    let codec = Codec {
        max_frame,
        read_timeout: limits.read_timeout,
        stall_timeout: limits.stall_timeout,
        budget: InboundBudget::new(limits.inbound_budget),
    };
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|key| {
            let transport =
                transport(key, psk).map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(match bandwidth {
                Some(registry) => libp2p::metrics::BandwidthTransport::new(transport, registry)
                    .map(|(peer, conn), _| (peer, StreamMuxerBox::new(conn)))
                    .boxed(),
                None => transport,
            })
        })
        .map_err(|e| Error::Transport(format!("transport: {e}")))?
        .with_behaviour(|key| {
            let gossip_cfg = gossipsub::ConfigBuilder::default()
                .validation_mode(gossipsub::ValidationMode::Strict)
                // Every message is checked by the loop and reported back
                // (accept, reject, ignore) before it is relayed.
                .validate_messages()
                .heartbeat_interval(Duration::from_millis(1000))
                .max_transmit_size(limits.max_gossip)
                .build()
                .map_err(|e| format!("gossipsub config: {e}"))?;
            let filter = gossipsub::WhitelistSubscriptionFilter(topics.clone());
            let mut gossipsub = Gossipsub::new_with_subscription_filter(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_cfg,
                filter,
            )
            .map_err(|e| format!("gossipsub: {e}"))?;
            let (params, thresholds) = scoring(&topics);
            gossipsub
                .with_peer_score(params, thresholds)
                .map_err(|e| format!("gossipsub scoring: {e}"))?;
            let codec = codec.clone();
            let rr = request_response::Behaviour::with_codec(
                codec,
                [(
                    StreamProtocol::new(PROTOCOL_NAME),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default()
                    .with_request_timeout(request_timeout)
                    .with_max_concurrent_streams(limits.max_streams_per_connection),
            );
            let identify = identify::Behaviour::new(
                identify::Config::new("/taskmesh/id/1".into(), key.public())
                    .with_agent_version(format!("taskmesh/{}", env!("CARGO_PKG_VERSION"))),
            );
            let mdns = if mdns_on {
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    key.public().to_peer_id(),
                )?)
            } else {
                None
            };
            let conn_limits = connection_limits::ConnectionLimits::default()
                .with_max_established(Some(limits.max_connections))
                .with_max_established_per_peer(Some(limits.max_connections_per_peer))
                .with_max_pending_incoming(Some(limits.max_pending_connections))
                // Dials this node makes (mDNS can name any number of peers).
                .with_max_pending_outgoing(Some(limits.max_pending_connections.saturating_mul(2)));
            Ok(Behaviour {
                limits: connection_limits::Behaviour::new(conn_limits),
                blocked: Default::default(),
                gossipsub,
                rr,
                stream: libp2p_stream::Behaviour::new(),
                identify,
                // A connection whose peer has not answered a ping for
                // PING_TIMEOUT is closed (see the event loop).
                ping: ping::Behaviour::new(
                    ping::Config::new()
                        .with_interval(PING_INTERVAL)
                        .with_timeout(PING_TIMEOUT),
                ),
                mdns: mdns.into(),
            })
        })
        .map_err(|e| Error::Transport(format!("behaviour: {e}")))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    Ok((swarm, codec))
}

/// One of the mesh's two gossip topics: `taskmesh/<mesh>/<name>`.
pub(crate) fn mesh_topic(mesh: &str, name: &str) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("taskmesh/{mesh}/{name}"))
}

/// Longest a connection may take from TCP to a ready Yamux session: a peer
/// that opens sockets and says nothing holds a pending slot
/// ([`crate::access::Limits::max_pending_connections`]) no longer.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// TCP, then the mesh key's encryption when there is one, then Noise
/// (which authenticates the peer id) and Yamux, within
/// [`HANDSHAKE_TIMEOUT`].
fn transport(
    key: &identity::Keypair,
    psk: Option<pnet::PreSharedKey>,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, noise::Error> {
    let noise = noise::Config::new(key)?;
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    Ok(match psk {
        Some(psk) => tcp
            .and_then(move |socket, _| pnet::PnetConfig::new(psk).handshake(socket))
            .upgrade(Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .timeout(HANDSHAKE_TIMEOUT)
            .boxed(),
        None => tcp
            .upgrade(Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .timeout(HANDSHAKE_TIMEOUT)
            .boxed(),
    })
}

/// Peer scoring that only punishes what an honest node never does: a
/// message the loop rejects (malformed, forged, from a peer without the
/// right) costs 100 points on the admin topic and 50 on the tasks topic,
/// squared per message, so one or two put the sender under the graylist
/// threshold (-80): its messages are then neither processed nor relayed.
/// The penalty fades by 10 % a second. No score is taken for sharing an IP
/// address (meshes on one host are normal) nor for quiet topics.
fn scoring(
    topics: &HashSet<gossipsub::TopicHash>,
) -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let mut params = gossipsub::PeerScoreParams {
        ip_colocation_factor_weight: 0.0,
        ..Default::default()
    };
    for topic in topics {
        let weight = if topic.as_str().ends_with("/admin") {
            1.0
        } else {
            0.5
        };
        params.topics.insert(
            topic.clone(),
            gossipsub::TopicScoreParams {
                topic_weight: weight,
                time_in_mesh_weight: 0.0,
                first_message_deliveries_weight: 0.0,
                mesh_message_deliveries_weight: 0.0,
                mesh_failure_penalty_weight: 0.0,
                invalid_message_deliveries_weight: -100.0,
                invalid_message_deliveries_decay: 0.9,
                ..Default::default()
            },
        );
    }
    (params, gossipsub::PeerScoreThresholds::default())
}
