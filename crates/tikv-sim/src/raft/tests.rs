//! The replication logic driven by hand: several [`Node`]s exchange messages in memory, with a
//! fake clock, and stores can be cut off.

use super::*;

const T: Duration = Duration::from_secs(1);

fn timing() -> Timing {
    Timing {
        base_tick: Duration::from_millis(100),
        raft_heartbeat: Duration::from_millis(200),
        election_timeout: T,
        pd_heartbeat: Duration::from_secs(60),
        store_heartbeat: Duration::from_secs(1),
        max_peer_down: Duration::from_secs(5),
        max_leader_missing: Duration::from_secs(30),
    }
}

struct Sim {
    nodes: BTreeMap<u64, Node>,
    down: BTreeSet<u64>,
    now: Instant,
}

impl Sim {
    fn new(stores: &[u64]) -> Sim {
        let now = Instant::now();
        let nodes = stores
            .iter()
            .map(|&s| (s, Node::new(1, s, timing(), None, now)))
            .collect();
        Sim {
            nodes,
            down: BTreeSet::new(),
            now,
        }
    }

    fn node(&mut self, s: u64) -> &mut Node {
        self.nodes.get_mut(&s).unwrap()
    }

    /// A store that runs and is not cut off.
    fn up(&self, s: u64) -> bool {
        self.nodes.contains_key(&s) && !self.down.contains(&s)
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// One round of appends from every live store to every live target.
    fn replicate(&mut self) {
        let now = self.now;
        let ids: Vec<u64> = self
            .nodes
            .keys()
            .copied()
            .filter(|s| !self.down.contains(s))
            .collect();
        for from in ids {
            let targets: Vec<u64> = self.nodes[&from]
                .append_targets()
                .into_iter()
                .filter(|s| self.up(*s))
                .collect();
            for to in targets {
                let Some(req) = self.nodes[&from].build_append(to) else {
                    continue;
                };
                let resp = self.node(to).handle_append(&req, now);
                self.node(from).on_append_response(to, &resp, now);
            }
        }
    }

    fn votes(&mut self, reqs: Vec<VoteRequest>) -> Vec<(u64, VoteResponse)> {
        let now = self.now;
        let mut out = Vec::new();
        for r in reqs {
            if !self.up(r.to_store) {
                continue;
            }
            let resp = self.node(r.to_store).handle_vote(&r, now);
            out.push((r.to_store, resp));
        }
        out
    }

    /// Lets every live store run its due elections to the end.
    fn elect(&mut self) {
        let now = self.now;
        let ids: Vec<u64> = self
            .nodes
            .keys()
            .copied()
            .filter(|s| !self.down.contains(s))
            .collect();
        for s in ids {
            let due = self.node(s).due_campaigns(now);
            if due.is_empty() {
                continue;
            }
            let reqs = self.nodes[&s].vote_requests(&due, VoteKind::PreVote);
            let resps = self.votes(reqs);
            let cands = self.node(s).on_pre_votes(&due, &resps);
            let reqs = self.nodes[&s].vote_requests(&cands, VoteKind::Vote);
            let resps = self.votes(reqs);
            self.node(s).on_votes(&cands, &resps, now);
            self.node(s).end_campaigns(&due, now);
        }
    }

    /// Runs the forced campaigns of `store` (after a leader transfer request).
    fn forced(&mut self, store: u64) {
        let now = self.now;
        let regions = self.node(store).start_forced_campaigns();
        let reqs = self.nodes[&store].vote_requests(&regions, VoteKind::Forced);
        let resps = self.votes(reqs);
        self.node(store).on_votes(&regions, &resps, now);
        self.node(store).end_campaigns(&regions, now);
    }

    fn leaders(&self, region_id: u64) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(s, n)| {
                !self.down.contains(s)
                    && n.summary()
                        .iter()
                        .any(|r| r.id == region_id && r.role == "leader")
            })
            .map(|(s, _)| *s)
            .collect()
    }

    fn region(&self, store: u64, region_id: u64) -> Option<RegionSummary> {
        self.nodes[&store]
            .summary()
            .into_iter()
            .find(|r| r.id == region_id)
    }

    /// What PD would get from `store` now.
    fn heartbeats(&mut self, store: u64) -> Vec<pdpb::RegionHeartbeatRequest> {
        let now = self.now;
        self.node(store).force_report();
        self.node(store).region_heartbeats(now)
    }

    /// The PD command for `region_id` with the epoch its leader last reported.
    fn command(&mut self, store: u64, region_id: u64) -> pdpb::RegionHeartbeatResponse {
        let hb = self
            .heartbeats(store)
            .into_iter()
            .find(|h| h.region.as_ref().unwrap().id == region_id);
        let region = hb.expect("leader reports the region").region.unwrap();
        pdpb::RegionHeartbeatResponse {
            region_id,
            region_epoch: region.region_epoch,
            target_peer: peer_on(&region, store).copied(),
            ..Default::default()
        }
    }
}

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

