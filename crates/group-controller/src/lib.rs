//! Reconciles PDGroup and TiKVGroup: instances, services, revisions, rollouts, scale-in
