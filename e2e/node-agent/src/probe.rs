//! Startup, readiness and liveness probes: HTTP GET, TCP socket and exec, with kubelet's
//! timing fields (`initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`,
//! `successThreshold`, `failureThreshold`) and defaults. `httpGet` with `scheme: HTTPS` and
//! `grpc` probes are not supported and always fail with a message saying so.

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::launch::{Tools, exec_in};

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// `startupProbe`.
    Startup,
    /// `readinessProbe`.
    Readiness,
    /// `livenessProbe`.
    Liveness,
}

/// Probe timing with kubelet's defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Delay before the first probe.
    pub initial_delay: Duration,
    /// Time between probes.
    pub period: Duration,
    /// Timeout of one probe.
    pub timeout: Duration,
    /// Consecutive successes to count as success.
    pub success_threshold: u32,
    /// Consecutive failures to count as failure.
    pub failure_threshold: u32,
}

impl Timing {
    /// Reads the timing fields of `probe` (defaults: 0 s delay, 10 s period, 1 s timeout,
    /// thresholds 1 and 3). Pure.
    pub fn of(probe: &Probe) -> Timing {
        let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
        Timing {
            initial_delay: secs(probe.initial_delay_seconds, 0),
            period: secs(probe.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// Counts consecutive results and reports when the probe's verdict changes. Pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    successes: u32,
    failures: u32,
    current: Option<bool>,
}

impl Verdict {
    /// A verdict that starts as `initial` (`None`: undecided).
    pub fn new(initial: Option<bool>) -> Verdict {
        Verdict {
            successes: 0,
            failures: 0,
            current: initial,
        }
    }

    /// Records one result; returns the new verdict when it changed.
    pub fn observe(&mut self, ok: bool, timing: &Timing) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let next = if self.successes >= timing.success_threshold {
            Some(true)
        } else if self.failures >= timing.failure_threshold {
            Some(false)
        } else {
            self.current
        };
        if next != self.current {
            self.current = next;
            next
        } else {
            None
        }
    }
}

/// What a probe runs against.
#[derive(Debug, Clone)]
pub struct Target {
    /// The pod's address (default host of HTTP and TCP probes).
    pub pod_ip: Ipv4Addr,
    /// The container's program pid (exec probes enter its namespaces).
    pub pid: i32,
    /// The container's environment (for exec probes).
    pub env: Vec<(String, String)>,
    /// The container's ports (for named ports).
    pub ports: Vec<ContainerPort>,
}

fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("invalid port {p}")),
        IntOrString::String(name) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("no container port named {name:?}")),
    }
}

/// Runs one probe. `Err` carries the failure message.
pub async fn run_once(
    probe: &Probe,
    target: &Target,
    tools: &Tools,
    timeout: Duration,
) -> Result<(), String> {
    let fut = async {
        if let Some(h) = &probe.http_get {
            if h.scheme
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"))
            {
                return Err("HTTPS probes are not supported by node-agent".to_string());
            }
            let port = resolve_port(&h.port, &target.ports)?;
            let host = h
                .host
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| target.pod_ip.to_string());
            let path = h
                .path
                .clone()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/".into());
            let mut stream = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| e.to_string())?;
            let mut req = format!(
                "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.34\r\nAccept: */*\r\nConnection: close\r\n"
            );
            for header in h.http_headers.iter().flatten() {
                req.push_str(&format!("{}: {}\r\n", header.name, header.value));
            }
            req.push_str("\r\n");
            stream
                .write_all(req.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 1024];
            let mut got = 0;
            while got < 12 {
                let n = stream
                    .read(&mut buf[got..])
                    .await
                    .map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            let head = String::from_utf8_lossy(&buf[..got]);
            let code: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("malformed HTTP response {head:?}"))?;
            return if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {code}"))
            };
        }
        if let Some(t) = &probe.tcp_socket {
            let port = resolve_port(&t.port, &target.ports)?;
            let host = t
                .host
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| target.pod_ip.to_string());
            return TcpStream::connect((host.as_str(), port))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
        }
        if let Some(e) = &probe.exec {
            let argv = e.command.clone().unwrap_or_default();
            if argv.is_empty() {
                return Err("exec probe without command".into());
            }
            let status = exec_in(tools, target.pid, &argv, &target.env)
                .status()
                .await
                .map_err(|e| e.to_string())?;
            return if status.success() {
                Ok(())
            } else {
                Err(format!("command {argv:?} exited with {status}"))
            };
        }
        if probe.grpc.is_some() {
            return Err("gRPC probes are not supported by node-agent".into());
        }
        Err("probe has no handler".into())
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("probe timed out after {timeout:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_defaults() {
        let t = Timing::of(&Probe::default());
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
        let t = Timing::of(&Probe {
            period_seconds: Some(0),
            failure_threshold: Some(1),
            ..Default::default()
        });
        assert_eq!(t.period, Duration::from_secs(1));
        assert_eq!(t.failure_threshold, 1);
    }

    #[test]
    fn verdict_needs_consecutive_results() {
        let timing = Timing {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: 2,
            failure_threshold: 3,
        };
        let mut v = Verdict::new(Some(false));
        assert_eq!(v.observe(true, &timing), None);
        assert_eq!(v.observe(true, &timing), Some(true));
        assert_eq!(v.observe(false, &timing), None);
        assert_eq!(v.observe(false, &timing), None);
        assert_eq!(v.observe(true, &timing), None);
        assert_eq!(v.observe(false, &timing), None);
        assert_eq!(v.observe(false, &timing), None);
        assert_eq!(v.observe(false, &timing), Some(false));
        let mut u = Verdict::new(None);
        assert_eq!(
            u.observe(
                false,
                &Timing {
                    failure_threshold: 1,
                    ..timing
                }
            ),
            Some(false)
        );
    }

    #[test]
    fn named_ports() {
        let ports = vec![ContainerPort {
            name: Some("client".into()),
            container_port: 2379,
            ..Default::default()
        }];
        assert_eq!(
            resolve_port(&IntOrString::String("client".into()), &ports),
            Ok(2379)
        );
        assert!(resolve_port(&IntOrString::String("peer".into()), &ports).is_err());
        assert_eq!(resolve_port(&IntOrString::Int(80), &ports), Ok(80));
    }

    #[tokio::test]
    async fn http_and_tcp_probes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let target = Target {
            pod_ip: Ipv4Addr::LOCALHOST,
            pid: 0,
            env: vec![],
            ports: vec![],
        };
        let tools = Tools::find().unwrap();
        let http = Probe {
            http_get: Some(k8s_openapi::api::core::v1::HTTPGetAction {
                port: IntOrString::Int(i32::from(port)),
                path: Some("/health".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            run_once(&http, &target, &tools, Duration::from_secs(2)).await,
            Ok(())
        );
        let err = run_once(&http, &target, &tools, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(err.contains("503"), "{err}");
        let tcp = |port: u16| Probe {
            tcp_socket: Some(k8s_openapi::api::core::v1::TCPSocketAction {
                port: IntOrString::Int(i32::from(port)),
                host: None,
            }),
            ..Default::default()
        };
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open_port = open.local_addr().unwrap().port();
        assert_eq!(
            run_once(&tcp(open_port), &target, &tools, Duration::from_secs(2)).await,
            Ok(())
        );
        drop(open);
        assert!(
            run_once(&tcp(open_port), &target, &tools, Duration::from_secs(2))
                .await
                .is_err()
        );
    }
}
