//! Every region's raft log and hard state, in raft-engine (`<data-dir>/raft-engine`).

use std::path::Path;

use raft::eraftpb::{Entry, HardState};
use raft_engine::{Command, Config, Engine, LogBatch, MessageExt, ReadableSize};

/// The raft-engine key of a region's hard state (term, vote, commit).
const HARD_STATE_KEY: &[u8] = b"hard_state";

/// Errors of the log engine.
#[derive(Debug, thiserror::Error)]
#[error("raft log: {0}")]
pub struct RaftLogError(#[from] raft_engine::Error);

/// How raft-engine finds an entry's index.
#[derive(Clone, Copy)]
pub struct EntryExt;

impl MessageExt for EntryExt {
    type Entry = Entry;

    fn index(e: &Entry) -> u64 {
        e.index
    }
}

/// The raft logs of all regions on this store.
pub struct RaftLog {
    engine: Engine,
}

/// Changes to write together (one fsync for all regions of a round).
#[derive(Default)]
pub struct Batch(LogBatch);

impl Batch {
    /// Appends entries to a region's log; entries at or after the first one's index that were
    /// there before are replaced (raft's log truncation).
    pub fn append(&mut self, region_id: u64, entries: &[Entry]) -> Result<(), RaftLogError> {
        if !entries.is_empty() {
            self.0.add_entries::<EntryExt>(region_id, entries)?;
        }
        Ok(())
    }

    /// Records a region's hard state.
    pub fn hard_state(&mut self, region_id: u64, hs: &HardState) -> Result<(), RaftLogError> {
        self.0.put_message(region_id, HARD_STATE_KEY.to_vec(), hs)?;
        Ok(())
    }

    /// Removes a region's log and hard state (its replica was destroyed).
    pub fn clean(&mut self, region_id: u64) {
        self.0.add_command(region_id, Command::Clean);
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl RaftLog {
    /// Opens (or creates) the log engine under `dir`, sized for small stores: 8 MiB files, and
    /// rewriting starts once 64 MiB are in use.
    pub fn open(dir: &Path) -> Result<RaftLog, RaftLogError> {
        let cfg = Config {
            dir: dir.display().to_string(),
            target_file_size: ReadableSize::mb(8),
            purge_threshold: ReadableSize::mb(64),
            recovery_threads: 1,
            enable_log_recycle: false,
            ..Config::default()
        };
        Ok(RaftLog {
            engine: Engine::open(cfg)?,
        })
    }

    /// Writes `batch`, with fsync when `sync`.
    pub fn write(&self, batch: &mut Batch, sync: bool) -> Result<(), RaftLogError> {
        if !batch.is_empty() {
            self.engine.write(&mut batch.0, sync)?;
        }
        Ok(())
    }

    /// A region's hard state, if it has one.
    pub fn hard_state(&self, region_id: u64) -> Result<Option<HardState>, RaftLogError> {
        Ok(self.engine.get_message(region_id, HARD_STATE_KEY)?)
    }

    /// A region's entries with index greater than `after`.
    pub fn entries_after(&self, region_id: u64, after: u64) -> Result<Vec<Entry>, RaftLogError> {
        let Some(last) = self.engine.last_index(region_id) else {
            return Ok(Vec::new());
        };
        let first = self
            .engine
            .first_index(region_id)
            .unwrap_or(1)
            .max(after + 1);
        let mut out = Vec::new();
        if first <= last {
            self.engine
                .fetch_entries_to::<EntryExt>(region_id, first, last + 1, None, &mut out)?;
        }
        Ok(out)
    }

    /// Drops a region's entries before `index`.
    pub fn compact_to(&self, region_id: u64, index: u64) {
        self.engine.compact_to(region_id, index);
    }

    /// The regions that have a log or hard state.
    pub fn regions(&self) -> Vec<u64> {
        self.engine.raft_groups()
    }

    /// Lets raft-engine delete or rewrite files that hold only compacted entries.
    pub fn purge(&self) -> Result<(), RaftLogError> {
        self.engine.purge_expired_files()?;
        Ok(())
    }
}
