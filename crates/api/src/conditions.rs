//! Condition types and reasons: the vocabulary of `status.conditions`, which users read and the
//! controllers coordinate by. Defined once here; controllers use these constants, never string
//! literals. Each module is one condition type (`TYPE`) with the reasons it can carry.

/// Condition status `True`.
pub const TRUE: &str = "True";
/// Condition status `False`.
pub const FALSE: &str = "False";
/// Condition status `Unknown`.
pub const UNKNOWN: &str = "Unknown";

/// `Ready`. Instance: its pod is ready and PD agrees (member healthy, store Up). Group: every
/// instance is ready at the update revision. Cluster: every group is Ready and PD has a quorum.
/// A pod that cannot run carries the kubelet's own reason (`ErrImagePull`, `CrashLoopBackOff`,
/// ...); a store that is not Up carries `Store<State>` ([`crate::v1alpha1::StoreState`]).
pub mod ready {
    /// The type.
    pub const TYPE: &str = "Ready";
    /// The pod is missing, starting, or fails its readiness probe.
    pub const POD_NOT_READY: &str = "PodNotReady";
    /// PD could not be asked about the instance.
    pub const PD_UNREACHABLE: &str = "PDUnreachable";
    /// PD member: PD does not list it (yet).
    pub const NOT_MEMBER: &str = "NotMember";
    /// PD member: PD's health check fails for it.
    pub const UNHEALTHY: &str = "Unhealthy";
    /// PD member: ready and healthy.
    pub const HEALTHY: &str = "Healthy";
    /// TiKV: the store has not registered with PD (yet).
    pub const STORE_NOT_REGISTERED: &str = "StoreNotRegistered";
    /// TiKV: ready and Up.
    pub const STORE_UP: &str = "StoreUp";
    /// Group and Cluster: all ready.
    pub const ALL_READY: &str = "AllReady";
    /// Group and Cluster: not all ready.
    pub const NOT_ALL_READY: &str = "NotAllReady";
}

/// `Synced`: the controller could apply what the spec asks for. False says what stops it.
pub mod synced {
    /// The type.
    pub const TYPE: &str = "Synced";
    /// Everything applied.
    pub const SYNCED: &str = "Synced";
    /// The Cluster is paused: nothing is changed.
    pub const PAUSED: &str = "Paused";
    /// The Cluster the object refers to does not exist.
    pub const CLUSTER_NOT_FOUND: &str = "ClusterNotFound";
    /// Instance: the Cluster does not report PD's URL yet. TiKV group: PD rolls out first.
    pub const WAITING_FOR_PD: &str = "WaitingForPD";
    /// Instance: the config cannot be used (until the user changes it).
    pub const INVALID_CONFIG: &str = "InvalidConfig";
    /// Instance: the spec cannot give a pod (until the user changes it).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Instance: with TLS on, its certificate Secret is missing or cannot be used (polled: it
    /// changes without an event this controller watches).
    pub const INVALID_TLS_SECRET: &str = "InvalidTLSSecret";
    /// Instance: the Cluster is suspended and the pod is gone.
    pub const SUSPENDED: &str = "Suspended";
    /// TiKV group: scaling to 0 would take the cluster's last stores (and its data) offline;
    /// refused, the stores stay.
    pub const WOULD_REMOVE_ALL_STORES: &str = "WouldRemoveAllStores";
    /// PD group: deleting the only PD group of a live Cluster would remove PD and its data;
    /// refused, the group stays (finalizer) until the Cluster is deleted.
    pub const DELETION_REFUSED: &str = "DeletionRefused";
}

/// `LeadersEvicted` (TiKV): PD's evict-leader scheduler moves the store's leaders away before
/// its pod restarts.
pub mod leaders_evicted {
    /// The type.
    pub const TYPE: &str = "LeadersEvicted";
    /// No eviction is in place (Unknown).
    pub const NOT_EVICTING: &str = "NotEvicting";
    /// Leaders are moving away (False).
    pub const EVICTING: &str = "Evicting";
    /// No leader left (True).
    pub const EVICTED: &str = "Evicted";
    /// Another store has down peers: the restart waits.
    pub const WAITING_FOR_DOWN_PEERS: &str = "WaitingForDownPeers";
    /// Another store has peers still catching up with their leaders: the restart waits.
    pub const WAITING_FOR_PENDING_PEERS: &str = "WaitingForPendingPeers";
}

/// `LeadersTransferredBack` (TiKV): after a restart, PD moves leaders back to the store before
/// the group restarts the next one (bounded by `spec.restart.leaderTransferBackTimeout`).
pub mod leaders_transferred_back {
    /// The type.
    pub const TYPE: &str = "LeadersTransferredBack";
    /// The store is back and waits for its share of leaders (False).
    pub const WAITING: &str = "Waiting";
    /// It holds its share again (True).
    pub const TRANSFERRED_BACK: &str = "TransferredBack";
    /// The timeout passed first (True: the rollout goes on).
    pub const TIMED_OUT: &str = "TimedOut";
    /// The wait is turned off (`0s`) or a new restart began (True).
    pub const NOT_WAITING: &str = "NotWaiting";
}

