//! The durable ledger: a node's Raft log, hard state and latest snapshot
//! kept in `DIR/ledger.redb` (redb: an embedded, crash-safe key-value
//! store; every write is one transaction, synced before it returns), and
//! the node's identity in `DIR/node.key`.
//!
//! The event loop writes what the log changed ([`LogChanges`]) before it
//! carries out the step behind the change: no Raft message, acknowledgement
//! or award leaves a node before what it depends on is on its disk. On a
//! start with the same directory the node reads its replica back (same
//! Raft id, same ledger) and takes part again as the replica it was.
//!
//! Layout: table `meta` (`format`, `raft_id`, `cluster` as little-endian
//! u64; `hard_state` and `snapshot` as Raft's protobuf messages) and table
//! `entries` (log index → protobuf entry).

use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState, Snapshot};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::consensus::{LogChanges, LogStore};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
/// The layout's version, refused when it is not this one.
const FORMAT: u64 = 1;

/// What can go wrong with a data directory.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The directory or a file in it cannot be created, read or written.
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The store refused (another process holds it, a corrupt file, a full
    /// disk).
    #[error("{path}")]
    Store {
        /// The store's file.
        path: PathBuf,
        /// What redb said.
        #[source]
        source: redb::Error,
    },
    /// What was read back is not a ledger this version can use.
    #[error("{path}: {what}")]
    Invalid {
        /// The store's file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// A replica read back from disk.
#[derive(Debug)]
pub(crate) struct Saved {
    /// The replica's Raft id.
    pub(crate) raft_id: u64,
    /// The ledger's id.
    pub(crate) cluster: u64,
    /// The log.
    pub(crate) store: LogStore,
}

/// An open data directory (see the module documentation).
pub(crate) struct LedgerDisk {
    path: PathBuf,
    db: Database,
    /// The Raft id and ledger id last written.
    identity: Option<(u64, u64)>,
}

impl LedgerDisk {
    /// Opens (creating them when missing, mode 0700) the directory and its
    /// store. Fails when another process has the store open.
    pub(crate) fn open(dir: &Path) -> Result<Self, DiskError> {
        create_private_dir(dir)?;
        let path = dir.join("ledger.redb");
        // A process killed a moment ago may still hold the lock while it
        // exits: wait for it a little.
        let mut tries = 0;
        let db = loop {
            match Database::create(&path) {
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if tries < 30 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                other => break other.map_err(|e| store_err(&path, e))?,
            }
        };
        Ok(LedgerDisk {
            path,
            db,
            identity: None,
        })
    }

    /// The replica kept here, if any. A directory whose replica never
    /// received the ledger (it was still joining) holds none.
    pub(crate) fn load(&mut self) -> Result<Option<Saved>, DiskError> {
        let path = self.path.clone();
        let err = |e: redb::Error| store_err(&path, e);
        let invalid = |what: String| DiskError::Invalid {
            path: path.clone(),
            what,
        };
        let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let meta = match txn.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(err(e.into())),
        };
        let get = |key: &str| -> Result<Option<Vec<u8>>, DiskError> {
            Ok(meta
                .get(key)
                .map_err(|e| err(e.into()))?
                .map(|v| v.value().to_vec()))
        };
        let u64_of = |key: &str| -> Result<Option<u64>, DiskError> {
            match get(key)? {
                None => Ok(None),
                Some(b) => match <[u8; 8]>::try_from(b.as_slice()) {
                    Ok(a) => Ok(Some(u64::from_le_bytes(a))),
                    Err(_) => Err(invalid(format!("`{key}` is not a number"))),
                },
            }
        };
        if let Some(f) = u64_of("format")? {
            if f != FORMAT {
                return Err(invalid(format!("format {f}; this version reads format {FORMAT}")));
            }
        }
        let (Some(raft_id), Some(cluster), Some(snap)) =
            (u64_of("raft_id")?, u64_of("cluster")?, get("snapshot")?)
        else {
            return Ok(None);
        };
        let snapshot = Snapshot::parse_from_bytes(&snap).map_err(|e| invalid(format!("snapshot: {e}")))?;
        if snapshot.get_metadata().index == 0 {
            return Ok(None);
        }
        let hard_state = match get("hard_state")? {
            Some(b) => HardState::parse_from_bytes(&b).map_err(|e| invalid(format!("hard state: {e}")))?,
            None => HardState::default(),
        };
        let mut entries = Vec::new();
        if let Ok(table) = txn.open_table(ENTRIES) {
            for row in table.iter().map_err(|e| err(e.into()))? {
                let (_, v) = row.map_err(|e| err(e.into()))?;
                let e = Entry::parse_from_bytes(v.value()).map_err(|e| invalid(format!("log entry: {e}")))?;
                entries.push(e);
            }
        }
        let store = LogStore::reopened(snapshot, entries, hard_state).map_err(invalid)?;
        self.identity = Some((raft_id, cluster));
        Ok(Some(Saved {
            raft_id,
            cluster,
            store,
        }))
    }

    /// Writes what the log changed, with the replica's Raft id and ledger
    /// id, in one synced transaction. Nothing to write: no transaction.
    pub(crate) fn save(&mut self, raft_id: u64, cluster: u64, changes: &LogChanges) -> Result<(), DiskError> {
        let identity = Some((raft_id, cluster));
        if changes.is_empty() && self.identity == identity {
            return Ok(());
        }
        let path = self.path.clone();
        let err = |e: redb::Error| store_err(&path, e);
        let encode = |m: &dyn protobuf::Message| {
            m.write_to_bytes().map_err(|e| DiskError::Invalid {
                path: path.clone(),
                what: format!("cannot encode: {e}"),
            })
        };
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
            let mut entries = txn.open_table(ENTRIES).map_err(|e| err(e.into()))?;
            let mut put =
                |key: &str, value: &[u8]| meta.insert(key, value).map(|_| ()).map_err(|e| err(e.into()));
            if self.identity != identity {
                put("format", &FORMAT.to_le_bytes())?;
                put("raft_id", &raft_id.to_le_bytes())?;
                put("cluster", &cluster.to_le_bytes())?;
            }
            if let Some(snap) = &changes.snapshot {
                put("snapshot", &encode(snap)?)?;
                let index = snap.get_metadata().index;
                entries
                    .retain_in(..=index, |_, _| false)
                    .map_err(|e| err(e.into()))?;
            }
            if let Some(from) = changes.truncate_from {
                entries
                    .retain_in(from.., |_, _| false)
                    .map_err(|e| err(e.into()))?;
            }
            for e in &changes.entries {
                entries
                    .insert(e.index, encode(e)?.as_slice())
                    .map_err(|e| err(e.into()))?;
            }
            if let Some(hs) = &changes.hard_state {
                put("hard_state", &encode(hs)?)?;
            }
        }
        txn.commit().map_err(|e| err(e.into()))?;
        self.identity = identity;
        Ok(())
    }
}

