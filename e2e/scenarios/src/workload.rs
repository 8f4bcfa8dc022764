//! A client workload that runs through a scenario: `kvclient workload` (client-go's RawKV
//! client, as an application uses it) reads, writes (a unique value per write) and
//! compare-and-swaps a key set spread over every region and store, recording each operation's
//! start, end and result; `kvclient check` then reads every key back and checks that no
//! acknowledged write was lost and that the history is linearizable (porcupine, per key).
//!
//! ```no_run
//! # async fn f(env: &e2e::Env) {
//! let workload = e2e::Workload::start(env, "basic").await;
//! // ... the operation ...
//! let report = workload.stop().await;
//! report.assert_clean();
//! # }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pdclient::{PdClient, RegionCheck};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::Env;

/// The kind `kvclient workload` gives a CAS that client-go answered "not swapped" with the
/// CAS's own unique value: an earlier attempt of it took effect, and client-go's retry (RawKV
/// CAS carries no request id, in TiKV too) compared against that. Its outcome is unknown to the
/// application; the scenarios do not count it against the operator, and print it.
pub const CAS_RETRIED: &str = "cas-retried";

/// What the workload does.
#[derive(Clone, Debug)]
pub struct Options {
    /// Concurrent clients (goroutines sharing one client-go client).
    pub clients: u32,
    /// Operations per second over all clients; 0: as fast as they go (closed loop).
    pub rate: u32,
    /// Keys, spread over tikv-sim's 48 initial regions.
    pub keys: u32,
    /// Share of gets, in percent.
    pub read_percent: u32,
    /// Share of compare-and-swaps, in percent (the rest are puts).
    pub cas_percent: u32,
}

impl Default for Options {
    /// The scenarios' load: light enough to leave the 2-core machine to the cluster, dense
    /// enough that every region sees operations every few seconds.
    fn default() -> Self {
        Self {
            clients: 4,
            rate: 100,
            keys: 1000,
            read_percent: 40,
            cas_percent: 20,
        }
    }
}

/// A running workload.
pub struct Workload {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    pd: String,
    history: PathBuf,
    log: PathBuf,
    options: Options,
    started: SystemTime,
}

/// An interval of wall-clock time (the workload's clock is the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Start.
    pub start: SystemTime,
    /// End.
    pub end: SystemTime,
}

impl Window {
    /// From `start` until now.
    pub fn since(start: SystemTime) -> Self {
        Self {
            start,
            end: SystemTime::now(),
        }
    }

    /// Whether `[a, b]` overlaps it.
    fn overlaps(&self, a: SystemTime, b: SystemTime) -> bool {
        a <= self.end && b >= self.start
    }

    fn contains(&self, t: SystemTime) -> bool {
        self.start <= t && t <= self.end
    }

    /// Its length.
    pub fn len(&self) -> Duration {
        self.end.duration_since(self.start).unwrap_or_default()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len().is_zero()
    }
}

impl Workload {
    /// Starts the scenarios' workload ([`Options::default`]) on Cluster `cluster`, once its
    /// regions are fully replicated.
    pub async fn start(env: &Env, cluster: &str) -> Workload {
        Self::start_with(env, cluster, Options::default()).await
    }

