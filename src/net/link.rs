//! Long-lived links: streams kept open between peers, over which requests
//! and their answers travel as [`LinkFrame`]s, so that a message costs a
//! frame on an open stream instead of a new stream and a protocol
//! negotiation (see `shared/benchmarks.md`: about 40 µs against 330–520 µs
//! on loopback).
//!
//! - **A link is one stream, both ways.** A node opens a link to a peer
//!   with its first request there, and sends its requests on it; the peer
//!   answers each on the same stream. A request and its answer share a
//!   fate: when the link breaks, both sides learn it
//!   ([`LinkEvent::Down`]), and the requests still waiting on it fail as
//!   over a closed connection (and are asked again the way each kind
//!   is). The next request opens a new link.
//! - **Written once per turn.** The loop holds a link's frames until the
//!   end of its turn ([`Links::flush`]) and hands them over as one batch,
//!   which the link writes at once: a turn that answers a hundred requests
//!   costs one write (and one Yamux and Noise frame per 16 KiB), not a
//!   hundred.
//! - **Bounded.** Frames queued for one link are bounded ([`QUEUE`]
//!   batches of at most [`BATCH_FRAMES`]): a
//!   request that finds its link full goes by request-response instead, and
//!   a link that cannot take an answer is closed (its requester asks
//!   again). Frames read from every link reach the loop through one bounded
//!   channel, which pushes back on the peers when the loop is behind. A
//!   peer has at most one inbound link: a new one replaces the old.
//! - **Read as strictly as request-response.** Each frame's length is
//!   checked before reading, its body grows within the node's inbound
//!   budget, and it must arrive within the read and stall timeouts
//!   ([`Codec::read_next`]); only the wait for a frame's first byte is
//!   unbounded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::mpsc;
use tracing::debug;

use crate::protocol::{Codec, LinkFrame, Request, Unreadable, LINK_PROTOCOL};

/// Batches of frames queued for one link.
pub(crate) const QUEUE: usize = 8;
/// Frames in one batch: a turn that queues more for one link hands over a
/// batch each time this many are held.
pub(crate) const BATCH_FRAMES: usize = 128;

/// Frames handed to a link's task together.
pub(crate) type Batch = Vec<LinkFrame>;

/// Frames read from every link and not yet taken by the loop.
const INBOX: usize = 4096;
/// Bytes of queued frames a link gathers into one write: 64 KiB. A frame
/// is never split for it; a larger one goes out alone.
const WRITE_BATCH: usize = 64 << 10;
/// Bytes a link reads ahead of the frame it decodes: 16 KiB per link, on
/// top of the node-wide frame budget.
const READ_BUFFER: usize = 16 << 10;

/// What the link tasks tell the loop.
pub(crate) enum LinkEvent {
    /// A peer opened link `link` to this node; its answers go to `queue`.
    Opened {
        peer: PeerId,
        link: u64,
        queue: mpsc::Sender<Batch>,
    },
    /// A frame from a peer on link `link`.
    Frame {
        peer: PeerId,
        link: u64,
        frame: LinkFrame,
    },
    /// A peer's frame could not be read; its link was closed.
    Unreadable(PeerId, Unreadable),
    /// Link `link` with a peer is closed; with `unsupported` when the peer
    /// does not speak [`LINK_PROTOCOL`].
    Down {
        peer: PeerId,
        link: u64,
        unsupported: bool,
    },
}

/// Where the answer to a request goes: its request-response stream, or the
/// link it came on, under the request's id.
pub(crate) enum Responder {
    Rr(libp2p::request_response::ResponseChannel<crate::protocol::Response>),
    Link { link: u64, id: u64 },
}

/// One open link: the queue of batches its task writes, and the frames of
/// this turn not yet handed over.
struct Open {
    peer: PeerId,
    queue: mpsc::Sender<Batch>,
    /// Frames of this turn. When any are held, the queue has room for
    /// them: nothing else sends on it before [`Links::flush`].
    held: Batch,
    /// Requests that came on it and wait for their answers.
    in_flight: u32,
}

