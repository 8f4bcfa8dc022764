//! The Go program `kvclient` (client-go v2.0.7's RawKV client, built by `e2e/tools/build.sh
//! kvclient`), driven one JSON request at a time: one long-lived client with its region cache,
//! as an application has, while the test changes the cluster between calls.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// A running `kvclient serve`.
pub struct KvClient {
    _child: Child,
    log: std::path::PathBuf,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

/// PD endpoints as client-go takes them (`host:port`).
pub fn pd_addrs(endpoints: &[String]) -> String {
    endpoints
        .iter()
        .map(|e| {
            e.trim_start_matches("https://")
                .trim_start_matches("http://")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// kvclient's TLS flags for the certificate in `dir` (cert-manager's layout).
pub fn tls_args(dir: &std::path::Path) -> Vec<String> {
    [
        ("--ca", tls::CA),
        ("--cert", tls::CERT),
        ("--key", tls::KEY),
    ]
    .into_iter()
    .flat_map(|(flag, file)| [flag.to_string(), dir.join(file).display().to_string()])
    .collect()
}

impl KvClient {
    /// Starts the client against PD and waits until it is connected.
    pub async fn start(endpoints: &[String]) -> KvClient {
        Self::start_with(endpoints, &[]).await
    }

    /// [`KvClient::start`] with more flags (e.g. [`tls_args`]).
    pub async fn start_with(endpoints: &[String], extra: &[String]) -> KvClient {
        let bin = testenv::bin_path("kvclient").expect("kvclient is built by e2e/tools/build.sh");
        let log = std::env::temp_dir().join(format!(
            "kvclient-{}-{}.log",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        let stderr = std::fs::File::create(&log).expect("kvclient log file");
        let mut child = Command::new(bin)
            .args(["serve", "--pd", &pd_addrs(endpoints)])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("kvclient starts");
        let stdin = child.stdin.take().expect("piped");
        let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut c = KvClient {
            _child: child,
            log,
            stdin,
            lines,
        };
        let hello = c.read().await;
        assert_eq!(hello["ok"], true, "kvclient did not connect: {hello}");
        c
    }

    async fn read(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .expect("kvclient answers within 60 s")
            .expect("kvclient's stdout");
        let Some(line) = line else {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            panic!(
                "kvclient exited; its log ({}) ends:\n{}",
                self.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        };
        serde_json::from_str(&line).expect("kvclient prints JSON")
    }

    /// One request; the answer, `ok` or not.
    pub async fn call(&mut self, req: Value) -> Value {
        let mut line = req.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to kvclient");
        self.read().await
    }

    /// One request that must succeed.
    pub async fn ok(&mut self, req: Value) -> Value {
        let resp = self.call(req.clone()).await;
        assert_eq!(resp["ok"], true, "{req} failed: {resp}");
        resp
    }

    /// Put; `Err` with client-go's error.
    pub async fn put(&mut self, key: &str, value: &str) -> Result<(), String> {
        let r = self
            .call(json!({"op": "put", "key": key, "value": value}))
            .await;
        if r["ok"] == true {
            Ok(())
        } else {
            Err(r["error"].to_string())
        }
    }

    /// Get that must succeed.
    pub async fn get(&mut self, key: &str) -> Option<String> {
        let r = self.ok(json!({"op": "get", "key": key})).await;
        (r["found"] == true).then(|| r["value"].as_str().unwrap_or_default().to_string())
    }

    /// Batch put that must succeed.
    pub async fn batch_put(&mut self, pairs: &[(String, String)]) {
        let keys: Vec<&str> = pairs.iter().map(|p| p.0.as_str()).collect();
        let values: Vec<&str> = pairs.iter().map(|p| p.1.as_str()).collect();
        self.ok(json!({"op": "batch_put", "keys": keys, "values": values}))
            .await;
    }

    /// Batch get that must succeed: one entry per key, `None` if missing.
    pub async fn batch_get(&mut self, keys: &[String]) -> Vec<Option<String>> {
        let r = self.ok(json!({"op": "batch_get", "keys": keys})).await;
        match r["values"].as_array() {
            Some(vs) => vs.iter().map(|v| v.as_str().map(String::from)).collect(),
            None => vec![None; keys.len()],
        }
    }

    /// Scan (or reverse scan) that must succeed.
    pub async fn scan(
        &mut self,
        start: &str,
        end: &str,
        limit: usize,
        reverse: bool,
    ) -> Vec<(String, String)> {
        let op = if reverse { "reverse_scan" } else { "scan" };
        let r = self
            .ok(json!({"op": op, "start": start, "end": end, "limit": limit}))
            .await;
        r["pairs"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        (
                            p[0].as_str().unwrap().to_string(),
                            p[1].as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}