/// Store 1 bootstraps region 100 (peer 101), then PD adds voters on stores 2 and 3.
fn three_replicas() -> Sim {
    let mut sim = Sim::new(&[1, 2, 3]);
    let now = sim.now;
    sim.node(1).add_bootstrap_region(
        region(100, 1, vec![peer(101, 1, PeerRole::Voter)]),
        101,
        now,
    );
    assert!(
        sim.node(1).due_campaigns(now).is_empty(),
        "a single voter elects itself"
    );
    assert_eq!(sim.leaders(100), [1]);
    for (store, pid) in [(2, 102), (3, 103)] {
        let mut cmd = sim.command(1, 100);
        cmd.change_peer = Some(change(
            ConfChangeType::AddLearnerNode,
            peer(pid, store, PeerRole::Learner),
        ));
        assert!(matches!(
            sim.node(1).on_pd_command(&cmd, now),
            Command::Replicate
        ));
        sim.replicate();
        let mut cmd = sim.command(1, 100);
        cmd.change_peer = Some(change(
            ConfChangeType::AddNode,
            peer(pid, store, PeerRole::Voter),
        ));
        assert!(matches!(
            sim.node(1).on_pd_command(&cmd, now),
            Command::Replicate
        ));
        sim.replicate();
    }
    sim
}

#[test]
fn bootstrap_split_and_reports() {
    let mut sim = Sim::new(&[1]);
    let now = sim.now;
    sim.node(1).add_bootstrap_region(
        region(100, 1, vec![peer(101, 1, PeerRole::Voter)]),
        101,
        now,
    );
    sim.node(1).due_campaigns(now);
    // PD must know the region before it is split.
    assert_eq!(sim.node(1).split_candidate(), None);
    assert_eq!(sim.node(1).region_heartbeats(now).len(), 1);
    let whole = sim.node(1).split_candidate().expect("whole-range region");
    let ids: Vec<pdpb::SplitId> = (0..3)
        .map(|i| pdpb::SplitId {
            new_region_id: 200 + i,
            new_peer_ids: vec![300 + i],
        })
        .collect();
    let keys = initial_split_keys(4);
    let regions = sim
        .node(1)
        .apply_split(&whole, &ids, &keys, now)
        .unwrap()
        .unwrap();
    assert_eq!(regions.len(), 4);
    assert_eq!(regions[0].start_key, b"");
    assert_eq!(regions[0].end_key, b"sim000001");
    assert_eq!(
        regions[3].id, 100,
        "the original region keeps the rightmost range"
    );
    assert_eq!(regions[3].start_key, b"sim000003");
    assert!(regions.iter().all(|r| epoch(r) == (1, 4)));
    assert_eq!(sim.node(1).leader_count(), 4);
    assert_eq!(sim.node(1).split_candidate(), None, "never split twice");
    let hbs = sim.heartbeats(1);
    assert_eq!(hbs.len(), 4);
    assert!(
        hbs.iter()
            .all(|h| h.leader.unwrap().store_id == 1 && h.approximate_size == REGION_SIZE)
    );
    // A second split of the same, now stale, region is dropped.
    assert_eq!(
        sim.node(1).apply_split(&whole, &ids, &keys, now).unwrap(),
        None
    );
}

#[test]
fn learners_are_pending_until_their_store_has_the_replica() {
    let mut sim = Sim::new(&[1, 2]);
    let now = sim.now;
    sim.node(1).add_bootstrap_region(
        region(100, 1, vec![peer(101, 1, PeerRole::Voter)]),
        101,
        now,
    );
    sim.node(1).due_campaigns(now);
    let mut cmd = sim.command(1, 100);
    cmd.change_peer_v2 = Some(pdpb::ChangePeerV2 {
        changes: vec![change(
            ConfChangeType::AddLearnerNode,
            peer(102, 2, PeerRole::Learner),
        )],
    });
    assert!(matches!(
        sim.node(1).on_pd_command(&cmd, now),
        Command::Replicate
    ));
    let hb = &sim.heartbeats(1)[0];
    assert_eq!(
        hb.pending_peers.iter().map(|p| p.id).collect::<Vec<_>>(),
        [102]
    );
    sim.replicate();
    assert!(sim.node(2).has_region(100));
    let hb = &sim.heartbeats(1)[0];
    assert!(hb.pending_peers.is_empty());
    assert_eq!(
        hb.region.as_ref().unwrap().region_epoch.unwrap().conf_ver,
        2
    );
    // PD repeats the command until it sees the result: applying it again changes nothing.
    let mut again = sim.command(1, 100);
    again.change_peer = Some(change(
        ConfChangeType::AddLearnerNode,
        peer(102, 2, PeerRole::Learner),
    ));
    assert!(matches!(
        sim.node(1).on_pd_command(&again, now),
        Command::None
    ));
    // A command for an epoch we have moved past is ignored.
    assert!(matches!(
        sim.node(1).on_pd_command(&cmd, now),
        Command::None
    ));
}

