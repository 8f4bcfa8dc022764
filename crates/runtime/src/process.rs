//! The conventional process metrics (`process_resident_memory_bytes`, `process_cpu_seconds_total`,
//! `process_start_time_seconds`), read from `/proc/self` at each scrape: what a controller costs
//! as it manages more instances.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads `/proc/self` at each scrape (Linux; elsewhere it writes nothing).
#[derive(Debug)]
pub struct ProcessCollector;

/// What `/proc/self/stat` and `/proc/self/statm` say about this process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcessStats {
    /// Resident memory in bytes.
    pub resident_bytes: u64,
    /// User and system CPU time in seconds.
    pub cpu_seconds: f64,
    /// Start time, seconds since the epoch.
    pub start_time: f64,
}

/// Clock ticks per second and page size of Linux on the platforms we build for.
const TICKS: f64 = 100.0;
const PAGE: u64 = 4096;

/// Parses `/proc/self/stat`, `/proc/self/statm` and the system boot time (`btime` of
/// `/proc/stat`).
pub fn parse(stat: &str, statm: &str, boot_time: u64) -> Option<ProcessStats> {
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // utime, stime and starttime are fields 14, 15 and 22 of the line: 11, 12 and 19 here.
    let cpu_seconds = (field(11)? + field(12)?) / TICKS;
    let start_time = boot_time as f64 + field(19)? / TICKS;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(ProcessStats {
        resident_bytes: pages * PAGE,
        cpu_seconds,
        start_time,
    })
}

fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let btime = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    parse(&stat, &statm, btime)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = read() else {
            return Ok(());
        };
        let rss = ConstGauge::new(p.resident_bytes as i64);
        rss.encode(encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            None,
            rss.metric_type(),
        )?)?;
        let cpu = ConstCounter::new(p.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let start = ConstGauge::new(p.start_time);
        start.encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since the epoch in seconds",
            None,
            start.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_proc_says() {
        let stat = "4242 (tikv (operator)) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 \
                    8 0 12000 123456 789 18446744073709551615";
        let p = parse(stat, "5000 300 200 10 0 400 0", 1_700_000_000).unwrap();
        assert_eq!(p.resident_bytes, 300 * 4096);
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.start_time, 1_700_000_120.0);
        assert!(parse("garbage", "", 0).is_none());
        // This process, for real.
        let me = read().unwrap();
        assert!(
            me.resident_bytes > 0 && me.start_time > 1_600_000_000.0,
            "{me:?}"
        );
    }
}
