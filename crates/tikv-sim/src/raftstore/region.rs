//! The rules of a region's metadata, as TiKV applies them: PD's conf changes, splits, the
//! checks of a client request (TiKV's order of region errors) and the raft configuration that
//! a region's peers stand for. Pure functions: the raftstore calls them.

use pdclient::proto::eraftpb::ConfChangeType;
use pdclient::proto::metapb::{self, PeerRole};
use pdclient::proto::pdpb;
use raft::eraftpb::{
    ConfChangeSingle, ConfChangeTransition, ConfChangeType as RaftChange, ConfChangeV2, ConfState,
};

use crate::proto::errorpb;

/// A region's (conf_ver, version).
pub fn epoch(r: &metapb::Region) -> (u64, u64) {
    r.region_epoch
        .map(|e| (e.conf_ver, e.version))
        .unwrap_or((0, 0))
}

/// Sets a region's epoch.
pub fn set_epoch(r: &mut metapb::Region, conf_ver: u64, version: u64) {
    r.region_epoch = Some(metapb::RegionEpoch { conf_ver, version });
}

/// The region's peer on `store_id`.
pub fn peer_on(r: &metapb::Region, store_id: u64) -> Option<&metapb::Peer> {
    r.peers.iter().find(|p| p.store_id == store_id)
}

/// Whether the region is in a joint configuration.
pub fn in_joint(r: &metapb::Region) -> bool {
    r.peers
        .iter()
        .any(|p| matches!(p.role(), PeerRole::IncomingVoter | PeerRole::DemotingVoter))
}

/// Applies PD's `ChangePeer`/`ChangePeerV2` to a region the way TiKV does. `Ok(None)` means the
/// change is already in place (PD repeats commands until it sees them applied).
pub fn apply_conf_change(
    region: &metapb::Region,
    changes: &[pdpb::ChangePeer],
    v2: bool,
    leader_store: u64,
) -> Result<Option<metapb::Region>, String> {
    let joint = in_joint(region);
    let (conf_ver, version) = epoch(region);
    if v2 && changes.is_empty() {
        if !joint {
            return Ok(None);
        }
        let mut r = region.clone();
        if peer_on(&r, leader_store).is_some_and(|p| p.role() == PeerRole::DemotingVoter) {
            return Err("cannot leave joint state while demoting the leader".into());
        }
        for p in &mut r.peers {
            match p.role() {
                PeerRole::IncomingVoter => p.set_role(PeerRole::Voter),
                PeerRole::DemotingVoter => p.set_role(PeerRole::Learner),
                _ => {}
            }
        }
        set_epoch(&mut r, conf_ver + 1, version);
        return Ok(Some(r));
    }
    if changes.len() == 1 {
        if joint {
            return Err("region is in joint state".into());
        }
        return simple_change(region, &changes[0], leader_store);
    }
    if !v2 {
        return Err("ChangePeer carries exactly one change".into());
    }
    if joint {
        return Err("region is already in joint state".into());
    }
    let mut r = region.clone();
    for change in changes {
        let target = change.peer.ok_or("change without peer")?;
        let existing = r.peers.iter().position(|p| p.store_id == target.store_id);
        if let Some(i) = existing
            && r.peers[i].id != target.id
        {
            return Err(format!(
                "store {} already has peer {}",
                target.store_id, r.peers[i].id
            ));
        }
        match (change.change_type(), existing) {
            (ConfChangeType::AddNode, Some(i)) => match r.peers[i].role() {
                PeerRole::Learner => r.peers[i].set_role(PeerRole::IncomingVoter),
                role => return Err(format!("cannot promote a {}", role.as_str_name())),
            },
            (ConfChangeType::AddNode, None) => r.peers.push(metapb::Peer {
                role: PeerRole::IncomingVoter as i32,
                ..target
            }),
            (ConfChangeType::AddLearnerNode, Some(i)) => match r.peers[i].role() {
                PeerRole::Voter => r.peers[i].set_role(PeerRole::DemotingVoter),
                role => return Err(format!("cannot demote a {}", role.as_str_name())),
            },
            (ConfChangeType::AddLearnerNode, None) => r.peers.push(metapb::Peer {
                role: PeerRole::Learner as i32,
                ..target
            }),
            (ConfChangeType::RemoveNode, Some(i)) => match r.peers[i].role() {
                PeerRole::Learner => {
                    r.peers.remove(i);
                }
                _ => return Err("cannot remove a voter directly in joint state".into()),
            },
            (ConfChangeType::RemoveNode, None) => {}
        }
    }
    set_epoch(&mut r, conf_ver + changes.len() as u64, version);
    Ok(Some(r))
}