impl Open {
    /// Holds `frame` for the end of the turn; gives it back when the
    /// link's queue is full.
    fn hold(&mut self, frame: LinkFrame) -> Result<(), LinkFrame> {
        if self.held.len() >= BATCH_FRAMES {
            // The room reserved when the first of them was held.
            let Ok(room) = self.queue.try_reserve() else {
                return Err(frame);
            };
            room.send(std::mem::take(&mut self.held));
        }
        if self.held.is_empty() && self.queue.capacity() == 0 {
            return Err(frame);
        }
        self.held.push(frame);
        Ok(())
    }
}

/// The links of one node (owned by the event loop).
pub(crate) struct Links {
    control: libp2p_stream::Control,
    codec: Codec,
    /// Every open link, by id.
    open: HashMap<u64, Open>,
    /// The link this node opened to each peer, for its requests.
    mine: HashMap<PeerId, u64>,
    /// The link each peer opened to this node (one each, the newest).
    theirs: HashMap<PeerId, u64>,
    /// Links holding frames of this turn.
    holding: Vec<u64>,
    /// Most inbound links at once.
    max_links: usize,
    /// Peers that do not speak the link protocol: request-response only.
    unsupported: std::collections::HashSet<PeerId>,
    /// Link ids, shared with the task that takes inbound links.
    ids: Arc<AtomicU64>,
    events: mpsc::Receiver<LinkEvent>,
    tell: mpsc::Sender<LinkEvent>,
    /// The task taking inbound links (aborted on drop).
    acceptor: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Links {
    fn drop(&mut self) {
        if let Some(a) = self.acceptor.take() {
            a.abort();
        }
    }
}

impl Links {
    /// Links over `control`, read with `codec`'s limits. Call
    /// [`Links::listen`] from within the runtime to take inbound links.
    pub(crate) fn new(control: libp2p_stream::Control, codec: Codec) -> Self {
        let (tell, events) = mpsc::channel(INBOX);
        Links {
            control,
            codec,
            open: HashMap::new(),
            mine: HashMap::new(),
            theirs: HashMap::new(),
            holding: Vec::new(),
            max_links: 0,
            unsupported: Default::default(),
            ids: Default::default(),
            events,
            tell,
            acceptor: None,
        }
    }

    /// Starts taking inbound links: at most `max_links` at once, one per
    /// peer.
    pub(crate) fn listen(&mut self, max_links: usize) {
        self.max_links = max_links;
        let Ok(incoming) = self.control.accept(StreamProtocol::new(LINK_PROTOCOL)) else {
            return;
        };
        let link = Accept {
            codec: self.codec.clone(),
            tell: self.tell.clone(),
            ids: self.ids.clone(),
        };
        self.acceptor = Some(tokio::spawn(link.run(incoming)));
    }

    /// The next event of any link (pending forever when there is none;
    /// cancel-safe).
    pub(crate) async fn next(&mut self) -> LinkEvent {
        match self.events.recv().await {
            Some(e) => e,
            None => std::future::pending().await,
        }
    }

    /// An event already there, without waiting.
    pub(crate) fn try_next(&mut self) -> Option<LinkEvent> {
        self.events.try_recv().ok()
    }

    /// Queues request `id` for `peer` on this node's link to it (opening
    /// one if needed); gives it back when it must go by request-response
    /// instead (the peer has no link protocol, or the link is full).
    /// Returns the link it went on.
    pub(crate) fn request(&mut self, peer: PeerId, id: u64, request: Request) -> Result<u64, Request> {
        if self.unsupported.contains(&peer) {
            return Err(request);
        }
        let link = match self.mine.get(&peer) {
            Some(&link) if self.open.contains_key(&link) => link,
            _ => self.open_to(peer),
        };
        match self.hold(link, LinkFrame::Request { id, request }) {
            Ok(()) => Ok(link),
            Err(LinkFrame::Request { request, .. }) => Err(request),
            Err(_) => unreachable!("hold gives back the frame it was given"),
        }
    }