/// `Offlined` (TiKV leaving: `spec.offline` or deleted): PD removes the store.
pub mod offlined {
    /// The type.
    pub const TYPE: &str = "Offlined";
    /// PD moves the store's regions away (False).
    pub const REMOVING: &str = "Removing";
    /// PD has removed the store: Tombstone (True). The instance may go.
    pub const REMOVED: &str = "Removed";
    /// PD refused the removal, e.g. fewer Up stores than max-replicas would remain (False).
    pub const REFUSED: &str = "Refused";
}

/// `StoreDown` (TiKV): PD reports the store Down. Its lastTransitionTime starts the failover
/// period.
pub mod store_down {
    /// The type.
    pub const TYPE: &str = "StoreDown";
    /// PD reports it Down (True).
    pub const DOWN: &str = "Down";
    /// PD reports another state (False).
    pub const NOT_DOWN: &str = "NotDown";
    /// PD does not know the store (Unknown).
    pub const NO_STORE: &str = "NoStore";
}

/// `RestartSafe` (PD): whether the member's pending restart may happen now.
pub mod restart_safe {
    /// The type.
    pub const TYPE: &str = "RestartSafe";
    /// No restart is due (Unknown).
    pub const NO_RESTART_PENDING: &str = "NoRestartPending";
    /// The others keep a quorum (True).
    pub const QUORUM_KEPT: &str = "QuorumKept";
    /// The member is down already (True).
    pub const MEMBER_DOWN: &str = "MemberDown";
    /// It leads: leadership moves first (False).
    pub const TRANSFERRING_LEADER: &str = "TransferringLeader";
    /// Restarting it now would lose PD's quorum (False).
    pub const WOULD_LOSE_QUORUM: &str = "WouldLoseQuorum";
    /// PD cannot be asked and the member's pod is ready: wait (False).
    pub const PD_UNREACHABLE: &str = "PDUnreachable";
    /// The Cluster suspends: TiKV stops first (False).
    pub const WAITING_FOR_TIKV: &str = "WaitingForTiKV";
    /// The Cluster suspends and every TiKV has stopped (True).
    pub const SUSPENDING: &str = "Suspending";
}

/// `Progressing` (group, Cluster): a rollout, scaling or removal is under way.
pub mod progressing {
    /// The type.
    pub const TYPE: &str = "Progressing";
    /// Group: instances are being created, updated or removed.
    pub const RECONCILING: &str = "Reconciling";
    /// Cluster: some group progresses.
    pub const GROUPS_PROGRESSING: &str = "GroupsProgressing";
    /// Nothing under way.
    pub const STABLE: &str = "Stable";
}

/// `ZoneByZone` (TiKV group in `ZoneByZone` mode): whether restarting a whole zone is safe.
pub mod zone_by_zone {
    /// The type.
    pub const TYPE: &str = "ZoneByZone";
    /// PD isolates replicas by zone and there are enough zones (True).
    pub const SAFE: &str = "Safe";
    /// Not safe: stores restart one at a time (False).
    pub const UNSAFE: &str = "Unsafe";
}

/// `TLSClient` (Cluster, with TLS on): whether the operator's client certificate for PD
/// (`tlsCluster.clientSecretName`) can be used.
pub mod tls_client {
    /// The type.
    pub const TYPE: &str = "TLSClient";
    /// The Secret holds a client certificate from the cluster's CA, valid now (True).
    pub const VALID: &str = "Valid";
    /// Missing or unusable: the message says which Secret and why; PD is not asked (False).
    pub const INVALID_TLS_SECRET: &str = "InvalidTLSSecret";
}

/// `Available` (Cluster): PD has a quorum and a cluster id.
pub mod available {
    /// The type.
    pub const TYPE: &str = "Available";
    /// A majority of PD members is ready.
    pub const PD_QUORUM: &str = "PDQuorum";
    /// Fewer than a majority, or PD has not answered yet.
    pub const NO_PD_QUORUM: &str = "NoPDQuorum";
}

/// `Paused` (Cluster): `spec.paused`.
pub mod paused {
    /// The type.
    pub const TYPE: &str = "Paused";
    /// Paused (True).
    pub const PAUSED: &str = "Paused";
    /// Not paused (False).
    pub const NOT_PAUSED: &str = "NotPaused";
}

/// `Suspended` (Cluster): `suspendAction.suspendCompute` and every pod is gone.
pub mod suspended {
    /// The type.
    pub const TYPE: &str = "Suspended";
    /// Every pod is gone (True).
    pub const SUSPENDED: &str = "Suspended";
    /// Pods are stopping (False).
    pub const SUSPENDING: &str = "Suspending";
    /// Not asked to suspend (False).
    pub const NOT_SUSPENDED: &str = "NotSuspended";
}
