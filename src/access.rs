//! Who may do what in a mesh, and how much any one peer may take of a node.
//!
//! Three layers, from the outside in:
//! - **The mesh key** ([`read_psk`], `--psk FILE`): libp2p's pre-shared-key
//!   transport. A peer without the key cannot complete a connection at all.
//! - **Allow-lists** ([`AllowLists`]): which peer ids may be a voter (and so
//!   the admin), host workers, or make client calls (submit, status,
//!   cancel, wait, list). A list left out allows everyone.
//! - **Limits** ([`Limits`]): connections, streams, bytes being read, read
//!   time, unfinished tasks and bytes per submitting peer, and strikes
//!   that cut off a peer that keeps sending what no honest node sends.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use libp2p::pnet::PreSharedKey;
use libp2p::PeerId;

use crate::Error;

/// What a peer asks to do, for the allow-lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Right {
    /// Keep a replica of the ledger (learner, then voter) and so become
    /// admin; also speak as admin (notices, awards).
    Admin,
    /// Register workers, bid, and report results.
    HostWorkers,
    /// Submit, read status, cancel, wait, list workers and peers.
    Client,
}

impl Right {
    /// The command-line flag that lists the peers with this right.
    pub fn flag(self) -> &'static str {
        match self {
            Right::Admin => "--allow-admins",
            Right::HostWorkers => "--allow-workers",
            Right::Client => "--allow-clients",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Right::Admin => "be a voter or the admin",
            Right::HostWorkers => "host workers",
            Right::Client => "submit or read tasks",
        }
    }
}

/// Peer ids allowed each [`Right`]; `None` allows everyone. A node always
/// allows itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowLists {
    /// Who may keep a replica of the ledger and be admin.
    pub admins: Option<BTreeSet<PeerId>>,
    /// Who may host workers.
    pub workers: Option<BTreeSet<PeerId>>,
    /// Who may make client calls.
    pub clients: Option<BTreeSet<PeerId>>,
}

impl AllowLists {
    /// True when no list is set: anyone who can reach the mesh may do
    /// anything in it.
    pub fn is_open(&self) -> bool {
        self.admins.is_none() && self.workers.is_none() && self.clients.is_none()
    }

    /// The list for `right`.
    pub fn list(&self, right: Right) -> Option<&BTreeSet<PeerId>> {
        match right {
            Right::Admin => self.admins.as_ref(),
            Right::HostWorkers => self.workers.as_ref(),
            Right::Client => self.clients.as_ref(),
        }
    }

    /// True when `peer` has `right`.
    pub fn allows(&self, right: Right, peer: &PeerId) -> bool {
        self.list(right).is_none_or(|l| l.contains(peer))
    }

    /// `Ok` when `peer` has `right`; otherwise the refusal the peer is
    /// sent, which names the flag that would let it in.
    pub fn check(&self, right: Right, peer: &PeerId) -> Result<(), String> {
        if self.allows(right, peer) {
            Ok(())
        } else {
            Err(format!(
                "peer {peer} may not {} in this mesh (not in the node's {} list)",
                right.what(),
                right.flag()
            ))
        }
    }
}

/// What to do with a peer's claim to be the admin (a notice, an award).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The ledger backs it: follow this admin.
    Follow,
    /// Not followed, but an honest peer may send it (a lagging member, an
    /// older term): dropped without blame.
    Ignore,
    /// No honest peer sends it (a peer without the right, or outside the
    /// ledger's configuration, speaking for it): dropped, and the sender
    /// is penalised.
    Reject,
}