    /// Holds a frame for link `link` until [`Links::flush`]; gives it back
    /// when the link is gone or full.
    fn hold(&mut self, link: u64, frame: LinkFrame) -> Result<(), LinkFrame> {
        let Some(open) = self.open.get_mut(&link) else {
            return Err(frame);
        };
        let first = open.held.is_empty();
        open.hold(frame)?;
        if first {
            self.holding.push(link);
        }
        Ok(())
    }

    /// Hands every link the frames of this turn, one batch each (call at
    /// the end of each turn of the loop).
    pub(crate) fn flush(&mut self) {
        for link in self.holding.drain(..) {
            let Some(open) = self.open.get_mut(&link) else {
                continue;
            };
            if open.held.is_empty() {
                continue;
            }
            // Room was there when the first frame was held (see `Open::hold`);
            // only a link whose task ended can refuse.
            if open.queue.try_send(std::mem::take(&mut open.held)).is_err() {
                debug!(peer = %open.peer, link, "link closed: its task ended");
                self.open.remove(&link);
            }
        }
    }

    fn open_to(&mut self, peer: PeerId) -> u64 {
        let link = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
        let (queue, rx) = mpsc::channel(QUEUE);
        let (control, codec, tell) = (self.control.clone(), self.codec.clone(), self.tell.clone());
        tokio::spawn(open_and_run(control, codec, peer, link, rx, tell));
        self.keep(link, peer, queue);
        self.mine.insert(peer, link);
        link
    }

    /// Queues an answer on the link its request came on. A link that
    /// cannot take it is closed, so that its requester learns it and asks
    /// again; an answer for a link already gone is dropped (its requester
    /// learnt that the link broke).
    pub(crate) fn answer(&mut self, link: u64, frame: LinkFrame) {
        if let Some(open) = self.open.get_mut(&link) {
            open.in_flight = open.in_flight.saturating_sub(1);
        }
        self.queue_answer(link, frame);
    }

    /// Queues an answer on link `link` without counting it against the
    /// requests in flight there: the refusal of one [`Links::admit`] did
    /// not take. A link that cannot take it is closed, as in
    /// [`Links::answer`].
    pub(crate) fn refuse(&mut self, link: u64, frame: LinkFrame) {
        self.queue_answer(link, frame);
    }

    /// Queues an answer; closes a link that cannot take it.
    fn queue_answer(&mut self, link: u64, frame: LinkFrame) {
        // A link already gone is not there to remove.
        if self.hold(link, frame).is_err() {
            if let Some(open) = self.open.remove(&link) {
                debug!(peer = %open.peer, link, "link closed: its answers do not keep up");
            }
        }
    }

    #[cfg(test)]
    fn listen_limit_for_tests(&mut self, max_links: usize) {
        self.max_links = max_links;
    }

    /// A peer opened a link to this node: it replaces the peer's earlier
    /// one, and is refused (closed) past the limit of inbound links.
    pub(crate) fn opened(&mut self, peer: PeerId, link: u64, queue: mpsc::Sender<Batch>) {
        if !self.theirs.contains_key(&peer) && self.theirs.len() >= self.max_links {
            debug!(%peer, "inbound link refused: too many links");
            return;
        }
        if let Some(old) = self.theirs.insert(peer, link) {
            // Dropping its queue ends its task, which reports it down.
            self.open.remove(&old);
        }
        self.keep(link, peer, queue);
    }

    /// Takes a request that came on `link` when fewer than `max` of its
    /// requests wait for answers (as request-response bounds the streams
    /// of a connection); false when it must be refused at once.
    pub(crate) fn admit(&mut self, link: u64, max: usize) -> bool {
        match self.open.get_mut(&link) {
            Some(open) if (open.in_flight as usize) < max => {
                open.in_flight += 1;
                true
            }
            _ => false,
        }
    }

    /// Keeps an open link's queue, with no request in flight yet.
    fn keep(&mut self, link: u64, peer: PeerId, queue: mpsc::Sender<Batch>) {
        let open = Open {
            peer,
            queue,
            held: Vec::new(),
            in_flight: 0,
        };
        self.open.insert(link, open);
    }

