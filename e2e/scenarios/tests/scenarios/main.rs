//! Every end-to-end scenario, in one test binary so that they run in parallel (cargo runs test
//! binaries one after the other; the tests of one binary at once, two on two cores). Each
//! scenario has an environment of its own (see `e2e::run`), so they cannot disturb each other;
//! `cargo test -p e2e --test scenarios basic` runs one.

mod basic;
mod charts;
mod drain;
mod failover;
mod lifecycle;
mod node_faults;
mod prometheus;
mod scale_in;
mod tls;
mod up_down;
mod upgrade;
mod zones;
