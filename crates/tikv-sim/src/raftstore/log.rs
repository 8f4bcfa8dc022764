//! raft-rs logs through slog; this forwards its records to `tracing` (target `raft`), one
//! level lower than raft-rs chose, since it logs every election of every region at info.

use std::fmt::Write as _;

use slog::{Drain, KV, Never, OwnedKVList, Record, Serializer};

struct ToTracing;

struct Fields(String);

impl Serializer for Fields {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

impl Drain for ToTracing {
    type Ok = ();
    type Err = Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), Never> {
        let mut fields = Fields(String::new());
        let _ = record.kv().serialize(record, &mut fields);
        let _ = values.serialize(record, &mut fields);
        let msg = record.msg();
        let fields = fields.0;
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", "{msg}{fields}")
            }
            slog::Level::Warning => tracing::info!(target: "raft", "{msg}{fields}"),
            slog::Level::Info => tracing::debug!(target: "raft", "{msg}{fields}"),
            slog::Level::Debug | slog::Level::Trace => {
                tracing::trace!(target: "raft", "{msg}{fields}")
            }
        }
        Ok(())
    }
}

/// The root logger for raft-rs.
pub fn logger() -> slog::Logger {
    slog::Logger::root(ToTracing.fuse(), slog::o!())
}