    /// Takes note that a link is closed.
    pub(crate) fn down(&mut self, peer: PeerId, link: u64, unsupported: bool) {
        self.open.remove(&link);
        for ends in [&mut self.mine, &mut self.theirs] {
            if ends.get(&peer) == Some(&link) {
                ends.remove(&peer);
            }
        }
        if unsupported {
            self.unsupported.insert(peer);
        }
    }

    /// Forgets a peer that disconnected (its links' tasks end on their
    /// own and report it).
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        self.unsupported.remove(peer);
    }
}

/// Opens a link to `peer`, then runs it.
async fn open_and_run(
    mut control: libp2p_stream::Control,
    codec: Codec,
    peer: PeerId,
    link: u64,
    queue: mpsc::Receiver<Batch>,
    tell: mpsc::Sender<LinkEvent>,
) {
    match control
        .open_stream(peer, StreamProtocol::new(LINK_PROTOCOL))
        .await
    {
        Ok(stream) => run(stream, codec, peer, link, queue, tell).await,
        Err(e) => {
            debug!(%peer, error = %e, "cannot open a link");
            let unsupported = matches!(e, libp2p_stream::OpenStreamError::UnsupportedProtocol(_));
            let _ = tell
                .send(LinkEvent::Down {
                    peer,
                    link,
                    unsupported,
                })
                .await;
        }
    }
}

/// Runs one link: frames read go to the loop, queued frames are written,
/// until either side ends; then the loop is told the link is down.
async fn run(
    stream: Stream,
    codec: Codec,
    peer: PeerId,
    link: u64,
    mut queue: mpsc::Receiver<Batch>,
    tell: mpsc::Sender<LinkEvent>,
) {
    let (reader, mut writer) = stream.split();
    // Frames are read from a buffer, so that a burst of small frames costs
    // one read of the stream, not three per frame.
    let mut reader = futures::io::BufReader::with_capacity(READ_BUFFER, reader);
    let reading = async {
        loop {
            let event = match codec.read_next::<_, LinkFrame>(&mut reader).await {
                Ok(Some(frame)) => LinkEvent::Frame { peer, link, frame },
                Ok(None) => return,
                Err(e) => match Unreadable::of(e) {
                    Ok(why) => LinkEvent::Unreadable(peer, why),
                    Err(e) => {
                        debug!(%peer, link, error = %e, "link closed");
                        return;
                    }
                },
            };
            let last = matches!(event, LinkEvent::Unreadable(..));
            if tell.send(event).await.is_err() || last {
                return;
            }
        }
    };
    let writing = async {
        let mut out = Vec::new();
        while let Some(batch) = queue.recv().await {
            // The batches queued by now go out together: one write and one
            // flush per 64 KiB of a burst, not one per frame.
            let mut next = Some(batch);
            while let Some(batch) = next.take() {
                for frame in batch {
                    if let Err(e) = codec.frame_into(&mut out, &frame) {
                        debug!(%peer, link, error = %e, "link frame not sent");
                        return;
                    }
                    if out.len() >= WRITE_BATCH {
                        if let Err(e) = writer.write_all(&out).await {
                            debug!(%peer, link, error = %e, "link write failed");
                            return;
                        }
                        out.clear();
                    }
                }
                next = queue.try_recv().ok();
            }
            let sent = async {
                writer.write_all(&out).await?;
                writer.flush().await
            };
            if let Err(e) = sent.await {
                debug!(%peer, link, error = %e, "link write failed");
                return;
            }
            out.clear();
            if out.capacity() > 4 * WRITE_BATCH {
                out = Vec::new();
            }
        }
    };
    tokio::select! {
        _ = reading => {}
        _ = writing => {}
    }
    let _ = tell
        .send(LinkEvent::Down {
            peer,
            link,
            unsupported: false,
        })
        .await;
}

/// Takes inbound links.
struct Accept {
    codec: Codec,
    tell: mpsc::Sender<LinkEvent>,
    ids: Arc<AtomicU64>,
}