fn simple_change(
    region: &metapb::Region,
    change: &pdpb::ChangePeer,
    leader_store: u64,
) -> Result<Option<metapb::Region>, String> {
    let target = change.peer.ok_or("change without peer")?;
    let (conf_ver, version) = epoch(region);
    let mut r = region.clone();
    let existing = r.peers.iter().position(|p| p.store_id == target.store_id);
    if let Some(i) = existing
        && r.peers[i].id != target.id
    {
        return Err(format!(
            "store {} already has peer {}",
            target.store_id, r.peers[i].id
        ));
    }
    match (change.change_type(), existing) {
        (ConfChangeType::AddNode, Some(i)) => match r.peers[i].role() {
            PeerRole::Voter => return Ok(None),
            _ => r.peers[i].set_role(PeerRole::Voter),
        },
        (ConfChangeType::AddNode, None) => r.peers.push(metapb::Peer {
            role: PeerRole::Voter as i32,
            ..target
        }),
        (ConfChangeType::AddLearnerNode, Some(i)) => match r.peers[i].role() {
            PeerRole::Learner => return Ok(None),
            _ if target.store_id == leader_store => return Err("cannot demote the leader".into()),
            _ => r.peers[i].set_role(PeerRole::Learner),
        },
        (ConfChangeType::AddLearnerNode, None) => r.peers.push(metapb::Peer {
            role: PeerRole::Learner as i32,
            ..target
        }),
        (ConfChangeType::RemoveNode, None) => return Ok(None),
        (ConfChangeType::RemoveNode, Some(_)) if target.store_id == leader_store => {
            return Err("cannot remove the leader".into());
        }
        (ConfChangeType::RemoveNode, Some(i)) => {
            r.peers.remove(i);
        }
    }
    set_epoch(&mut r, conf_ver + 1, version);
    Ok(Some(r))
}

/// Splits `region` at `keys` the way TiKV's batch split does with `right_derive`: the new IDs
/// take the left parts, the original ID keeps the rightmost part, and every resulting region gets
/// the version bumped by the number of new regions. `keys` must be sorted and strictly inside the
/// region, one per entry of `ids`.
pub fn split_region(
    region: &metapb::Region,
    ids: &[pdpb::SplitId],
    keys: &[Vec<u8>],
) -> Result<Vec<metapb::Region>, String> {
    if ids.len() != keys.len() {
        return Err(format!("{} split ids for {} keys", ids.len(), keys.len()));
    }
    let inside =
        |k: &Vec<u8>| *k > region.start_key && (region.end_key.is_empty() || *k < region.end_key);
    if !keys.iter().all(inside) || !keys.windows(2).all(|w| w[0] < w[1]) {
        return Err("split keys must be sorted and inside the region".into());
    }
    let (conf_ver, version) = epoch(region);
    let new_version = version + ids.len() as u64;
    let mut out = Vec::with_capacity(ids.len() + 1);
    let mut start = region.start_key.clone();
    for (id, end) in ids.iter().zip(keys) {
        if id.new_peer_ids.len() != region.peers.len() {
            return Err(format!(
                "split id {} has {} peer ids for {} peers",
                id.new_region_id,
                id.new_peer_ids.len(),
                region.peers.len()
            ));
        }
        let peers = region
            .peers
            .iter()
            .zip(&id.new_peer_ids)
            .map(|(p, &new_id)| metapb::Peer { id: new_id, ..*p })
            .collect();
        let mut r = metapb::Region {
            id: id.new_region_id,
            start_key: start,
            end_key: end.clone(),
            region_epoch: None,
            peers,
        };
        set_epoch(&mut r, conf_ver, new_version);
        out.push(r);
        start = end.clone();
    }
    let mut last = region.clone();
    last.start_key = start;
    set_epoch(&mut last, conf_ver, new_version);
    out.push(last);
    Ok(out)
}

/// The keys that split the bootstrap region (all keys) into `n` regions.
pub fn initial_split_keys(n: u32) -> Vec<Vec<u8>> {
    (1..n).map(|i| format!("sim{i:06}").into_bytes()).collect()
}

