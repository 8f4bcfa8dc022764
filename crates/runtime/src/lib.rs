//! What every controller shares: telemetry, metrics and health server, SSA, conditions, leader election
