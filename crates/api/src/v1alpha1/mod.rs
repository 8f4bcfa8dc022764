//! `core.tikv.org/v1alpha1`.

pub mod cluster;
pub mod common;
pub mod pd;
pub mod tikv;

pub use cluster::*;
pub use common::*;
pub use pd::*;
pub use tikv::*;
