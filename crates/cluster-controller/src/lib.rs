//! Reconciles Cluster: PD URL and cluster id, aggregated conditions