/// What a node knows when a peer claims to be the admin of the node's
/// ledger, for [`judge_admin_claim`].
#[derive(Clone, Debug)]
pub struct ClaimContext<'a> {
    /// The allow-lists let the claimant be admin (or it is this node).
    pub allowed: bool,
    /// The claim is for the ledger this node belongs to or follows.
    pub same_ledger: bool,
    /// This node's replica is in the configuration of its own ledger.
    pub in_configuration: bool,
    /// Set when this node's replica is in the configuration of the ledger
    /// claimed for.
    pub member: Option<MemberView>,
    /// The admin this node follows now, with its term.
    pub followed: Option<(PeerId, u64)>,
    /// The voters the followed admin named (nodes outside the
    /// configuration), if it named any.
    pub named_voters: Option<&'a BTreeSet<PeerId>>,
    /// How long this node has known no admin (`None` while it knows one).
    pub leaderless_for: Option<Duration>,
    /// The voters named before this node followed an admin nobody named
    /// (for [`CLAIM_PATIENCE`] after it did): any of them takes the office
    /// back, whatever ledger or term the other claimed.
    pub fallback: Option<&'a BTreeSet<PeerId>>,
}

/// What a member's replica knows of the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// The peer of the leader its replica knows, if any.
    pub leader: Option<PeerId>,
    /// The replica's term.
    pub term: u64,
    /// The claimant is a replica in the configuration.
    pub claimant_is_member: bool,
}

/// How long a node outside the ledger's configuration that lost its admin
/// waits for one among the voters it was told of, before it takes any
/// admin of its ledger again (as at start).
pub const CLAIM_PATIENCE: Duration = Duration::from_secs(60);

/// Judges `source`'s claim to be the admin at `term`. Admin authority
/// comes from the ledger, never from a message anyone can sign:
/// - without the right (an `--allow-admins` list), rejected;
/// - a claim for another ledger is followed here and judged by the rules
///   for ledgers that meet;
/// - a member follows only the leader its replica knows, at the replica's
///   term (or, before its replica heard from a leader, a member claiming
///   that term: Raft has one leader per term); other members are ignored;
///   a claimant outside the configuration is rejected;
/// - a node outside the configuration follows its admin to the same or
///   a higher term, and a new admin at a higher term only when the
///   followed admin named it among the voters (or named none, or the node
///   has known no admin for [`CLAIM_PATIENCE`]);
/// - for [`CLAIM_PATIENCE`] after a node followed an admin nobody named
///   (another ledger's, or one taken on patience), the voters named before
///   take the office back, whatever ledger or term the other claimed.
pub fn judge_admin_claim(source: PeerId, term: u64, cx: &ClaimContext<'_>) -> Claim {
    if !cx.allowed {
        return Claim::Reject;
    }
    let fallback = |p: &PeerId| cx.fallback.is_some_and(|v| v.contains(p));
    if !cx.in_configuration && fallback(&source) && cx.followed.is_none_or(|(a, _)| !fallback(&a)) {
        return Claim::Follow;
    }
    if !cx.same_ledger {
        return Claim::Follow;
    }
    if let Some(m) = cx.member {
        // One leader per term: a member claiming the replica's own term
        // while the replica has not heard from a leader yet is the leader.
        let leader = m.leader == Some(source) || m.leader.is_none() && m.claimant_is_member;
        return if leader && term == m.term {
            Claim::Follow
        } else if m.claimant_is_member {
            Claim::Ignore
        } else {
            Claim::Reject
        };
    }
    let named = |p: &PeerId| cx.named_voters.is_some_and(|v| v.contains(p));
    match cx.followed {
        Some((a, known)) if a == source => {
            if term >= known {
                Claim::Follow
            } else {
                Claim::Ignore
            }
        }
        Some((_, known)) if term <= known => Claim::Ignore,
        _ => {
            let patience_over =
                cx.followed.is_none() && cx.leaderless_for.is_none_or(|t| t >= CLAIM_PATIENCE);
            match cx.named_voters {
                None => Claim::Follow,
                Some(_) if named(&source) => Claim::Follow,
                Some(_) if patience_over => Claim::Follow,
                Some(_) => Claim::Ignore,
            }
        }
    }
}