#[test]
fn changes_are_reported_only_once_a_quorum_has_them() {
    let mut sim = three_replicas();
    let now = sim.now;
    sim.down.insert(3);
    let mut cmd = sim.command(1, 100);
    cmd.change_peer = Some(change(
        ConfChangeType::AddLearnerNode,
        peer(104, 4, PeerRole::Learner),
    ));
    assert!(matches!(
        sim.node(1).on_pd_command(&cmd, now),
        Command::Replicate
    ));
    assert!(
        sim.heartbeats(1).is_empty(),
        "not committed: only the leader has it"
    );
    sim.replicate();
    let hb = &sim.heartbeats(1)[0];
    assert_eq!(
        epoch(hb.region.as_ref().unwrap()).0,
        6,
        "committed by stores 1 and 2"
    );
}

#[test]
fn joint_consensus_replaces_a_voter() {
    let mut sim = three_replicas();
    sim.nodes
        .insert(4, Node::new(1, 4, timing(), None, sim.now));
    let now = sim.now;
    let mut cmd = sim.command(1, 100);
    cmd.change_peer = Some(change(
        ConfChangeType::AddLearnerNode,
        peer(104, 4, PeerRole::Learner),
    ));
    sim.node(1).on_pd_command(&cmd, now);
    sim.replicate();
    // Enter: promote the learner on 4, demote the voter on 3.
    let mut cmd = sim.command(1, 100);
    cmd.change_peer_v2 = Some(pdpb::ChangePeerV2 {
        changes: vec![
            change(ConfChangeType::AddNode, peer(104, 4, PeerRole::Voter)),
            change(
                ConfChangeType::AddLearnerNode,
                peer(103, 3, PeerRole::Learner),
            ),
        ],
    });
    assert!(matches!(
        sim.node(1).on_pd_command(&cmd, now),
        Command::Replicate
    ));
    sim.replicate();
    let r = sim.region(1, 100).unwrap();
    assert!(r.peers.contains(&(104, 4, "IncomingVoter".into())));
    assert!(r.peers.contains(&(103, 3, "DemotingVoter".into())));
    // Leave.
    let mut cmd = sim.command(1, 100);
    cmd.change_peer_v2 = Some(pdpb::ChangePeerV2 { changes: vec![] });
    assert!(matches!(
        sim.node(1).on_pd_command(&cmd, now),
        Command::Replicate
    ));
    sim.replicate();
    let r = sim.region(2, 100).unwrap();
    assert!(r.peers.contains(&(104, 4, "Voter".into())));
    assert!(r.peers.contains(&(103, 3, "Learner".into())));
    // Remove the learner: store 3 drops its replica and keeps a tombstone.
    let mut cmd = sim.command(1, 100);
    cmd.change_peer = Some(change(
        ConfChangeType::RemoveNode,
        peer(103, 3, PeerRole::Learner),
    ));
    assert!(matches!(
        sim.node(1).on_pd_command(&cmd, now),
        Command::Replicate
    ));
    let stale = sim.nodes[&1].build_append(3).unwrap();
    sim.replicate();
    assert!(!sim.node(3).has_region(100));
    assert!(
        sim.nodes[&1].append_targets().iter().all(|&s| s != 3),
        "removal confirmed"
    );
    // A late append that still lists store 3 does not bring the replica back.
    let mut late = stale.clone();
    let old = region(
        100,
        5,
        vec![peer(101, 1, PeerRole::Voter), peer(103, 3, PeerRole::Voter)],
    );
    late.regions[0].region = Some(old);
    sim.node(3).handle_append(&late, now);
    assert!(!sim.node(3).has_region(100));
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
fn followers_elect_a_new_leader_when_the_leader_dies() {
    let mut sim = three_replicas();
    sim.down.insert(1);
    sim.advance(T / 2);
    sim.elect();
    assert!(
        sim.leaders(100).is_empty(),
        "no election within the timeout"
    );
    sim.advance(2 * T);
    sim.elect();
    let leaders = sim.leaders(100);
    assert_eq!(leaders.len(), 1, "exactly one new leader, got {leaders:?}");
    let new = leaders[0];
    let term = sim.region(new, 100).unwrap().term;
    assert!(term > sim.region(1, 100).unwrap().term);
    sim.replicate();
    let hb = sim.heartbeats(new);
    assert_eq!(hb.len(), 1);
    assert_eq!(hb[0].term, term);
    // The old leader comes back believing it leads; the first exchange makes it follow.
    sim.down.remove(&1);
    assert_eq!(sim.leaders(100).len(), 2);
    sim.replicate();
    assert_eq!(sim.leaders(100), [new]);
    assert_eq!(sim.region(1, 100).unwrap().term, term);
    // Peers of a dead store are reported down after max-peer-down-duration.
    sim.down.insert(1);
    sim.advance(Duration::from_secs(6));
    sim.replicate();
    let hb = sim.heartbeats(new);
    let down: Vec<u64> = hb[0]
        .down_peers
        .iter()
        .map(|d| d.peer.unwrap().store_id)
        .collect();
    assert_eq!(down, [1]);
}

#[test]
fn a_returning_store_cannot_disrupt_a_live_leader() {
    let mut sim = three_replicas();
    let term = sim.region(1, 100).unwrap().term;
    // Store 3 hears nothing for a long time (frozen), while 1 keeps leading 2.
    sim.down.insert(3);
    for _ in 0..10 {
        sim.advance(T / 2);
        sim.replicate();
    }
    sim.down.remove(&3);
    sim.elect();
    assert_eq!(sim.leaders(100), [1]);
    assert_eq!(
        sim.region(2, 100).unwrap().term,
        term,
        "pre-vote kept the term"
    );
    assert_eq!(sim.region(3, 100).unwrap().term, term);
}

#[test]
fn transfer_leader() {
    let mut sim = three_replicas();
    let now = sim.now;
    let mut cmd = sim.command(1, 100);
    cmd.transfer_leader = Some(pdpb::TransferLeader {
        peer: Some(peer(102, 2, PeerRole::Voter)),
        peers: vec![],
    });
    let Command::Transfer(plan) = sim.node(1).on_pd_command(&cmd, now) else {
        panic!("expected a transfer")
    };
    assert_eq!(plan.to_store, 2);
    let resp = sim.node(2).handle_transfer(&plan.request, now);
    assert!(resp.accepted);
    sim.node(1).on_transfer_result(&plan, Some(&resp), now);
    assert_eq!(
        sim.leaders(100),
        [1],
        "the target has to win an election first"
    );
    sim.forced(2);
    assert_eq!(
        sim.leaders(100),
        [2],
        "the old leader stepped down and voted"
    );
    sim.replicate();
    assert_eq!(sim.region(3, 100).unwrap().leader_peer_id, 102);
    assert_eq!(sim.heartbeats(2)[0].leader.unwrap().store_id, 2);
    // A late copy of the same request (the target was frozen meanwhile) cannot make a second
    // leader: the target's campaign is for a term the others have already moved past.
    let term = sim.region(2, 100).unwrap().term;
    let resp = sim.node(3).handle_transfer(&plan.request, now);
    assert!(!resp.accepted, "stale term");
    assert_eq!(resp.term, term);
    // A target that is not a voter is refused.
    let mut cmd = sim.command(2, 100);
    cmd.transfer_leader = Some(pdpb::TransferLeader {
        peer: Some(peer(199, 9, PeerRole::Voter)),
        peers: vec![],
    });
    assert!(matches!(
        sim.node(2).on_pd_command(&cmd, now),
        Command::None
    ));
}

#[test]
fn restarted_store_keeps_its_replicas_as_follower() {
    let sim = three_replicas();
    let file = sim.nodes[&1].to_file();
    let restarted = Node::new(1, 1, timing(), Some(&file), sim.now);
    assert_eq!(restarted.region_count(), 1);
    assert_eq!(restarted.leader_count(), 0);
    assert_eq!(
        restarted.to_file().peers[0].copy.as_ref().unwrap().region,
        sim.nodes[&1].to_file().peers[0]
            .copy
            .as_ref()
            .unwrap()
            .region
    );
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

#[test]
fn a_prepared_bootstrap_survives_a_restart_until_settled() {
    let mut sim = Sim::new(&[1]);
    let now = sim.now;
    sim.node(1).add_bootstrap_region(
        region(100, 1, vec![peer(101, 1, PeerRole::Voter)]),
        101,
        now,
    );
    let file = sim.nodes[&1].to_file();
    assert_eq!(file.prepared_bootstrap_region, 100);
    let mut restarted = Node::new(1, 1, timing(), Some(&file), now);
    assert_eq!(
        restarted.prepared_bootstrap_region().map(|r| r.id),
        Some(100)
    );
    restarted.confirm_bootstrap();
    assert_eq!(restarted.to_file().prepared_bootstrap_region, 0);
    assert!(restarted.has_region(100), "PD took our region: keep it");
    let mut lost = Node::new(1, 1, timing(), Some(&file), now);
    lost.abandon_bootstrap();
    assert!(!lost.has_region(100), "another store won: drop it");
    assert_eq!(lost.prepared_bootstrap_region(), None);
}
