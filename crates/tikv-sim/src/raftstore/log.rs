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
        let level = match record.level() {
            slog::Level::Critical | slog::Level::Error => tracing::Level::ERROR,
            slog::Level::Warning => tracing::Level::INFO,
            slog::Level::Info => tracing::Level::DEBUG,
            slog::Level::Debug | slog::Level::Trace => tracing::Level::TRACE,
        };
        // raft-rs logs a lot at debug: format only what will be written.
        let enabled = match level {
            tracing::Level::ERROR => tracing::enabled!(target: "raft", tracing::Level::ERROR),
            tracing::Level::INFO => tracing::enabled!(target: "raft", tracing::Level::INFO),
            tracing::Level::DEBUG => tracing::enabled!(target: "raft", tracing::Level::DEBUG),
            _ => tracing::enabled!(target: "raft", tracing::Level::TRACE),
        };
        if !enabled {
            return Ok(());
        }
        let mut fields = Fields(String::new());
        let _ = record.kv().serialize(record, &mut fields);
        let _ = values.serialize(record, &mut fields);
        let msg = record.msg();
        let fields = fields.0;
        match level {
            tracing::Level::ERROR => tracing::error!(target: "raft", "{msg}{fields}"),
            tracing::Level::INFO => tracing::info!(target: "raft", "{msg}{fields}"),
            tracing::Level::DEBUG => tracing::debug!(target: "raft", "{msg}{fields}"),
            _ => tracing::trace!(target: "raft", "{msg}{fields}"),
        }
        Ok(())
    }
}

/// The root logger for raft-rs.
pub fn logger() -> slog::Logger {
    slog::Logger::root(ToTracing.fuse(), slog::o!())
}