/// Reads a list of peer ids: one per line, blank lines and `#` comments
/// ignored. Errors name the file and the line.
pub fn read_peer_list(path: &Path) -> Result<BTreeSet<PeerId>, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read peer list {}: {e}", path.display())))?;
    parse_peer_list(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// Parses a list of peer ids as [`read_peer_list`] does.
pub fn parse_peer_list(text: &str) -> Result<BTreeSet<PeerId>, String> {
    let mut peers = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let id = line.split('#').next().unwrap_or("").trim();
        if id.is_empty() {
            continue;
        }
        let peer = id
            .parse::<PeerId>()
            .map_err(|e| format!("line {}: {id:?} is not a peer id ({e})", n + 1))?;
        peers.insert(peer);
    }
    Ok(peers)
}

/// Reads a mesh key written by [`write_psk`] (or go-libp2p's
/// `swarm.key`: `/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits).
pub fn read_psk(path: &Path) -> Result<PreSharedKey, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::InvalidData => " (binary: an identity file for --key?)",
            _ => "",
        };
        Error::Config(format!("cannot read mesh key {}: {e}{hint}", path.display()))
    })?;
    text.parse::<PreSharedKey>().map_err(|e| {
        let why = match e {
            libp2p::pnet::KeyParseError::InvalidKeyFile if text.trim().is_empty() => "it is empty",
            libp2p::pnet::KeyParseError::InvalidKeyFile => "not three lines: type, encoding, key",
            libp2p::pnet::KeyParseError::InvalidKeyType => "its first line is not /key/swarm/psk/1.0.0/",
            libp2p::pnet::KeyParseError::InvalidKeyEncoding => "its second line is not /base16/",
            libp2p::pnet::KeyParseError::InvalidKeyLength => "its key is not 64 hex digits",
            libp2p::pnet::KeyParseError::InvalidKeyChar(_) => "its key has a character that is not hex",
        };
        Error::Config(format!(
            "{} is not a mesh key ({why}); make one with `taskmesh keygen`",
            path.display()
        ))
    })
}

/// Creates the directory `path` goes in when it is missing (mode 0700 on
/// Unix), for key files such as `~/.taskmesh/mesh.key`.
pub fn create_parent(path: &Path) -> std::io::Result<()> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) else {
        return Ok(());
    };
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Writes a new random mesh key to `path` (mode 0600 on Unix; its
/// directory is created when missing), refusing to overwrite an existing
/// file. Returns the key.
pub fn write_psk(path: &Path) -> Result<PreSharedKey, Error> {
    use rand::RngCore;
    use std::io::Write;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let key = PreSharedKey::new(bytes);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    create_parent(path)
        .map_err(|e| Error::Config(format!("cannot create the directory of {}: {e}", path.display())))?;
    let mut file = opts
        .open(path)
        .map_err(|e| Error::Config(format!("cannot create mesh key {}: {e}", path.display())))?;
    file.write_all(key.to_key_file().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::Config(format!("cannot write mesh key {}: {e}", path.display())))?;
    Ok(key)
}

/// How much a node gives to peers. `Default` gives the values documented
/// on each field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Established connections in total. Default 512.
    pub max_connections: u32,
    /// Near [`Limits::max_connections`], a peer with no part in the mesh
    /// (no replica, not the admin nor a named voter, no workers, on no
    /// allow-list) that has asked nothing for this long is disconnected to
    /// make room. Default 30 s.
    pub idle_peer: Duration,
    /// Established connections with any one peer. Default 4.
    pub max_connections_per_peer: u32,
    /// Incoming connections still in their handshake (outgoing ones: twice
    /// this). Default 64.
    pub max_pending_connections: u32,
    /// Request-response streams open at once on one connection, both ways;
    /// more are reset. Default 256.
    pub max_streams_per_connection: usize,
    /// Longest a peer may take to send one frame once its stream is open.
    /// Default 20 s.
    pub read_timeout: Duration,
    /// Longest a frame may go without a byte arriving. Default 5 s.
    pub stall_timeout: Duration,
    /// Bytes of frames being read at once, over every stream of the node
    /// (see [`crate::protocol::InboundBudget`]). Default 128 MiB.
    pub inbound_budget: usize,
    /// Unfinished tasks any one submitting peer may have at the admin; a
    /// batch that would go over is refused whole. Default 1,000,000.
    pub max_unfinished_per_client: usize,
    /// Bytes of task input any one submitting peer may have in unfinished
    /// tasks at the admin. Default 1 GiB.
    pub max_queued_bytes_per_client: u64,
    /// Largest gossip message sent or taken. Default 64 KiB: announcements
    /// are cut to fit.
    pub max_gossip: usize,
    /// Strikes after which a peer is cut off (disconnected and refused)
    /// for [`Limits::cut_off_for`]. A malformed or oversize frame is 5, a
    /// frame not sent within the read timeout 2, invalid gossip 5, a
    /// forged Raft message 10, a refused right 1; strikes fade by one
    /// every 10 s. Default 20.
    pub max_strikes: u32,
    /// How long a peer over [`Limits::max_strikes`] stays cut off. Default
    /// 10 minutes.
    pub cut_off_for: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 512,
            idle_peer: Duration::from_secs(30),
            max_connections_per_peer: 4,
            max_pending_connections: 64,
            max_streams_per_connection: 256,
            read_timeout: crate::protocol::DEFAULT_READ_TIMEOUT,
            stall_timeout: crate::protocol::DEFAULT_STALL_TIMEOUT,
            inbound_budget: crate::protocol::DEFAULT_INBOUND_BUDGET,
            max_unfinished_per_client: 1_000_000,
            max_queued_bytes_per_client: 1 << 30,
            max_gossip: 64 << 10,
            max_strikes: 20,
            cut_off_for: Duration::from_secs(600),
        }
    }
}