fn store_err(path: &Path, e: impl Into<redb::Error>) -> DiskError {
    DiskError::Store {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), DiskError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.exists() && !dir.is_dir() {
        return Err(DiskError::Invalid {
            path: dir.to_path_buf(),
            what: "not a directory".into(),
        });
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| DiskError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// The node identity kept in `dir/node.key`, created when missing (see
/// [`load_or_create_key`]), so that a node restarted with the same data
/// directory is the same peer.
pub(crate) fn node_key(dir: &Path) -> Result<libp2p::identity::Keypair, DiskError> {
    create_private_dir(dir)?;
    load_or_create_key(&dir.join("node.key"))
}

/// Reads a node identity file (libp2p's protobuf encoding of a keypair),
/// or creates one with a new ed25519 key (mode 0600, synced) when the file
/// is missing. Fails with [`DiskError::Invalid`] for a file that is not a
/// key, and [`DiskError::Io`] when it cannot be read or created.
pub fn load_or_create_key(path: &Path) -> Result<libp2p::identity::Keypair, DiskError> {
    let io = |source| DiskError::Io {
        path: path.to_path_buf(),
        source,
    };
    let invalid = |what: String| DiskError::Invalid {
        path: path.to_path_buf(),
        what,
    };
    match std::fs::read(path) {
        Ok(bytes) => libp2p::identity::Keypair::from_protobuf_encoding(&bytes).map_err(|e| {
            let hint = if bytes.starts_with(b"/key/swarm/psk") {
                " (this is a mesh key: give it to --psk)"
            } else {
                ""
            };
            invalid(format!("not a taskmesh identity file{hint}: {e}"))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt;
            let key = libp2p::identity::Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| invalid(format!("cannot encode a new key: {e}")))?;
            crate::access::create_parent(path).map_err(io)?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(io)?;
            tracing::info!(path = %path.display(), "created a new identity");
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::{Ledger, LedgerConfig, ReplicaConfig};
    use crate::scheduler::Input;
    use crate::task::Task;
    use std::time::Duration;

    fn durable(id: u64) -> LedgerConfig {
        LedgerConfig {
            replica: ReplicaConfig {
                id,
                durable: true,
                ..ReplicaConfig::default()
            },
            snapshot_every: 4,
            ..LedgerConfig::default()
        }
    }

    fn submit(ledger: &mut Ledger, n: usize, now: Duration) -> Vec<crate::TaskId> {
        let tasks: Vec<Task> = (0..n).map(|i| Task::new(format!("t{i}"), "r", 1)).collect();
        let ids = tasks.iter().map(|t| t.id).collect();
        ledger.handle(Input::Submit { token: 0, tasks }, now).unwrap();
        ids
    }

    /// A lone durable replica founds a ledger, accepts tasks over several
    /// snapshots, and every state written is read back as the same ledger.
    #[test]
    fn a_ledger_read_back_is_the_ledger_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut disk = LedgerDisk::open(dir.path()).unwrap();
        assert!(disk.load().unwrap().is_none(), "a new directory holds no replica");
        let now = Duration::from_secs(1);
        let (mut ledger, _) = Ledger::found(durable(7), b"me".to_vec(), now).unwrap();
        let mut ids = Vec::new();
        for round in 0..10 {
            ids.extend(submit(&mut ledger, 3, now));
            ledger.flush(now);
            disk.save(7, 42, &ledger.take_changes()).unwrap();
            let saved = disk.load().unwrap().expect("a replica");
            assert_eq!((saved.raft_id, saved.cluster), (7, 42));
            let (back, _) = Ledger::reopen(durable(7), saved.store, now).unwrap();
            assert_eq!(back.scheduler().unfinished(), ids.len(), "round {round}");
            for id in &ids {
                assert_eq!(
                    back.scheduler().status(id),
                    ledger.scheduler().status(id),
                    "round {round}"
                );
            }
            assert_eq!(back.members(), ledger.members());
        }
        assert!(ledger.replica().snapshot().0 > 1, "snapshots were taken");
    }

    #[test]
    fn a_second_process_cannot_open_the_same_directory() {
        let dir = tempfile::tempdir().unwrap();
        let _first = LedgerDisk::open(dir.path()).unwrap();
        let second = LedgerDisk::open(dir.path());
        assert!(matches!(second, Err(DiskError::Store { .. })));
    }

    #[test]
    fn the_node_key_stays_the_same_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = node_key(&dir.path().join("d")).unwrap();
        let b = node_key(&dir.path().join("d")).unwrap();
        assert_eq!(a.public(), b.public());
        let mode = std::fs::metadata(dir.path().join("d/node.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(dir.path().join("d/node.key"), b"garbage").unwrap();
        assert!(matches!(
            node_key(&dir.path().join("d")),
            Err(DiskError::Invalid { .. })
        ));
    }
}
