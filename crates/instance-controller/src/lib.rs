//! Reconciles PD and TiKV: pods, config, PVCs, PD membership and store state
