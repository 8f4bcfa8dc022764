//! What every instance reconcile shares, PD or TiKV: the facts read from the API server, the
//! plan (a value) and its execution. The component modules ([`crate::pd`], [`crate::tikv`]) add
//! what they ask PD and decide.

pub mod execute;
pub mod facts;
pub mod plan;

pub use facts::{Facts, Restart};
pub use plan::{Event, Finalizer, PdOp, PdStep, Plan, PodOp, Refusal, Sync};

#[cfg(test)]
pub mod fixtures;