/// Strikes per peer: what no honest node sends adds up, fades with time,
/// and cuts the peer off past a limit. Pure: the caller gives the time.
#[derive(Debug, Default)]
pub struct Strikes {
    /// Per peer: strikes and when they were last faded.
    counts: std::collections::HashMap<PeerId, (u32, Duration)>,
    /// Cut-off peers and until when.
    cut: std::collections::HashMap<PeerId, Duration>,
}

/// How long one strike takes to fade.
const STRIKE_FADES: Duration = Duration::from_secs(10);

impl Strikes {
    /// Adds `n` strikes against `peer` at `now`; true when this cuts the
    /// peer off (only the first time).
    pub fn add(&mut self, peer: PeerId, n: u32, now: Duration, limits: &Limits) -> bool {
        if self.is_cut(&peer, now) {
            return false;
        }
        let (count, at) = self.counts.entry(peer).or_insert((0, now));
        let faded = (now.saturating_sub(*at).as_millis() / STRIKE_FADES.as_millis()) as u32;
        if faded > 0 {
            *count = count.saturating_sub(faded);
            *at = now;
        }
        *count = count.saturating_add(n);
        if *count < limits.max_strikes {
            return false;
        }
        self.counts.remove(&peer);
        self.cut.insert(peer, now + limits.cut_off_for);
        true
    }

    /// True while `peer` is cut off.
    pub fn is_cut(&self, peer: &PeerId, now: Duration) -> bool {
        self.cut.get(peer).is_some_and(|&until| now < until)
    }

    /// Forgets what has faded by `now`; returns the peers whose cut-off
    /// ended, to let in again.
    pub fn expire(&mut self, now: Duration) -> Vec<PeerId> {
        self.counts.retain(|_, (count, at)| {
            let faded = (now.saturating_sub(*at).as_millis() / STRIKE_FADES.as_millis()) as u32;
            faded < *count
        });
        let ended: Vec<PeerId> = self
            .cut
            .iter()
            .filter(|(_, &until)| now >= until)
            .map(|(p, _)| *p)
            .collect();
        for p in &ended {
            self.cut.remove(p);
        }
        ended
    }

    /// Peers being counted or cut off (for bounds checks).
    pub fn len(&self) -> usize {
        self.counts.len() + self.cut.len()
    }

