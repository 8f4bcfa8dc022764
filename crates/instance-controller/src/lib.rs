//! The instance controller: reconciles each PD and TiKV object into its Pod, ConfigMap and PVCs,
//! and reports what PD says about it (member id and leadership; store id, state, leader and
//! region counts).

pub mod component;
pub mod config;
pub mod pod;
