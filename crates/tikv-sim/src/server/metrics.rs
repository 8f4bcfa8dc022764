//! The gRPC metrics TiKV's dashboards use: `tikv_grpc_msg_duration_seconds{type}` (histogram)
//! and `tikv_grpc_msg_fail_total{type}`, rendered in Prometheus' text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the duration buckets in seconds (TiKV uses exponential buckets from 0.5 ms).
const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048,
    4.096, 8.192, 16.384,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct ByType {
    durations: BTreeMap<&'static str, Histogram>,
    failures: BTreeMap<&'static str, u64>,
}

/// Per request type: durations and failures.
#[derive(Default)]
pub struct GrpcMetrics {
    inner: Mutex<ByType>,
}

impl GrpcMetrics {
    /// Records one handled message of type `ty` (TiKV's names: `raw_get`, `raw_put`, ...).
    pub fn observe(&self, ty: &'static str, took: Duration, failed: bool) {
        let secs = took.as_secs_f64();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let h = inner.durations.entry(ty).or_default();
        h.count += 1;
        h.sum += secs;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        if failed {
            *inner.failures.entry(ty).or_default() += 1;
        }
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self, out: &mut String) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str(
            "# HELP tikv_grpc_msg_duration_seconds Bucketed histogram of grpc server messages\n",
        );
        out.push_str("# TYPE tikv_grpc_msg_duration_seconds histogram\n");
        for (ty, h) in &inner.durations {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "tikv_grpc_msg_duration_seconds_bucket{{type=\"{ty}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "tikv_grpc_msg_duration_seconds_bucket{{type=\"{ty}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "tikv_grpc_msg_duration_seconds_sum{{type=\"{ty}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "tikv_grpc_msg_duration_seconds_count{{type=\"{ty}\"}} {}",
                h.count
            );
        }
        out.push_str(
            "# HELP tikv_grpc_msg_fail_total Total number of handle grpc message failure\n",
        );
        out.push_str("# TYPE tikv_grpc_msg_fail_total counter\n");
        for (ty, n) in &inner.failures {
            let _ = writeln!(out, "tikv_grpc_msg_fail_total{{type=\"{ty}\"}} {n}");
        }
    }
}

/// Resident memory of this process in bytes (`/proc/self/statm`), 0 if unknown.
pub fn resident_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// CPU time (user + system) of this process in seconds (`/proc/self/stat`), 0 if unknown.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may contain spaces.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = GrpcMetrics::default();
        m.observe("raw_get", Duration::from_micros(300), false);
        m.observe("raw_get", Duration::from_millis(3), true);
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains(
                "tikv_grpc_msg_duration_seconds_bucket{type=\"raw_get\",le=\"0.0005\"} 1\n"
            )
        );
        assert!(
            out.contains(
                "tikv_grpc_msg_duration_seconds_bucket{type=\"raw_get\",le=\"0.004\"} 2\n"
            )
        );
        assert!(out.contains("tikv_grpc_msg_duration_seconds_count{type=\"raw_get\"} 2\n"));
        assert!(out.contains("tikv_grpc_msg_fail_total{type=\"raw_get\"} 1\n"));
        assert!(resident_memory_bytes() > 0);
    }
}