impl Accept {
    /// Runs each inbound link; the loop keeps or refuses it when told it
    /// opened ([`Links::opened`]).
    async fn run(self, mut incoming: libp2p_stream::IncomingStreams) {
        while let Some((peer, stream)) = incoming.next().await {
            let link = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
            let (queue, rx) = mpsc::channel(QUEUE);
            if self
                .tell
                .send(LinkEvent::Opened { peer, link, queue })
                .await
                .is_err()
            {
                return;
            }
            tokio::spawn(run(stream, self.codec.clone(), peer, link, rx, self.tell.clone()));
        }
    }
}

/// Requests sent over links that wait for their answers, each with the
/// link it went on and when it times out.
pub(crate) struct Waits<P> {
    by_id: HashMap<u64, Wait<P>>,
    due: std::collections::BTreeSet<(tokio::time::Instant, u64)>,
    next: u64,
}

struct Wait<P> {
    peer: PeerId,
    link: u64,
    due: tokio::time::Instant,
    what: P,
}

impl<P> Default for Waits<P> {
    fn default() -> Self {
        Waits {
            by_id: HashMap::new(),
            due: Default::default(),
            next: 0,
        }
    }
}

impl<P> Waits<P> {
    /// A fresh request id.
    pub(crate) fn next_id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Remembers request `id`, sent to `peer` on link `link`, until
    /// answered or `due`.
    pub(crate) fn insert(&mut self, id: u64, peer: PeerId, link: u64, due: tokio::time::Instant, what: P) {
        self.by_id.insert(
            id,
            Wait {
                peer,
                link,
                due,
                what,
            },
        );
        self.due.insert((due, id));
    }

    /// The request an answer from `peer` is for; `None` for an id this node
    /// never sent to that peer, or already answered or failed.
    pub(crate) fn answer(&mut self, id: u64, peer: PeerId) -> Option<P> {
        if self.by_id.get(&id)?.peer != peer {
            return None;
        }
        self.take(id)
    }

    fn take(&mut self, id: u64) -> Option<P> {
        let w = self.by_id.remove(&id)?;
        self.due.remove(&(w.due, id));
        Some(w.what)
    }

    /// The requests still waiting on link `link` with `peer` (every link
    /// with it with `None`): they failed with it.
    pub(crate) fn lost(&mut self, peer: PeerId, link: Option<u64>) -> Vec<P> {
        let gone: Vec<u64> = self
            .by_id
            .iter()
            .filter(|(_, w)| w.peer == peer && link.is_none_or(|l| l == w.link))
            .map(|(&id, _)| id)
            .collect();
        gone.into_iter().filter_map(|id| self.take(id)).collect()
    }

    /// The requests past their time at `now`, with their peers.
    pub(crate) fn expired(&mut self, now: tokio::time::Instant) -> Vec<(PeerId, P)> {
        let mut out = Vec::new();
        while let Some(&(at, id)) = self.due.first() {
            if at > now {
                break;
            }
            self.due.pop_first();
            if let Some(w) = self.by_id.remove(&id) {
                out.push((w.peer, w.what));
            }
        }
        out
    }

