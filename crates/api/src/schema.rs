//! Schema helpers and the CEL expressions shared by several fields.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A Go-style duration such as `30s`, `10m` or `1h30m`, as PD and Kubernetes write them.
pub const DURATION_CEL: &str = r"self.matches('^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$')";

/// A semantic version, with or without the leading `v` (`v8.5.0`, `8.5.0-rc.1`).
pub const SEMVER_CEL: &str = r"self.matches('^v?(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\\+[0-9A-Za-z.-]+)?$')";

/// An object whose fields the API server keeps as they are (validated by the controller instead).
pub fn preserve_unknown_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// `topology` may be set at creation only.
pub const TOPOLOGY_IMMUTABLE_CEL: &str = "has(self.topology) == has(oldSelf.topology) && (!has(self.topology) || self.topology == oldSelf.topology)";