/// Some key strictly between `start` and `end` (empty `end`: unbounded), for PD's split
/// policies that leave the key to TiKV. TiKV would pick the middle of the data; there is none.
pub fn key_between(start: &[u8], end: &[u8]) -> Option<Vec<u8>> {
    let mut k = start.to_vec();
    if end.is_empty() || !end.starts_with(start) {
        // start ++ [0xff] sorts after start and, if end diverges from start, before end.
        k.push(0xff);
        return (end.is_empty() || k.as_slice() < end).then_some(k);
    }
    // end = start ++ rest: walk down rest's leading zero bytes, then go just below.
    for &b in &end[start.len()..] {
        if b > 0 {
            k.push(b - 1);
            k.push(0xff);
            return Some(k);
        }
        k.push(0);
    }
    None
}

/// Whether `key` lies in the region's range `[start_key, end_key)`.
pub fn contains(region: &metapb::Region, key: &[u8]) -> bool {
    key >= region.start_key.as_slice()
        && (region.end_key.is_empty() || key < region.end_key.as_slice())
}

/// Whether `key` lies in `[start_key, end_key]`: an exclusive bound a request may name (the end
/// of a delete-range, the upper bound of a reverse scan). An empty key here means "no bound",
/// which only a region reaching the end of the key space contains.
pub fn contains_bound(region: &metapb::Region, key: &[u8]) -> bool {
    if key.is_empty() {
        return region.end_key.is_empty();
    }
    key >= region.start_key.as_slice()
        && (region.end_key.is_empty() || key <= region.end_key.as_slice())
}

/// Whether two ranges overlap (empty end: unbounded).
pub fn overlaps(a_start: &[u8], a_end: &[u8], b_start: &[u8], b_end: &[u8]) -> bool {
    (b_end.is_empty() || a_start < b_end) && (a_end.is_empty() || b_start < a_end)
}

/// The raft configuration a region's peers stand for (raft-rs' ConfState), joint halves
/// included, so a peer created from a split or a snapshot starts with the right voters.
pub fn conf_state(region: &metapb::Region) -> ConfState {
    let mut cs = ConfState::default();
    let joint = in_joint(region);
    for p in &region.peers {
        match p.role() {
            PeerRole::Voter => {
                cs.voters.push(p.id);
                if joint {
                    cs.voters_outgoing.push(p.id);
                }
            }
            PeerRole::IncomingVoter => cs.voters.push(p.id),
            PeerRole::DemotingVoter => {
                cs.voters_outgoing.push(p.id);
                cs.learners_next.push(p.id);
            }
            PeerRole::Learner => cs.learners.push(p.id),
        }
    }
    cs
}

/// The raft conf change for PD's change: one change is a simple change, several enter a joint
/// configuration that PD leaves explicitly with an empty `ChangePeerV2`, as in TiKV.
pub fn raft_conf_change(changes: &[pdpb::ChangePeer]) -> ConfChangeV2 {
    let mut cc = ConfChangeV2::default();
    for c in changes {
        cc.changes.push(ConfChangeSingle {
            node_id: c.peer.map(|p| p.id).unwrap_or_default(),
            change_type: match c.change_type() {
                ConfChangeType::AddNode => RaftChange::AddNode,
                ConfChangeType::RemoveNode => RaftChange::RemoveNode,
                ConfChangeType::AddLearnerNode => RaftChange::AddLearnerNode,
            },
            ..Default::default()
        });
    }
    if changes.len() > 1 {
        cc.transition = ConfChangeTransition::Explicit;
    }
    cc
}

// ---- TiKV's region errors ----------------------------------------------------------------------

/// A region error as returned to clients (boxed: the message is large and errors are rare).
pub type RegionError = Box<errorpb::Error>;

/// `NotLeader`, with the leader if this store knows it.
pub fn not_leader(region_id: u64, leader: Option<metapb::Peer>) -> RegionError {
    Box::new(errorpb::Error {
        message: format!("peer is not leader for region {region_id}"),
        not_leader: Some(errorpb::NotLeader { region_id, leader }),
        ..Default::default()
    })
}

/// `StoreNotMatch`: the request was meant for another store.
pub fn store_not_match(request_store_id: u64, actual_store_id: u64) -> RegionError {
    Box::new(errorpb::Error {
        message: format!(
            "store not match: request for store {request_store_id}, this is store {actual_store_id}"
        ),
        store_not_match: Some(errorpb::StoreNotMatch {
            request_store_id,
            actual_store_id,
        }),
        ..Default::default()
    })
}

