//! A replica's raft log as raft-rs sees it: the entries since the last checkpoint in memory
//! (they are also in raft-engine, written before raft hears they are stable), and snapshots
//! made on demand from the store's map at the applied index.

use std::cell::RefCell;
use std::rc::Rc;

use pdclient::proto::metapb;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use crate::engine::checkpoint::{self, Meta, RegionState};
use crate::engine::kv::Kv;
use crate::raftstore::region;

/// The raft log and the applied state of one replica.
pub struct PeerStorage {
    /// Term, vote and commit.
    pub hard_state: HardState,
    /// Voters and learners as of the applied index.
    pub conf_state: ConfState,
    /// The log before `trunc_index + 1` is gone (in a checkpoint or snapshot).
    trunc_index: u64,
    trunc_term: u64,
    entries: Vec<Entry>,
    /// The region as of `applied_index`, and what a snapshot is made from.
    pub region: metapb::Region,
    /// The last applied entry.
    pub applied_index: u64,
    /// Its term.
    pub applied_term: u64,
    kv: Rc<RefCell<Kv>>,
}

impl PeerStorage {
    /// A replica's log that starts after `(index, term)` (a checkpoint, a split's initial
    /// state, or 0 for a replica that waits for its first snapshot).
    pub fn new(
        region: metapb::Region,
        hard_state: HardState,
        index: u64,
        term: u64,
        kv: Rc<RefCell<Kv>>,
    ) -> PeerStorage {
        PeerStorage {
            hard_state,
            conf_state: region::conf_state(&region),
            trunc_index: index,
            trunc_term: term,
            entries: Vec::new(),
            region,
            applied_index: index,
            applied_term: term,
            kv,
        }
    }

    /// The last index in the log (or the truncation point if it is empty).
    pub fn last(&self) -> u64 {
        self.entries.last().map_or(self.trunc_index, |e| e.index)
    }

    /// The truncation point: entries up to it are no longer in the log.
    pub fn truncated_index(&self) -> u64 {
        self.trunc_index
    }

    /// Entries raft asked to persist (already written to raft-engine): later entries with the
    /// same or higher index are replaced, as in raft's log.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let keep = first.index.saturating_sub(self.trunc_index + 1) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
    }

    /// Drops entries up to `index` (they are in a checkpoint).
    pub fn compact_to(&mut self, index: u64) {
        if index <= self.trunc_index || index > self.last() {
            return;
        }
        let term = self.term(index).unwrap_or(self.trunc_term);
        let drop = (index - self.trunc_index) as usize;
        self.entries.drain(..drop);
        self.trunc_index = index;
        self.trunc_term = term;
    }

    /// A snapshot from the leader replaces the log and the applied state.
    pub fn apply_snapshot(
        &mut self,
        meta: &raft::eraftpb::SnapshotMetadata,
        region: metapb::Region,
    ) {
        self.entries.clear();
        self.trunc_index = meta.index;
        self.trunc_term = meta.term;
        self.applied_index = meta.index;
        self.applied_term = meta.term;
        self.conf_state = meta.get_conf_state().clone();
        self.region = region;
        if self.hard_state.commit < meta.index {
            self.hard_state.commit = meta.index;
        }
        if self.hard_state.term < meta.term {
            self.hard_state.term = meta.term;
        }
    }

    /// Entries in memory (for loading a restarted store's log).
    pub fn set_entries(&mut self, entries: Vec<Entry>) {
        self.entries = entries
            .into_iter()
            .filter(|e| e.index > self.trunc_index)
            .collect();
    }

    /// Number of entries and their data bytes since the truncation point.
    pub fn log_size(&self) -> (u64, u64) {
        let bytes = self.entries.iter().map(|e| e.data.len() as u64).sum();
        (self.entries.len() as u64, bytes)
    }

    /// The state a checkpoint records for this replica.
    pub fn region_state(&self, peer_id: u64) -> RegionState {
        RegionState {
            region: Some(self.region.clone()),
            peer_id,
            applied_index: self.applied_index,
            applied_term: self.applied_term,
        }
    }
}

/// The snapshot data of a region: its metadata and its pairs, encoded as a checkpoint.
pub fn snapshot_data(kv: &Kv, state: RegionState) -> Vec<u8> {
    let region = state.region.clone().unwrap_or_default();
    let mut pairs = Vec::new();
    kv.for_each(&region.start_key, &region.end_key, |k, v| {
        pairs.push((k.to_vec(), v.to_vec()))
    });
    let meta = Meta {
        regions: vec![state],
        tombstones: Vec::new(),
    };
    let mut buf = Vec::new();
    // Writing to a Vec cannot fail, and keys and values are far below 4 GiB.
    let _ = checkpoint::encode(
        &mut buf,
        &meta,
        pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
    );
    buf
}

impl Storage for PeerStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.trunc_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let from = (low - self.trunc_index - 1) as usize;
        let to = (high - self.trunc_index - 1) as usize;
        let mut out: Vec<Entry> = self.entries[from..to].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.trunc_index {
            return Ok(self.trunc_term);
        }
        if idx < self.trunc_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        match self.entries.get((idx - self.trunc_index - 1) as usize) {
            Some(e) => Ok(e.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.trunc_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = self.applied_index;
        meta.term = self.applied_term;
        meta.set_conf_state(self.conf_state.clone());
        let data = snapshot_data(&self.kv.borrow(), self.region_state(0));
        snap.data = data.into();
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    #[test]
    fn append_replaces_conflicting_entries_and_compaction_keeps_terms() {
        let kv = Rc::new(RefCell::new(Kv::default()));
        let mut s = PeerStorage::new(metapb::Region::default(), HardState::default(), 5, 5, kv);
        s.append(&[entry(6, 5), entry(7, 5), entry(8, 5)]);
        s.append(&[entry(7, 6)]);
        assert_eq!(s.last(), 7);
        assert_eq!(s.term(7).unwrap(), 6);
        assert_eq!(s.term(5).unwrap(), 5);
        assert!(s.term(4).is_err() && s.term(8).is_err());
        s.compact_to(6);
        assert_eq!(s.first_index().unwrap(), 7);
        assert_eq!(s.term(6).unwrap(), 5);
        let got = s
            .entries(7, 8, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(got, vec![entry(7, 6)]);
        assert!(
            s.entries(6, 8, None, GetEntriesContext::empty(false))
                .is_err()
        );
    }
}