    /// When the next request times out.
    pub(crate) fn next_due(&self) -> Option<tokio::time::Instant> {
        self.due.first().map(|d| d.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::{Duration, Instant};

    #[test]
    fn a_link_holds_a_bounded_number_of_requests_in_flight() {
        let control = libp2p_stream::Behaviour::new().new_control();
        let mut links = Links::new(control, Codec::default());
        links.listen_limit_for_tests(4);
        let (queue, _rx) = mpsc::channel(QUEUE);
        let peer = PeerId::random();
        links.opened(peer, 7, queue);
        let taken = (0..5).filter(|_| links.admit(7, 4)).count();
        assert_eq!(taken, 4, "the fifth waits for an answer first");
        links.answer(
            7,
            LinkFrame::Response {
                id: 1,
                response: crate::protocol::Response::Ok,
            },
        );
        assert!(links.admit(7, 4), "an answer frees a place");
        // A refusal is not counted.
        links.refuse(
            7,
            LinkFrame::Response {
                id: 2,
                response: crate::protocol::Response::Ok,
            },
        );
        assert!(!links.admit(7, 4));
        assert!(!links.admit(8, 4), "no such link");
    }

    fn ok(id: u64) -> LinkFrame {
        LinkFrame::Response {
            id,
            response: crate::protocol::Response::Ok,
        }
    }

    fn ids(batch: &Batch) -> Vec<u64> {
        batch
            .iter()
            .map(|f| match f {
                LinkFrame::Request { id, .. } | LinkFrame::Response { id, .. } => *id,
            })
            .collect()
    }

    #[test]
    fn a_turns_frames_go_to_the_link_as_one_batch_at_its_end() {
        let control = libp2p_stream::Behaviour::new().new_control();
        let mut links = Links::new(control, Codec::default());
        links.listen_limit_for_tests(4);
        let (queue, mut rx) = mpsc::channel(QUEUE);
        let peer = PeerId::random();
        links.opened(peer, 7, queue);
        for id in 1..=3 {
            links.refuse(7, ok(id));
        }
        assert!(
            rx.try_recv().is_err(),
            "nothing is handed over before the turn ends"
        );
        links.flush();
        assert_eq!(ids(&rx.try_recv().expect("one batch")), vec![1, 2, 3]);
        assert!(rx.try_recv().is_err(), "in one batch");
        links.flush();
        assert!(rx.try_recv().is_err(), "an empty turn hands over nothing");
        // A long turn hands over a batch each BATCH_FRAMES frames.
        for id in 0..BATCH_FRAMES as u64 + 2 {
            links.refuse(7, ok(id));
        }
        assert_eq!(rx.try_recv().expect("a full batch").len(), BATCH_FRAMES);
        links.flush();
        assert_eq!(
            ids(&rx.try_recv().expect("the rest")),
            vec![BATCH_FRAMES as u64, BATCH_FRAMES as u64 + 1]
        );
    }

    #[test]
    fn a_full_link_gives_requests_back_and_closes_on_an_answer() {
        let control = libp2p_stream::Behaviour::new().new_control();
        let mut links = Links::new(control, Codec::default());
        links.listen_limit_for_tests(4);
        let peer = PeerId::random();
        // This node's own link to the peer, whose task does not read.
        let (queue, _rx) = mpsc::channel(QUEUE);
        links.keep(9, peer, queue);
        links.mine.insert(peer, 9);
        for turn in 0..QUEUE as u64 {
            assert_eq!(links.request(peer, turn, Request::Workers), Ok(9));
            links.flush();
        }
        assert_eq!(
            links.request(peer, 99, Request::Workers),
            Err(Request::Workers),
            "a full link gives the request back, for request-response"
        );
        // An answer that cannot be queued closes the link.
        links.refuse(9, ok(1));
        assert!(!links.admit(9, 4), "the link is closed");
    }

    #[test]
    fn waits_answer_only_their_peer_and_fail_with_their_link_or_time() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        let mut w = Waits::default();
        let ids: Vec<u64> = (0..4).map(|_| w.next_id()).collect();
        w.insert(ids[0], a, 1, t0 + Duration::from_secs(3), "a1");
        w.insert(ids[1], a, 2, t0 + Duration::from_secs(1), "a2");
        w.insert(ids[2], b, 3, t0 + Duration::from_secs(2), "b3");
        w.insert(ids[3], a, 1, t0 + Duration::from_secs(4), "a1'");
        // An answer from another peer, or to an unknown id, answers nothing.
        assert_eq!(w.answer(ids[0], b), None);
        assert_eq!(w.answer(99, a), None);
        assert_eq!(w.answer(ids[0], a), Some("a1"));
        assert_eq!(w.answer(ids[0], a), None, "answered once");
        // Link 1 with `a` breaks: only its request fails.
        assert_eq!(w.lost(a, Some(1)), vec!["a1'"]);
        assert_eq!(w.next_due(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(w.expired(t0 + Duration::from_secs(1)), vec![(a, "a2")]);
        // Every link with `b`.
        assert_eq!(w.lost(b, None), vec!["b3"]);
        assert_eq!(w.next_due(), None, "nothing left to time out");
        assert!(w.expired(t0 + Duration::from_secs(10)).is_empty());
    }
}
