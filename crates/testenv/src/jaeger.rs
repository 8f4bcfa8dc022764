//! A real Jaeger (all-in-one, in-memory storage, built by `e2e/tools/build.sh jaeger`) on
//! loopback: an OTLP collector whose query API shows what it received.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::Error;
use crate::pd::http_request;
use crate::process::{Janitor, Server, free_ports};

/// A running Jaeger; dropping it kills it and removes its directory.
#[derive(Debug)]
pub struct Jaeger {
    // The server before the janitor: it dies before its directory goes.
    server: Server,
    _janitor: Janitor,
    otlp_grpc: u16,
    query: u16,
    dir: PathBuf,
}

impl Jaeger {
    /// Starts Jaeger on free loopback ports and waits until its query API answers.
    pub async fn start() -> Result<Jaeger, Error> {
        let program = crate::bin_path("jaeger-all-in-one")?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("testenv-jaeger-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let janitor = Janitor::spawn(&dir)?;
        let p = free_ports(7)?;
        let at = |port: u16| format!("127.0.0.1:{port}");
        let args = [
            format!("--collector.otlp.grpc.host-port={}", at(p[0])),
            format!("--collector.otlp.http.host-port={}", at(p[1])),
            format!("--query.http-server.host-port={}", at(p[2])),
            format!("--query.grpc-server.host-port={}", at(p[3])),
            format!("--admin.http.host-port={}", at(p[4])),
            format!("--collector.grpc-server.host-port={}", at(p[5])),
            format!("--collector.http-server.host-port={}", at(p[6])),
        ];
        let server = Server::spawn("jaeger", &program, &args, &dir)?;
        let jaeger = Jaeger {
            server,
            _janitor: janitor,
            otlp_grpc: p[0],
            query: p[2],
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match http_request(
                &at(jaeger.query),
                "GET",
                "/api/services",
                None,
                Duration::from_secs(2),
            )
            .await
            {
                Ok((200, _)) => return Ok(jaeger),
                other if Instant::now() > deadline => {
                    return Err(Error::NotReady {
                        server: "jaeger".into(),
                        timeout: Duration::from_secs(60),
                        last_error: format!("{other:?}"),
                        log: jaeger.server.log_path().to_path_buf(),
                        tail: jaeger.server.log_tail(crate::process::LOG_TAIL_LINES),
                    });
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// The OTLP/gRPC endpoint, e.g. `http://127.0.0.1:4317`.
    pub fn otlp_grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.otlp_grpc)
    }

    /// The traces Jaeger holds for `service` (its query API's `data`), newest first.
    pub async fn traces(&self, service: &str) -> Result<Vec<serde_json::Value>, String> {
        let path = format!("/api/traces?service={service}&limit=100&lookback=1h");
        let (status, body) = http_request(
            &format!("127.0.0.1:{}", self.query),
            "GET",
            &path,
            None,
            Duration::from_secs(5),
        )
        .await?;
        if status != 200 {
            return Err(format!("{path}: {status} {body}"));
        }
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{path}: {e}"))?;
        Ok(v["data"].as_array().cloned().unwrap_or_default())
    }

    /// Jaeger's own log (what it made of what it received).
    pub fn log_tail(&self) -> String {
        self.server.log_tail(crate::process::LOG_TAIL_LINES)
    }

    /// Its directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}
