//! Reasons of the Kubernetes Events the controllers publish (`kubectl get events`): one per
//! user-visible step. Defined once here, like the condition reasons.

/// Instance: its pod was created.
pub const POD_CREATED: &str = "PodCreated";
/// Instance: its pod was deleted to restart it (new revision) or stop it (suspend).
pub const POD_DELETED: &str = "PodDeleted";
/// Instance: its container cannot run (image, version, command): the kubelet's reason follows.
pub const POD_CANNOT_RUN: &str = "PodCannotRun";
/// Instance: its config cannot be used.
pub const INVALID_CONFIG: &str = "InvalidConfig";
/// Instance: its spec cannot give a pod.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// A TLS Secret (an instance's certificate, the operator's client certificate) is missing or
/// cannot be used; the note names it and what is wrong.
pub const INVALID_TLS_SECRET: &str = "InvalidTLSSecret";
/// Instance or group: the Cluster it refers to does not exist.
pub const CLUSTER_NOT_FOUND: &str = "ClusterNotFound";

/// TiKV: its leaders are being moved away before a restart.
pub const EVICTING_LEADERS: &str = "EvictingLeaders";
/// TiKV: no leader is left; the restart goes ahead.
pub const LEADERS_EVICTED: &str = "LeadersEvicted";
/// TiKV: the eviction timeout passed with leaders left; the restart goes ahead anyway.
pub const LEADER_EVICTION_TIMEOUT: &str = "LeaderEvictionTimeout";
/// TiKV: the cluster suspends and no store is left to take the leaders.
pub const STOPPING_WITH_LEADERS: &str = "StoppingWithLeaders";
/// TiKV: the restarted store is back; its evict-leader entry was removed.
pub const LEADER_EVICTION_ENDED: &str = "LeaderEvictionEnded";
/// TiKV: PD moved the restarted store's share of leaders back to it.
pub const LEADERS_TRANSFERRED_BACK: &str = "LeadersTransferredBack";
/// TiKV: the leader transfer-back timeout passed first; the rollout goes on.
pub const LEADER_TRANSFER_BACK_TIMEOUT: &str = "LeaderTransferBackTimeout";
/// TiKV: PD was asked to remove the store.
pub const STORE_REMOVING: &str = "StoreRemoving";
/// TiKV: PD refused to remove the store (its message follows).
pub const STORE_REMOVAL_REFUSED: &str = "StoreRemovalRefused";
/// TiKV: the removal was cancelled; the store is Up again.
pub const STORE_REMOVAL_CANCELLED: &str = "StoreRemovalCancelled";

/// PD: leadership is being handed to another member.
pub const TRANSFERRING_LEADER: &str = "TransferringLeader";
/// PD: the member's restart would lose PD's quorum; it waits.
pub const RESTART_BLOCKED: &str = "RestartBlocked";
/// PD: the member was removed from PD.
pub const MEMBER_REMOVED: &str = "MemberRemoved";
/// PD: removing the member now would lose PD's quorum; it waits.
pub const MEMBER_REMOVAL_BLOCKED: &str = "MemberRemovalBlocked";

/// Group: an instance was created.
pub const INSTANCE_CREATED: &str = "InstanceCreated";
/// Group: an instance was given the new revision.
pub const INSTANCE_UPDATING: &str = "InstanceUpdating";
/// Group: an instance was deleted.
pub const INSTANCE_DELETED: &str = "InstanceDeleted";
/// Group: a store was taken offline (two-step scale-in).
pub const SCALE_IN_STARTED: &str = "ScaleInStarted";
/// Group: taking a store offline was cancelled.
pub const SCALE_IN_CANCELLED: &str = "ScaleInCancelled";
/// Group: a store Down for longer than the failover period got a replacement.
pub const FAILOVER_REPLACEMENT: &str = "FailoverReplacement";
/// Group: a replacement whose failed store is gone took its place.
pub const FAILOVER_REPLACEMENT_ADOPTED: &str = "FailoverReplacementAdopted";
/// TiKV group: a scale to 0 that would take every store of the cluster offline was refused.
pub const WOULD_REMOVE_ALL_STORES: &str = "WouldRemoveAllStores";
/// PD group: the deletion of the only PD group of a live Cluster was refused.
pub const DELETION_REFUSED: &str = "DeletionRefused";
/// Group: TiKV waits for PD's rollout.
pub const WAITING_FOR_PD: &str = "WaitingForPD";
/// Group: ZoneByZone is not safe; stores restart one at a time.
pub const ZONE_BY_ZONE_UNSAFE: &str = "ZoneByZoneUnsafe";

/// Cluster: it is being deleted, and its groups with it.
pub const DELETING_GROUPS: &str = "DeletingGroups";