    /// Starts a workload, once every region of the cluster is fully replicated (see
    /// [`wait_replicated`]): faults are injected into a settled cluster, as an operator's user
    /// would expect.
    pub async fn start_with(env: &Env, cluster: &str, options: Options) -> Workload {
        let pd = env.pd(cluster).await;
        wait_replicated(&pd, 180).await;
        let pd = pd_addrs(pd.endpoints());
        let stem = format!(
            "tikv-e2e-workload-{}-{}",
            env.ns,
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis()
        );
        let history = std::env::temp_dir().join(format!("{stem}.jsonl"));
        let log = std::env::temp_dir().join(format!("{stem}.log"));
        let mut child = env
            .command(kvclient())
            .args(["workload", "--pd", &pd, "--history"])
            .arg(&history)
            .args([
                "--clients",
                &options.clients.to_string(),
                "--rate",
                &options.rate.to_string(),
                "--keys",
                &options.keys.to_string(),
                "--read-percent",
                &options.read_percent.to_string(),
                "--cas-percent",
                &options.cas_percent.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("the workload's log file"))
            .spawn()
            .expect("kvclient starts");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut w = Workload {
            child,
            stdin,
            stdout,
            pd,
            history,
            log,
            options,
            started: SystemTime::now(),
        };
        let ready = w.line(Duration::from_secs(60)).await;
        assert!(
            ready.contains("\"ready\":true"),
            "kvclient workload did not start: {ready}"
        );
        w.started = SystemTime::now();
        println!(
            "workload: {} clients, {} ops/s, {} keys, history {}",
            w.options.clients,
            w.options.rate,
            w.options.keys,
            w.history.display()
        );
        w
    }

    /// The next line of the workload's stdout (its log's tail when it exited instead).
    async fn line(&mut self, timeout: Duration) -> String {
        match tokio::time::timeout(timeout, self.stdout.next_line()).await {
            Ok(Ok(Some(l))) => l,
            other => panic!(
                "kvclient workload: no answer ({other:?}); its log ends:\n{}",
                tail(&self.log, 30)
            ),
        }
    }

    /// When it started issuing operations.
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// Stops it (operations in flight finish), reads every key back and checks the history.
    pub async fn stop(mut self) -> Report {
        let stopped = SystemTime::now();
        drop(self.stdin.take());
        let done = self.line(Duration::from_secs(120)).await;
        assert!(
            done.contains("\"stopped\":true"),
            "kvclient workload did not stop cleanly: {done}"
        );
        let status = self.child.wait().await.expect("kvclient workload exits");
        assert!(status.success(), "kvclient workload: {status}");
        let visualization = self.history.with_extension("html");
        let out = tokio::process::Command::new(kvclient())
            .args(["check", "--pd", &self.pd, "--history"])
            .arg(&self.history)
            .args(["--keys", &self.options.keys.to_string(), "--visualize"])
            .arg(&visualization)
            .stderr(Stdio::inherit())
            .output()
            .await
            .expect("kvclient check runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "kvclient check failed: {text}");
        let check: Check = serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("kvclient check printed {text}: {e}"));
        let report = Report {
            ops: read_history(&self.history),
            check,
            started: self.started,
            stopped,
            history: self.history.clone(),
            log: self.log.clone(),
        };
        println!("{}", report.summary(None));
        report
    }
}

fn kvclient() -> PathBuf {
    testenv::bin_path("kvclient").expect("kvclient is built by e2e/tools/build.sh")
}

/// PD endpoints as client-go takes them (`host:port,...`).
pub fn pd_addrs(endpoints: &[String]) -> String {
    endpoints
        .iter()
        .map(|e| e.trim_start_matches("http://").trim_end_matches('/'))
        .collect::<Vec<_>>()
        .join(",")
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Waits up to `secs` until every region is fully replicated: every store PD knows is Up (or a
/// tombstone), the region replicas add up to `max-replicas` per leader, PD lists no region with
/// a learner, a pending, down or missing peer, and that holds twice in a row a second apart.
/// (A replica count includes learners: a region of two voters and a learner loses its quorum
/// when a store is killed at that moment.)
pub async fn wait_replicated(pd: &PdClient, secs: u64) {
    let mut last = String::new();
    let mut settled_once = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match replication_gap(pd).await {
            None if settled_once => return,
            None => settled_once = true,
            Some(why) => {
                settled_once = false;
                last = why;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the regions were not fully replicated within {secs} s: {last}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Why the cluster is not fully replicated; `None` when it is.
async fn replication_gap(pd: &PdClient) -> Option<String> {
    let replicas = match pd.replication_config().await {
        Ok(r) => r.max_replicas,
        Err(e) => return Some(format!("PD: {e}")),
    };
    let stores = match pd.stores().await {
        Ok(s) => s,
        Err(e) => return Some(format!("PD: {e}")),
    };
    let (mut peers, mut leaders) = (0, 0);
    for s in &stores {
        match s.store.state_name.as_str() {
            "Up" => {}
            "Tombstone" => continue,
            other => return Some(format!("store {} is {other}", s.store.id)),
        }
        peers += s.status.region_count;
        leaders += s.status.leader_count;
    }
    if leaders == 0 || peers != replicas * leaders {
        return Some(format!(
            "{peers} replicas for {leaders} leaders ({replicas} each)"
        ));
    }
    for check in [
        RegionCheck::LearnerPeer,
        RegionCheck::PendingPeer,
        RegionCheck::DownPeer,
        RegionCheck::MissPeer,
    ] {
        match pd.regions_in_check(check).await {
            Ok(r) if r.is_empty() => {}
            Ok(r) => return Some(format!("{} regions under {}", r.len(), check.path())),
            Err(e) => return Some(format!("PD: {e}")),
        }
    }
    None
}

/// One operation of the history, as `kvclient workload` recorded it.
#[derive(Clone, Debug, Deserialize)]
pub struct Op {
    /// Which client.
    #[serde(rename = "c")]
    pub client: u32,
    /// `get`, `put` or `cas`.
    pub op: String,
    /// The key.
    pub key: String,
    /// Unix nanoseconds at the call.
    pub start: i64,
    /// Unix nanoseconds at the return.
    pub end: i64,
    /// No client error.
    pub ok: bool,
    /// The error's kind, when it failed.
    #[serde(default)]
    pub kind: Option<String>,
    /// The error, when it failed.
    #[serde(default)]
    pub err: Option<String>,
    /// A read of the check, after the workload.
    #[serde(default)]
    pub r#final: bool,
}

impl Op {
    fn at(ns: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64)
    }

    /// When it was called.
    pub fn started(&self) -> SystemTime {
        Self::at(self.start)
    }

    /// When it returned.
    pub fn ended(&self) -> SystemTime {
        Self::at(self.end)
    }

    /// How long it took.
    pub fn latency(&self) -> Duration {
        Duration::from_nanos((self.end - self.start).max(0) as u64)
    }
}

fn read_history(path: &Path) -> Vec<Op> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading the history {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("history line {l}: {e}")))
        .filter(|o: &Op| !o.r#final)
        .collect()
}

/// What `kvclient check` found.
#[derive(Clone, Debug, Deserialize)]
pub struct Check {
    /// Operations in the history.
    pub ops: usize,
    /// Keys read back.
    pub read_back: usize,
    /// Keys that could not be read back.
    #[serde(default)]
    pub unread: Vec<String>,
    /// Acknowledged writes missing from the final state.
    #[serde(default)]
    pub lost: Vec<serde_json::Value>,
    /// `ok`, `illegal` or `unknown`.
    pub linearizable: String,
    /// Keys whose history is not linearizable.
    #[serde(default)]
    pub illegal_keys: Vec<String>,
    /// porcupine's view of the illegal histories.
    #[serde(default)]
    pub visualization: Option<String>,
    /// How long the check took.
    pub check_seconds: f64,
}

/// A workload's history and what the check made of it.
pub struct Report {
    /// Every operation (the check's reads left out), in the order they finished.
    pub ops: Vec<Op>,
    /// The check.
    pub check: Check,
    started: SystemTime,
    stopped: SystemTime,
    history: PathBuf,
    log: PathBuf,
}

/// Throughput and latency of the operations that ended in a window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Successful operations.
    pub ok: usize,
    /// Failed operations (started in the window).
    pub failed: usize,
    /// Successful operations per second.
    pub throughput: f64,
    /// Median latency of the successful ones.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
    /// The longest time in the window with no operation succeeding.
    pub longest_gap: Duration,
}

impl Report {
    /// The whole run.
    pub fn window(&self) -> Window {
        Window {
            start: self.started,
            end: self.stopped,
        }
    }

    /// The failed operations (those of kind [`CAS_RETRIED`] included).
    pub fn failures(&self) -> impl Iterator<Item = &Op> {
        self.ops.iter().filter(|o| !o.ok)
    }

    /// Failed operations by error kind.
    pub fn failures_by_kind(&self, within: Option<Window>) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for o in self
            .failures()
            .filter(|o| within.is_none_or(|w| w.contains(o.started())))
        {
            *out.entry(o.kind.clone().unwrap_or_default()).or_insert(0) += 1;
        }
        out
    }

    /// Throughput, latency and the longest gap without success, in `w`.
    pub fn stats(&self, w: Window) -> Stats {
        let mut lat: Vec<Duration> = Vec::new();
        let mut ends: Vec<SystemTime> = Vec::new();
        let mut failed = 0;
        for o in &self.ops {
            if !o.ok {
                failed += usize::from(w.contains(o.started()));
            } else if w.contains(o.ended()) {
                lat.push(o.latency());
                ends.push(o.ended());
            }
        }
        lat.sort_unstable();
        ends.sort_unstable();
        let pct = |p: usize| {
            lat.get((lat.len() * p / 100).min(lat.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        let mut gap = Duration::ZERO;
        let mut prev = w.start;
        for e in ends.iter().copied().chain([w.end]) {
            gap = gap.max(e.duration_since(prev).unwrap_or_default());
            prev = prev.max(e);
        }
        let secs = w.len().as_secs_f64();
        Stats {
            ok: lat.len(),
            failed,
            throughput: if secs > 0.0 {
                lat.len() as f64 / secs
            } else {
                0.0
            },
            p50: pct(50),
            p99: pct(99),
            max: lat.last().copied().unwrap_or_default(),
            longest_gap: gap,
        }
    }

    /// One paragraph for the test output.
    pub fn summary(&self, within: Option<Window>) -> String {
        let w = within.unwrap_or_else(|| self.window());
        let s = self.stats(w);
        let mut text = format!(
            "workload: {} ops in {:.1} s ({:.0}/s), {} failed {:?}; p50 {:.1} ms, p99 {:.1} ms, max {:.0} ms; \
             longest gap without success {:.0} ms; check: {} keys read back, {} lost, linearizable {} ({:.2} s)",
            self.ops.len(),
            w.len().as_secs_f64(),
            s.throughput,
            s.failed,
            self.failures_by_kind(Some(w)),
            ms(s.p50),
            ms(s.p99),
            ms(s.max),
            ms(s.longest_gap),
            self.check.read_back,
            self.check.lost.len(),
            self.check.linearizable,
            self.check.check_seconds,
        );
        for o in self.failures().take(5) {
            text += &format!(
                "\n  failed {} {} at +{:.1} s after {:.1} s: {}",
                o.op,
                o.key,
                o.started()
                    .duration_since(self.started)
                    .unwrap_or_default()
                    .as_secs_f64(),
                o.latency().as_secs_f64(),
                o.err.as_deref().unwrap_or_default()
            );
        }
        text
    }

    /// Nothing acknowledged was lost, every key was read back and the history is linearizable.
    pub fn assert_consistent(&self) {
        let c = &self.check;
        assert!(
            c.lost.is_empty() && c.unread.is_empty() && c.linearizable == "ok",
            "the workload's history is not consistent: lost {:?}; unread {:?}; linearizable: {} (keys {:?}, view {:?}); history {}",
            c.lost,
            c.unread,
            c.linearizable,
            c.illegal_keys,
            c.visualization,
            self.history.display()
        );
        assert_eq!(
            c.ops,
            self.ops.len(),
            "the check saw the whole history ({})",
            self.history.display()
        );
        assert!(
            !self.ops.is_empty(),
            "the workload did nothing: its log ends:\n{}",
            tail(&self.log, 30)
        );
    }

    /// Consistent, and not one operation failed.
    pub fn assert_clean(&self) {
        self.assert_only_failed_within(&[]);
    }

    /// Consistent, every failed operation overlaps one of `windows` (e.g. while the cluster is
    /// suspended), and after each window operations succeed again.
    pub fn assert_only_failed_within(&self, windows: &[Window]) {
        self.assert_consistent();
        let outside: Vec<&Op> = self
            .failures()
            .filter(|o| o.kind.as_deref() != Some(CAS_RETRIED))
            .filter(|o| !windows.iter().any(|w| w.overlaps(o.started(), o.ended())))
            .collect();
        let retried = self
            .failures()
            .filter(|o| o.kind.as_deref() == Some(CAS_RETRIED))
            .count();
        if retried > 0 {
            // Not the operator's doing: client-go retries a RawKV CAS whose first attempt took
            // effect and reports "not swapped". The checker counts it as an unknown outcome.
            println!("{retried} CAS answered wrongly by client-go's retry ({CAS_RETRIED})");
        }
        assert!(
            outside.is_empty(),
            "{} operations failed outside the allowed windows; the first: {:?}\n{}\nhistory {}",
            outside.len(),
            outside.iter().take(5).collect::<Vec<_>>(),
            self.summary(None),
            self.history.display()
        );
        for w in windows {
            assert!(
                self.ops.iter().any(|o| o.ok && o.started() > w.end),
                "no operation succeeded after the window ending at {:?}\n{}",
                w.end,
                self.summary(None)
            );
        }
    }
}

/// A scenario that passed leaves nothing behind; a failed one keeps the history to look at.
impl Drop for Report {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.history);
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    //! The check is the real `kvclient check` on histories written here: it must find what it
    //! is for (a stale read, a lost write) and accept what is allowed (an unknown outcome either
    //! way).

    use super::*;

    const KEY: &str = "sim000000/wl/000000";

    fn check(lines: &[serde_json::Value]) -> Check {
        let path = std::env::temp_dir().join(format!(
            "kvclient-check-test-{}-{}.jsonl",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(kvclient())
            .args(["check", "--keys", "1", "--history"])
            .arg(&path)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn put(c: u32, value: &str, start: i64, end: i64, ok: bool) -> serde_json::Value {
        serde_json::json!({"c": c, "op": "put", "key": KEY, "value": value, "start": start, "end": end, "ok": ok})
    }

    fn get(c: u32, got: Option<&str>, start: i64, end: i64, last: bool) -> serde_json::Value {
        serde_json::json!({"c": c, "op": "get", "key": KEY, "start": start, "end": end, "ok": true,
            "found": got.is_some(), "got": got.unwrap_or_default(), "final": last})
    }

    #[test]
    fn a_linearizable_history_with_cas_and_an_unknown_outcome_passes() {
        let c = check(&[
            put(0, "c0-1", 10, 20, true),
            get(1, Some("c0-1"), 25, 30, false),
            put(1, "c1-1", 31, 40, false),
            serde_json::json!({"c": 0, "op": "cas", "key": KEY, "value": "c0-2", "prev": "c0-1",
                "start": 41, "end": 50, "ok": true, "found": true, "got": "c0-1", "succeed": true}),
            get(2, Some("c0-2"), 60, 70, true),
        ]);
        assert_eq!((c.linearizable.as_str(), c.lost.len()), ("ok", 0));
        // The failed put may also have landed last.
        let c = check(&[
            put(0, "c0-1", 10, 20, true),
            put(1, "c1-1", 5, 8, false),
            get(2, Some("c1-1"), 60, 70, true),
        ]);
        assert_eq!((c.linearizable.as_str(), c.lost.len()), ("ok", 0));
    }

    #[test]
    fn a_stale_read_is_not_linearizable() {
        let c = check(&[
            put(0, "c0-1", 10, 20, true),
            put(0, "c0-2", 21, 30, true),
            get(1, Some("c0-1"), 35, 40, false),
            get(2, Some("c0-2"), 60, 70, true),
        ]);
        assert_eq!(c.linearizable, "illegal");
        assert_eq!(c.illegal_keys, [KEY]);
        assert!(c.lost.is_empty());
    }

    #[test]
    fn a_lost_acknowledged_write_is_found() {
        let c = check(&[
            put(0, "c0-1", 10, 20, true),
            put(0, "c0-2", 21, 30, true),
            get(2, Some("c0-1"), 60, 70, true),
        ]);
        assert_eq!(c.lost.len(), 1, "{:?}", c.lost);
        assert_eq!(c.lost[0]["lost"], "c0-2");
        // An acknowledged write and nothing there.
        let c = check(&[put(0, "c0-1", 10, 20, true), get(2, None, 60, 70, true)]);
        assert_eq!(c.lost.len(), 1);
        assert_eq!(c.linearizable, "illegal");
    }
}
