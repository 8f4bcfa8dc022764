//! A simulated TiKV store that speaks PD's real gRPC protocol (test data plane)
