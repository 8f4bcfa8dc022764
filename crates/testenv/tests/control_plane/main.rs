//! Tests of the test environment against the real control plane it starts: one control plane
//! for the whole binary ([`testenv::shared`]), a namespace per test. Lifecycle tests start
//! control planes of their own.

mod cel;
mod fixtures;
mod lifecycle;
mod objects;