    /// True when nobody is counted or cut off.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        PeerId::random()
    }

    #[test]
    fn lists_allow_what_they_name_and_nothing_else() {
        let (a, b) = (peer(), peer());
        let mut lists = AllowLists::default();
        assert!(lists.is_open());
        assert!(lists.allows(Right::Client, &a));
        lists.clients = Some([a].into());
        assert!(!lists.is_open());
        assert!(lists.allows(Right::Client, &a));
        assert!(lists.allows(Right::Admin, &b), "other rights stay open");
        let refusal = lists.check(Right::Client, &b).unwrap_err();
        assert!(
            refusal.contains(&b.to_string()) && refusal.contains("--allow-clients"),
            "{refusal}"
        );
    }

    #[test]
    fn peer_lists_parse_with_comments_and_name_bad_lines() {
        let (a, b) = (peer(), peer());
        let text = format!("# voters\n{a}\n\n  {b}  # the spare\n");
        assert_eq!(parse_peer_list(&text).unwrap(), [a, b].into());
        let err = parse_peer_list(&format!("{a}\nnot-a-peer\n")).unwrap_err();
        assert!(err.contains("line 2") && err.contains("not-a-peer"), "{err}");
    }

    #[test]
    fn mesh_keys_round_trip_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.key");
        let key = write_psk(&path).unwrap();
        assert_eq!(read_psk(&path).unwrap(), key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(write_psk(&path).is_err(), "never overwrites a key");
        std::fs::write(dir.path().join("bad"), "hello").unwrap();
        let err = read_psk(&dir.path().join("bad")).unwrap_err().to_string();
        assert!(err.contains("not a mesh key") && err.contains("keygen"), "{err}");
    }

    fn outsider<'a>(
        followed: Option<(PeerId, u64)>,
        named: Option<&'a BTreeSet<PeerId>>,
    ) -> ClaimContext<'a> {
        ClaimContext {
            allowed: true,
            same_ledger: true,
            in_configuration: false,
            member: None,
            followed,
            named_voters: named,
            leaderless_for: followed.is_none().then_some(Duration::ZERO),
            fallback: None,
        }
    }

    #[test]
    fn admin_claims_without_the_right_or_for_other_ledgers() {
        let p = peer();
        let mut cx = outsider(None, None);
        cx.allowed = false;
        assert_eq!(judge_admin_claim(p, 5, &cx), Claim::Reject);
        cx.allowed = true;
        cx.same_ledger = false;
        assert_eq!(
            judge_admin_claim(p, 5, &cx),
            Claim::Follow,
            "ledgers that meet decide"
        );
    }

    #[test]
    fn a_member_follows_only_its_replicas_leader_at_its_term() {
        let (leader, other_member, stranger) = (peer(), peer(), peer());
        let view = |claimant_is_member| MemberView {
            leader: Some(leader),
            term: 7,
            claimant_is_member,
        };
        let mut cx = outsider(Some((leader, 7)), None);
        cx.in_configuration = true;
        cx.member = Some(view(true));
        let old: BTreeSet<PeerId> = [other_member].into();
        cx.fallback = Some(&old);
        assert_eq!(
            judge_admin_claim(other_member, 9, &cx),
            Claim::Ignore,
            "members never fall back"
        );
        assert_eq!(judge_admin_claim(leader, 7, &cx), Claim::Follow);
        assert_eq!(
            judge_admin_claim(leader, 8, &cx),
            Claim::Ignore,
            "a term the replica has not seen"
        );
        assert_eq!(
            judge_admin_claim(leader, 6, &cx),
            Claim::Ignore,
            "a replay of an older term"
        );
        assert_eq!(judge_admin_claim(other_member, 9, &cx), Claim::Ignore);
        cx.member = Some(view(false));
        assert_eq!(judge_admin_claim(stranger, u64::MAX, &cx), Claim::Reject);
        cx.member = Some(MemberView {
            leader: None,
            term: 7,
            claimant_is_member: false,
        });
        assert_eq!(
            judge_admin_claim(stranger, 7, &cx),
            Claim::Reject,
            "no leader known is no opening"
        );
        cx.member = Some(MemberView {
            leader: None,
            term: 7,
            claimant_is_member: true,
        });
        assert_eq!(
            judge_admin_claim(other_member, 7, &cx),
            Claim::Follow,
            "the term's one leader"
        );
        assert_eq!(judge_admin_claim(other_member, 8, &cx), Claim::Ignore);
    }

    #[test]
    fn an_outsider_moves_only_to_a_voter_its_admin_named() {
        let (admin, voter, stranger) = (peer(), peer(), peer());
        let named: BTreeSet<PeerId> = [admin, voter].into();
        let cx = outsider(Some((admin, 4)), Some(&named));
        assert_eq!(judge_admin_claim(admin, 4, &cx), Claim::Follow);
        assert_eq!(judge_admin_claim(admin, 3, &cx), Claim::Ignore, "a replay");
        assert_eq!(judge_admin_claim(voter, 5, &cx), Claim::Follow);
        assert_eq!(
            judge_admin_claim(voter, 4, &cx),
            Claim::Ignore,
            "not a newer term"
        );
        assert_eq!(judge_admin_claim(stranger, u64::MAX, &cx), Claim::Ignore);
        // Lost its admin: still only named voters, until the patience ends.
        let mut lost = outsider(None, Some(&named));
        lost.leaderless_for = Some(CLAIM_PATIENCE / 2);
        assert_eq!(judge_admin_claim(stranger, 9, &lost), Claim::Ignore);
        assert_eq!(judge_admin_claim(voter, 9, &lost), Claim::Follow);
        lost.leaderless_for = Some(CLAIM_PATIENCE);
        assert_eq!(judge_admin_claim(stranger, 9, &lost), Claim::Follow);
        // Taken on patience (or another ledger's), then a voter named
        // before comes back: it takes over, whatever the other claimed.
        let mut after = outsider(Some((stranger, u64::MAX)), None);
        after.fallback = Some(&named);
        after.leaderless_for = None;
        assert_eq!(judge_admin_claim(admin, 5, &after), Claim::Follow);
        after.same_ledger = false;
        assert_eq!(judge_admin_claim(voter, 1, &after), Claim::Follow);
        let mut back = outsider(Some((admin, 5)), Some(&named));
        back.fallback = Some(&named);
        assert_eq!(
            judge_admin_claim(voter, 5, &back),
            Claim::Ignore,
            "not while following one of them"
        );
        // Nothing named yet (a node that just started): the first admin.
        assert_eq!(
            judge_admin_claim(stranger, 1, &outsider(None, None)),
            Claim::Follow
        );
    }

    #[test]
    fn strikes_add_up_fade_and_cut_off_once() {
        let limits = Limits {
            max_strikes: 10,
            cut_off_for: Duration::from_secs(60),
            ..Limits::default()
        };
        let (p, q) = (peer(), peer());
        let mut s = Strikes::default();
        let t = Duration::from_secs(100);
        assert!(!s.add(p, 5, t, &limits));
        // 30 s later three strikes have faded: 2 + 5 < 10.
        assert!(!s.add(p, 5, t + Duration::from_secs(30), &limits));
        assert!(s.add(p, 5, t + Duration::from_secs(31), &limits), "7 + 5 >= 10");
        assert!(s.is_cut(&p, t + Duration::from_secs(40)));
        assert!(
            !s.add(p, 50, t + Duration::from_secs(41), &limits),
            "cut off once"
        );
        assert!(!s.is_cut(&q, t));
        assert!(s.expire(t + Duration::from_secs(90)).is_empty());
        assert_eq!(s.expire(t + Duration::from_secs(91)), vec![p]);
        assert!(!s.is_cut(&p, t + Duration::from_secs(92)));
        assert!(s.is_empty());
    }
}