/// `RegionNotFound`.
pub fn region_not_found(region_id: u64) -> RegionError {
    Box::new(errorpb::Error {
        message: format!("region {region_id} not found"),
        region_not_found: Some(errorpb::RegionNotFound { region_id }),
        ..Default::default()
    })
}

/// `KeyNotInRegion`.
pub fn key_not_in_region(key: &[u8], region: &metapb::Region) -> RegionError {
    Box::new(errorpb::Error {
        message: format!("key is not in region {}", region.id),
        key_not_in_region: Some(errorpb::KeyNotInRegion {
            key: key.to_vec(),
            region_id: region.id,
            start_key: region.start_key.clone(),
            end_key: region.end_key.clone(),
        }),
        ..Default::default()
    })
}

/// `EpochNotMatch` with the regions as they are now.
pub fn epoch_not_match(current_regions: Vec<metapb::Region>) -> RegionError {
    Box::new(errorpb::Error {
        message: "epoch not match".into(),
        epoch_not_match: Some(errorpb::EpochNotMatch { current_regions }),
        ..Default::default()
    })
}

/// `StaleCommand`: the command's outcome is unknown (leadership changed while it was pending).
pub fn stale_command() -> RegionError {
    Box::new(errorpb::Error {
        message: "stale command".into(),
        stale_command: Some(errorpb::StaleCommand {}),
        ..Default::default()
    })
}

/// `ServerIsBusy`.
pub fn server_is_busy(reason: &str) -> RegionError {
    Box::new(errorpb::Error {
        message: format!("server is busy: {reason}"),
        server_is_busy: Some(errorpb::ServerIsBusy {
            reason: reason.to_string(),
            backoff_ms: 0,
        }),
        ..Default::default()
    })
}

/// `RaftEntryTooLarge`.
pub fn entry_too_large(region_id: u64, entry_size: u64) -> RegionError {
    Box::new(errorpb::Error {
        message: format!("raft entry of {entry_size} bytes is too large"),
        raft_entry_too_large: Some(errorpb::RaftEntryTooLarge {
            region_id,
            entry_size,
        }),
        ..Default::default()
    })
}

