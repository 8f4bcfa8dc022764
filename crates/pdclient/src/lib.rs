//! Client of PD's HTTP and gRPC APIs, as the operator needs them
