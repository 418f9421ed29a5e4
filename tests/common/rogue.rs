//! A rogue peer for the security tests: a real libp2p swarm (TCP, Noise,
//! Yamux, signed gossipsub, request-response on taskmesh's protocol with a
//! raw codec) that sends whatever a test tells it to, bound by none of
//! taskmesh's rules.

use std::io;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{gossipsub, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use taskmesh::protocol::{self, Gossip, Request, Response};

/// What the rogue writes on a new stream.
#[derive(Debug)]
pub enum Raw {
    /// These bytes, then the stream is closed for writing.
    Frame(Vec<u8>),
    /// These bytes, and the stream is left open (a frame that never ends).
    /// No answer ever comes back to the rogue.
    Hold(Vec<u8>),
}

/// Writes raw bytes; reads whatever comes back (up to 32 MiB).
#[derive(Clone, Default)]
pub struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Raw;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<Raw>
    where
        T: AsyncRead + Unpin + Send,
    {
        Err(io::Error::other("the rogue takes no requests"))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut v = Vec::new();
        io.take(32 << 20).read_to_end(&mut v).await?;
        Ok(v)
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Raw) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match req {
            Raw::Frame(b) => {
                io.write_all(&b).await?;
                io.close().await
            }
            Raw::Hold(b) => {
                io.write_all(&b).await?;
                io.flush().await?;
                // Never finish the frame: the stream stays open until the
                // peer gives up on it (or the rogue's own timeout).
                futures::future::pending::<io::Result<()>>().await
            }
        }
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, _: &mut T, _: Vec<u8>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}

/// The rogue's protocols.
#[derive(NetworkBehaviour)]
pub struct RogueBehaviour {
    pub gossipsub: gossipsub::Behaviour,
    pub rr: request_response::Behaviour<RawCodec>,
    pub stream: libp2p_stream::Behaviour,
}

/// The rogue: a swarm and its gossip topics.
pub struct Rogue {
    pub swarm: Swarm<RogueBehaviour>,
    pub id: PeerId,
    admin_topic: gossipsub::IdentTopic,
    tasks_topic: gossipsub::IdentTopic,
}

/// A whole frame as taskmesh sends it: length, then `body`.
pub fn framed(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_le_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// A taskmesh request as a whole frame.
pub fn frame(req: &Request) -> Vec<u8> {
    framed(&protocol::encode(req).expect("encode"))
}

/// A taskmesh answer from the bytes the rogue read back, if it is one.
pub fn answer(bytes: &[u8]) -> Option<Response> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    protocol::decode(bytes.get(4..4 + len)?).ok()
}

impl Rogue {
    /// A rogue with a fresh identity, subscribed to mesh `mesh`'s topics.
    pub fn new(mesh: &str) -> Rogue {
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .expect("tcp")
            .with_behaviour(|key| {
                let cfg = gossipsub::ConfigBuilder::default()
                    .max_transmit_size(4 << 20)
                    .heartbeat_interval(Duration::from_millis(200))
                    .build()
                    .expect("gossipsub config");
                let gossipsub =
                    gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), cfg)
                        .expect("gossipsub");
                let rr = request_response::Behaviour::with_codec(
                    RawCodec,
                    [(
                        StreamProtocol::new(protocol::PROTOCOL_NAME),
                        ProtocolSupport::Outbound,
                    )],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(60))
                        .with_max_concurrent_streams(2000),
                );
                RogueBehaviour {
                    gossipsub,
                    rr,
                    stream: libp2p_stream::Behaviour::new(),
                }
            })
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
            .build();
        let id = *swarm.local_peer_id();
        let admin_topic = gossipsub::IdentTopic::new(format!("taskmesh/{mesh}/admin"));
        let tasks_topic = gossipsub::IdentTopic::new(format!("taskmesh/{mesh}/tasks"));
        for t in [&admin_topic, &tasks_topic] {
            swarm.behaviour_mut().gossipsub.subscribe(t).expect("subscribe");
        }
        Rogue {
            swarm,
            id,
            admin_topic,
            tasks_topic,
        }
    }

    /// Dials `addr` (with `/p2p/`).
    pub fn dial(&mut self, addr: &str) {
        let addr: Multiaddr = addr.parse().expect("a multiaddr");
        self.swarm.dial(addr).expect("dial");
    }

    /// Opens a stream to `peer` and writes `raw` on it.
    pub fn send(&mut self, peer: PeerId, raw: Raw) -> OutboundRequestId {
        self.swarm.behaviour_mut().rr.send_request(&peer, raw)
    }

    /// A handle that opens links (taskmesh's long-lived streams) while the
    /// rogue's swarm is driven.
    pub fn links(&self) -> libp2p_stream::Control {
        self.swarm.behaviour().stream.new_control()
    }

    /// Publishes raw bytes on the admin topic (or the tasks topic).
    pub fn publish(&mut self, admin_topic: bool, bytes: Vec<u8>) -> bool {
        let topic = if admin_topic {
            self.admin_topic.clone()
        } else {
            self.tasks_topic.clone()
        };
        self.swarm.behaviour_mut().gossipsub.publish(topic, bytes).is_ok()
    }

    /// Publishes a taskmesh gossip message.
    pub fn gossip(&mut self, admin_topic: bool, msg: &Gossip) -> bool {
        self.publish(admin_topic, protocol::encode(msg).expect("encode"))
    }

    /// Drives the swarm for `d`, handing every event to `on`.
    pub async fn run_for(&mut self, d: Duration, mut on: impl FnMut(SwarmEvent<RogueBehaviourEvent>)) {
        let until = tokio::time::Instant::now() + d;
        while let Ok(Some(ev)) = tokio::time::timeout_at(until, self.swarm.next()).await {
            on(ev);
        }
    }
}

/// A taskmesh link frame as a whole frame.
pub fn link_frame(frame: &protocol::LinkFrame) -> Vec<u8> {
    framed(&protocol::encode(frame).expect("encode"))
}

/// Reads the next link frame from `io` within `within`: `Ok(None)` when
/// the other side closed the link, `Err` when nothing came in time.
pub async fn read_link_frame<T: AsyncRead + Unpin>(
    io: &mut T,
    within: Duration,
) -> Result<Option<protocol::LinkFrame>, String> {
    let read = async {
        let mut len = [0u8; 4];
        if io.read_exact(&mut len).await.is_err() {
            return None;
        }
        let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
        io.read_exact(&mut body).await.ok()?;
        protocol::decode(&body).ok()
    };
    tokio::time::timeout(within, read)
        .await
        .map_err(|_| format!("no frame nor close within {within:?}"))
}

/// Resident memory of process `pid`, in KiB (from /proc).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
