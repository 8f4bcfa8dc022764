//! The data directory: an exclusive lock, the store's identity ([`StoreFile`]) and where the
//! raftstore keeps its files.
//!
//! ```text
//! <data-dir>/LOCK                   held while the store runs
//! <data-dir>/tikv-sim/store.pb      cluster ID, store ID, a pending bootstrap
//! <data-dir>/tikv-sim/checkpoint    the state machine (see engine::checkpoint)
//! <data-dir>/raft-engine/           raft logs and hard states (raft-engine)
//! ```
//!
//! The identity file is replaced atomically (write a temporary file, fsync, rename it over the
//! old one), so a store killed at any moment restarts with either the old or the new identity.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;

/// The store's identity (`<data-dir>/tikv-sim/store.pb`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoreFile {
    /// The PD cluster this store belongs to.
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    /// The store ID PD allocated.
    #[prost(uint64, tag = "2")]
    pub store_id: u64,
    /// The region this store offered PD in a Bootstrap call that is not known to have been
    /// accepted or refused (0: none). Resolved at the next start, as TiKV's prepare-bootstrap.
    #[prost(uint64, tag = "5")]
    pub prepared_bootstrap_region: u64,
}

/// Data directory errors.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// An I/O operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another process (LOCK is held)")]
    Locked(PathBuf),
    /// The store file is not a valid store file.
    #[error("store file {path} is corrupt: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The decode error.
        #[source]
        source: prost::DecodeError,
    },
}

/// The opened data directory. Holds the lock until dropped.
#[derive(Debug)]
pub struct DataDir {
    dir: PathBuf,
    file: PathBuf,
    _lock: File,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateError {
    let path = path.to_path_buf();
    move |source| StateError::Io { what, path, source }
}

impl DataDir {
    /// Creates the directory if needed and takes its lock, like TiKV's `LOCK` file: two stores
    /// on one directory would corrupt each other.
    pub fn open(data_dir: &Path) -> Result<DataDir, StateError> {
        let dir = data_dir.join("tikv-sim");
        fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
        let lock_path = data_dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("cannot open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StateError::Locked(data_dir.into())),
            Err(fs::TryLockError::Error(e)) => return Err(io("cannot lock", &lock_path)(e)),
        }
        Ok(DataDir {
            file: dir.join("store.pb"),
            dir,
            _lock: lock,
        })
    }

    /// The checkpoint file of the raftstore.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.dir.join("checkpoint")
    }

    /// raft-engine's directory.
    pub fn raft_dir(&self) -> PathBuf {
        self.dir
            .parent()
            .map(|d| d.join("raft-engine"))
            .unwrap_or_else(|| self.dir.join("raft-engine"))
    }

    /// The data directory itself.
    pub fn root(&self) -> &Path {
        self.dir.parent().unwrap_or(&self.dir)
    }

    /// The persisted state, or `None` for a new store.
    pub fn load(&self) -> Result<Option<StoreFile>, StateError> {
        let bytes = match fs::read(&self.file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("cannot read", &self.file)(e)),
        };
        StoreFile::decode(bytes.as_slice())
            .map(Some)
            .map_err(|source| StateError::Corrupt {
                path: self.file.clone(),
                source,
            })
    }

    /// Replaces the persisted state.
    pub fn save(&self, state: &StoreFile) -> Result<(), StateError> {
        let tmp = self.dir.join("store.pb.tmp");
        let mut f = File::create(&tmp).map_err(io("cannot create", &tmp))?;
        f.write_all(&state.encode_to_vec())
            .map_err(io("cannot write", &tmp))?;
        f.sync_all().map_err(io("cannot sync", &tmp))?;
        fs::rename(&tmp, &self.file).map_err(io("cannot rename to", &self.file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_and_lock() {
        let dir = std::env::temp_dir().join(format!("tikv-sim-state-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let d = DataDir::open(&dir).unwrap();
        assert_eq!(d.load().unwrap(), None);
        let state = StoreFile {
            cluster_id: 7,
            store_id: 4,
            ..Default::default()
        };
        d.save(&state).unwrap();
        assert_eq!(d.load().unwrap(), Some(state));
        assert!(matches!(DataDir::open(&dir), Err(StateError::Locked(_))));
        drop(d);
        DataDir::open(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
