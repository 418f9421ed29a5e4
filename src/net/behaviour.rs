//! The composed libp2p behaviour and the swarm built around it:
//! TCP + Noise + Yamux; gossipsub (signed, strict), request-response with the
//! size-limited bincode codec, identify, ping, and switchable mDNS.

use std::time::Duration;

use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    gossipsub, identify, identity, mdns, noise, ping, request_response, tcp, yamux, StreamProtocol, Swarm,
};

use crate::node::NodeConfig;
use crate::protocol::{Codec, PROTOCOL_NAME};
use crate::Error;

/// Every protocol a taskmesh node speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) rr: request_response::Behaviour<Codec>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
}

/// Builds the swarm for `cfg` with identity `key`.
/// How often each connection is pinged.
pub(crate) const PING_INTERVAL: Duration = Duration::from_secs(1);
/// How long a ping may go unanswered before it fails.
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection with no ping answered for this long is closed: a path that
/// stopped carrying packets (a firewall, a cut cable, a paused peer) leaves
/// TCP connected for minutes, and a ping to a paused peer fails only after
/// its stream negotiation times out (about 10 s). Long enough that a lossy
/// link whose TCP retransmissions delay a few pings keeps its connection.
pub(crate) const SILENT_CONNECTION: Duration = Duration::from_secs(6);

pub(crate) fn build_swarm(cfg: &NodeConfig, key: identity::Keypair) -> Result<Swarm<Behaviour>, Error> {
    let max_frame = cfg.max_frame;
    let mdns_on = cfg.mdns;
    let request_timeout = cfg.request_timeout;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| Error::Transport(format!("transport: {e}")))?
        .with_behaviour(|key| {
            let gossip_cfg = gossipsub::ConfigBuilder::default()
                .validation_mode(gossipsub::ValidationMode::Strict)
                .heartbeat_interval(Duration::from_millis(1000))
                .max_transmit_size(max_frame)
                .build()
                .map_err(|e| format!("gossipsub config: {e}"))?;
            let gossipsub =
                gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gossip_cfg)
                    .map_err(|e| format!("gossipsub: {e}"))?;
            let rr = request_response::Behaviour::with_codec(
                Codec { max_frame },
                [(
                    StreamProtocol::new(PROTOCOL_NAME),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default()
                    .with_request_timeout(request_timeout)
                    .with_max_concurrent_streams(1024),
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
            Ok(Behaviour {
                gossipsub,
                rr,
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
    Ok(swarm)
}