/// The peer ID in the request is not this store's peer of the region.
pub fn mismatch_peer_id(request: u64, actual: u64) -> RegionError {
    Box::new(errorpb::Error {
        message: format!("mismatch peer id {request} != {actual}"),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64, store_id: u64, role: PeerRole) -> metapb::Peer {
        metapb::Peer {
            id,
            store_id,
            role: role as i32,
            is_witness: false,
        }
    }

    fn change(kind: ConfChangeType, p: metapb::Peer) -> pdpb::ChangePeer {
        pdpb::ChangePeer {
            peer: Some(p),
            change_type: kind as i32,
        }
    }

    fn region(id: u64, conf_ver: u64, peers: Vec<metapb::Peer>) -> metapb::Region {
        metapb::Region {
            id,
            start_key: vec![],
            end_key: vec![],
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver,
                version: 1,
            }),
            peers,
        }
    }

    #[test]
    fn conf_states_follow_roles_and_bounds_are_checked() {
        let r = region(
            1,
            5,
            vec![
                peer(11, 1, PeerRole::Voter),
                peer(12, 2, PeerRole::IncomingVoter),
                peer(13, 3, PeerRole::DemotingVoter),
                peer(14, 4, PeerRole::Learner),
            ],
        );
        let cs = conf_state(&r);
        assert_eq!(cs.voters, [11, 12]);
        assert_eq!(cs.voters_outgoing, [11, 13]);
        assert_eq!(cs.learners, [14]);
        assert_eq!(cs.learners_next, [13]);
        let mut r = region(1, 1, vec![]);
        r.start_key = b"b".to_vec();
        r.end_key = b"d".to_vec();
        assert!(contains(&r, b"b") && contains(&r, b"c") && !contains(&r, b"d"));
        assert!(contains_bound(&r, b"d") && !contains_bound(&r, b"") && !contains_bound(&r, b"a"));
        assert!(overlaps(b"a", b"c", b"b", b"") && !overlaps(b"a", b"b", b"b", b"c"));
        let two = [
            change(ConfChangeType::AddNode, peer(13, 3, PeerRole::Voter)),
            change(
                ConfChangeType::AddLearnerNode,
                peer(11, 1, PeerRole::Learner),
            ),
        ];
        assert_eq!(
            raft_conf_change(&two).transition,
            ConfChangeTransition::Explicit
        );
        assert_eq!(
            raft_conf_change(&two[..1]).transition,
            ConfChangeTransition::Auto
        );
        assert!(raft_conf_change(&[]).changes.is_empty());
    }

    #[test]
    fn conf_change_rules() {
        let r = region(
            1,
            5,
            vec![
                peer(11, 1, PeerRole::Voter),
                peer(12, 2, PeerRole::Voter),
                peer(13, 3, PeerRole::Learner),
            ],
        );
        let remove_leader = [change(
            ConfChangeType::RemoveNode,
            peer(11, 1, PeerRole::Voter),
        )];
        assert!(apply_conf_change(&r, &remove_leader, false, 1).is_err());
        let demote_leader = [change(
            ConfChangeType::AddLearnerNode,
            peer(11, 1, PeerRole::Learner),
        )];
        assert!(apply_conf_change(&r, &demote_leader, false, 1).is_err());
        let other_id = [change(
            ConfChangeType::AddNode,
            peer(99, 3, PeerRole::Voter),
        )];
        assert!(apply_conf_change(&r, &other_id, false, 1).is_err());
        let dup = [change(
            ConfChangeType::AddNode,
            peer(12, 2, PeerRole::Voter),
        )];
        assert_eq!(apply_conf_change(&r, &dup, true, 1).unwrap(), None);
        assert_eq!(
            apply_conf_change(&r, &[], true, 1).unwrap(),
            None,
            "leave joint when not joint"
        );
        let two = [
            change(ConfChangeType::AddNode, peer(13, 3, PeerRole::Voter)),
            change(
                ConfChangeType::AddLearnerNode,
                peer(11, 1, PeerRole::Learner),
            ),
        ];
        assert!(
            apply_conf_change(&r, &two, false, 1).is_err(),
            "ChangePeer has one change"
        );
        let joint = apply_conf_change(&r, &two, true, 1).unwrap().unwrap();
        assert_eq!(epoch(&joint).0, 7);
        assert!(
            apply_conf_change(&joint, &[], true, 1).is_err(),
            "the leader cannot leave joint demoted"
        );
        let left = apply_conf_change(&joint, &[], true, 2).unwrap().unwrap();
        assert_eq!(left.peers[0].role(), PeerRole::Learner);
        assert_eq!(left.peers[2].role(), PeerRole::Voter);
        let remove_voter_in_joint = [
            change(ConfChangeType::RemoveNode, peer(12, 2, PeerRole::Voter)),
            change(ConfChangeType::AddNode, peer(14, 4, PeerRole::Voter)),
        ];
        assert!(apply_conf_change(&r, &remove_voter_in_joint, true, 1).is_err());
    }

    #[test]
    fn split_and_key_helpers() {
        assert_eq!(key_between(b"", b""), Some(vec![0xff]));
        assert_eq!(key_between(b"a", b"b"), Some(b"a\xff".to_vec()));
        assert_eq!(key_between(b"a", b"ab"), Some(b"a\x61\xff".to_vec()));
        assert_eq!(key_between(b"a", b"a\x00"), None);
        let k = key_between(b"a", b"a\x00\x05").unwrap();
        assert!(k.as_slice() > b"a".as_slice() && k.as_slice() < b"a\x00\x05".as_slice());
        let r = region(1, 1, vec![peer(11, 1, PeerRole::Voter)]);
        let ids = [pdpb::SplitId {
            new_region_id: 2,
            new_peer_ids: vec![21],
        }];
        assert!(
            split_region(&r, &ids, &[b"".to_vec()]).is_err(),
            "key must be inside"
        );
        assert!(split_region(&r, &ids, &[]).is_err(), "one key per id");
        let parts = split_region(&r, &ids, &[b"m".to_vec()]).unwrap();
        assert_eq!(
            (parts[0].id, parts[0].end_key.as_slice()),
            (2, b"m".as_slice())
        );
        assert_eq!(
            (parts[1].id, parts[1].start_key.as_slice()),
            (1, b"m".as_slice())
        );
        assert_eq!(parts[0].peers[0].id, 21);
    }
}
