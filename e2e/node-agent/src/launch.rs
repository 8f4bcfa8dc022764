//! Running one container as a process in its own mount (and UTS) namespace.
//!
//! The agent starts `unshare --mount --uts --propagation private -- sh -c SCRIPT` with the
//! container's environment. [`launch_script`] (pure) writes SCRIPT:
//!
//! 1. bind-mount every volume at its container path (remounting read-only where required) and
//!    set the host name — all private to the new namespace, so `/etc/pd` or `/var/lib/tikv`
//!    inside one container never collide with another container's;
//! 2. start the program in the background as the leader of a new session and process group
//!    (`setsid`), with `SIGINT`/`SIGQUIT` reset to default (`env --default-signal`; a
//!    non-interactive shell would otherwise start it with both ignored), stdin from
//!    `/dev/null` and stdout/stderr appended to the container's log file;
//! 3. print the program's pid once it leads its process group (the agent reads it from the
//!    pipe);
//! 4. start the **watchdog**: a subshell that blocks reading the shell's stdin, a pipe whose
//!    only write end the agent holds (close-on-exec, so no other process inherits it). When
//!    the pipe reaches end-of-file — the agent dropped the container, exited, or was killed,
//!    even with `SIGKILL` — the watchdog sends `SIGKILL` to the program's process group;
//! 5. wait for the program and exit with its status (`128 + signal` when a signal killed it,
//!    which is also kubelet's convention, e.g. 137 for `SIGKILL`).
//!
//! Mount targets that do not exist on the host are created on the host (empty directories or
//! files) before the namespace is entered, because a bind mount needs an existing mount point
//! and there is no separate root file system. They are left in place afterwards: removing a
//! directory that is a mount point in another namespace would detach that mount.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::volumes::Mount;

/// The host tools the agent runs (util-linux and coreutils), by absolute path.
#[derive(Debug, Clone)]
pub struct Tools {
    /// `unshare` (util-linux).
    pub unshare: PathBuf,
    /// `nsenter` (util-linux), for exec probes.
    pub nsenter: PathBuf,
    /// `mount` (util-linux).
    pub mount: PathBuf,
    /// `hostname`.
    pub hostname: PathBuf,
    /// `setsid` (util-linux).
    pub setsid: PathBuf,
    /// `env` (coreutils ≥ 8.31, for `--default-signal`).
    pub env: PathBuf,
    /// A POSIX shell.
    pub sh: PathBuf,
}

/// Why a container could not be started. Reported as `RunContainerError`.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A host tool is missing.
    #[error("required tool `{0}` not found in /usr/bin, /bin, /usr/sbin or /sbin")]
    ToolMissing(&'static str),
    /// Spawning `unshare` failed.
    #[error("starting the container: {0}")]
    Spawn(#[source] std::io::Error),
    /// Preparing the mount points failed.
    #[error("preparing mount point {path}: {source}")]
    MountPoint {
        /// The mount point.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The namespace setup (mounts, host name) failed before the program started.
    #[error("setting up the container failed: {0}")]
    Setup(String),
}

impl Tools {
    /// Finds the tools in the standard directories.
    pub fn find() -> Result<Tools, LaunchError> {
        fn find(name: &'static str) -> Result<PathBuf, LaunchError> {
            ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
                .ok_or(LaunchError::ToolMissing(name))
        }
        Ok(Tools {
            unshare: find("unshare")?,
            nsenter: find("nsenter")?,
            mount: find("mount")?,
            hostname: find("hostname")?,
            setsid: find("setsid")?,
            env: find("env")?,
            sh: find("sh")?,
        })
    }
}

/// Everything needed to start one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// The program (decided by the image).
    pub program: PathBuf,
    /// Its arguments (after `$(VAR)` expansion).
    pub args: Vec<String>,
    /// The complete environment of the program.
    pub env: Vec<(String, String)>,
    /// Bind mounts, parents first.
    pub mounts: Vec<Mount>,
    /// Host name inside the UTS namespace.
    pub hostname: String,
    /// Working directory.
    pub workdir: PathBuf,
    /// Log file (stdout and stderr, appended).
    pub log: PathBuf,
}

/// Quotes `s` for a POSIX shell. Pure.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn q(p: &Path) -> String {
    shell_quote(&p.to_string_lossy())
}

/// The script run by `sh -c` inside the new namespaces (see the module docs). The program and
/// its arguments are passed as positional parameters, not quoted into the script. Pure.
pub fn launch_script(tools: &Tools, spec: &LaunchSpec) -> String {
    let mut s = String::from("set -e\nexec 3<&0\n");
    for m in &spec.mounts {
        s.push_str(&format!(
            "{} --bind -- {} {}\n",
            q(&tools.mount),
            q(&m.source),
            q(&m.target)
        ));
        if m.read_only {
            s.push_str(&format!(
                "{} -o remount,bind,ro -- {}\n",
                q(&tools.mount),
                q(&m.target)
            ));
        }
    }
    s.push_str(&format!(
        "{} {}\n",
        q(&tools.hostname),
        shell_quote(&spec.hostname)
    ));
    s.push_str(&format!("cd -- {}\n", q(&spec.workdir)));
    // Setup is done; from here on a failing command must not end the shell (the watchdog's
    // `read` fails at end-of-file, which is exactly when it has to act).
    s.push_str("set +e\n");
    s.push_str(&format!(
        "{} {} --default-signal=INT,QUIT -- \"$@\" 3<&- </dev/null >>{} 2>&1 &\n",
        q(&tools.setsid),
        q(&tools.env),
        q(&spec.log)
    ));
    s.push_str(concat!(
        "p=$!\n",
        // Report the pid once `setsid` has made it a process-group leader, so that signals to
        // the group reach it (unless it already exited).
        "while ! kill -s 0 -- -\"$p\" 2>/dev/null && kill -s 0 \"$p\" 2>/dev/null; do :; done\n",
        "echo \"$p\"\n",
        "( read _ <&3; kill -s KILL -- -\"$p\" ) </dev/null >/dev/null 2>&1 &\n",
        "w=$!\n",
        "exec 3<&-\n",
        "wait \"$p\"\n",
        "rc=$?\n",
        "kill \"$w\" 2>/dev/null\n",
        "exit \"$rc\"\n",
    ));
    s
}

/// Creates missing mount points on the host: directories, or empty files when the source is a
/// file (a `subPath` of a ConfigMap, for instance).
pub fn prepare_mount_points(mounts: &[Mount]) -> Result<(), LaunchError> {
    for m in mounts {
        let err = |source| LaunchError::MountPoint {
            path: m.target.clone(),
            source,
        };
        if m.target.exists() {
            continue;
        }
        if m.source.is_dir() {
            std::fs::create_dir_all(&m.target).map_err(err)?;
        } else {
            if let Some(parent) = m.target.parent() {
                std::fs::create_dir_all(parent).map_err(err)?;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&m.target)
                .map_err(err)?;
        }
    }
    Ok(())
}

/// A started container: the program's pid (also its process group id) and the agent's end of
/// the watchdog pipe. Dropping the pipe kills the program.
#[derive(Debug)]
pub struct Started {
    /// Pid of the program, leader of its own process group.
    pub pid: i32,
    /// The shell that waits for the program; its exit status is the program's.
    pub child: Child,
    /// Write end of the watchdog pipe.
    pub watchdog: ChildStdin,
}

/// How a program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit code as kubelet reports it (`128 + signal` for signals).
    pub code: i32,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
}

impl ExitInfo {
    /// Interprets the waiting shell's exit status.
    pub fn from_status(status: std::process::ExitStatus) -> ExitInfo {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) if code > 128 && code < 128 + 65 => ExitInfo {
                code,
                signal: Some(code - 128),
            },
            (Some(code), _) => ExitInfo { code, signal: None },
            (None, Some(sig)) => ExitInfo {
                code: 128 + sig,
                signal: Some(sig),
            },
            (None, None) => ExitInfo {
                code: 255,
                signal: None,
            },
        }
    }
}

/// Starts a container (see the module docs) and waits until its program runs.
pub async fn spawn(tools: &Tools, spec: &LaunchSpec) -> Result<Started, LaunchError> {
    prepare_mount_points(&spec.mounts)?;
    if let Some(dir) = spec.log.parent() {
        std::fs::create_dir_all(dir).map_err(LaunchError::Spawn)?;
    }
    std::fs::create_dir_all(&spec.workdir).map_err(LaunchError::Spawn)?;
    let script = launch_script(tools, spec);
    let mut cmd = Command::new(&tools.unshare);
    cmd.args(["--mount", "--uts", "--propagation", "private", "--"])
        .arg(&tools.sh)
        .arg("-c")
        .arg(script)
        .arg("node-agent-container")
        .arg(&spec.program)
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(LaunchError::Spawn)?;
    let watchdog = child
        .stdin
        .take()
        .ok_or_else(|| LaunchError::Setup("no stdin pipe".into()))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| LaunchError::Setup("no stdout pipe".into()))?;
    let mut stderr = child
        .stderr
        .take()
        .ok_or_else(|| LaunchError::Setup("no stderr pipe".into()))?;
    let mut line = String::new();
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await;
    match read
        .ok()
        .and_then(Result::ok)
        .and_then(|_| line.trim().parse::<i32>().ok())
    {
        Some(pid) if pid > 0 => {
            // Keep stderr drained (the shell writes nothing more there normally).
            tokio::spawn(async move {
                let mut sink = Vec::new();
                let _ = stderr.read_to_end(&mut sink).await;
            });
            Ok(Started {
                pid,
                child,
                watchdog,
            })
        }
        _ => {
            let _ = child.start_kill();
            let status = child.wait().await.map_err(LaunchError::Spawn)?;
            let mut msg = String::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(2), stderr.read_to_string(&mut msg)).await;
            Err(LaunchError::Setup(format!("{} ({status})", msg.trim())))
        }
    }
}

/// Sends `signal` to the process group `pgid`. `Ok(false)` when the group no longer exists.
pub fn signal_group(pgid: i32, signal: Signal) -> Result<bool, nix::Error> {
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) => Ok(true),
        Err(nix::Error::ESRCH) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Builds the command that runs `argv` inside the mount and UTS namespaces of the process `pid`
/// with `env` (for exec probes).
pub fn exec_in(tools: &Tools, pid: i32, argv: &[String], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(&tools.nsenter);
    cmd.arg(format!("--target={pid}"))
        .args(["--mount", "--uts", "--"])
        .args(argv)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Tools {
        Tools {
            unshare: "/usr/bin/unshare".into(),
            nsenter: "/usr/bin/nsenter".into(),
            mount: "/usr/bin/mount".into(),
            hostname: "/usr/bin/hostname".into(),
            setsid: "/usr/bin/setsid".into(),
            env: "/usr/bin/env".into(),
            sh: "/bin/sh".into(),
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn script_mounts_then_starts_with_watchdog() {
        let spec = LaunchSpec {
            program: "/bin/sleep".into(),
            args: vec!["1".into()],
            env: vec![],
            mounts: vec![
                Mount {
                    source: "/s/data".into(),
                    target: "/var/lib/tikv".into(),
                    read_only: false,
                },
                Mount {
                    source: "/s/it's".into(),
                    target: "/etc/tikv".into(),
                    read_only: true,
                },
            ],
            hostname: "tikv-0".into(),
            workdir: "/w".into(),
            log: "/l/0.log".into(),
        };
        let s = launch_script(&tools(), &spec);
        let bind_data = s
            .find("'/usr/bin/mount' --bind -- '/s/data' '/var/lib/tikv'")
            .unwrap();
        let bind_cfg = s
            .find(r"'/usr/bin/mount' --bind -- '/s/it'\''s' '/etc/tikv'")
            .unwrap();
        let ro = s
            .find("'/usr/bin/mount' -o remount,bind,ro -- '/etc/tikv'")
            .unwrap();
        let start = s
            .find("\"$@\" 3<&- </dev/null >>'/l/0.log' 2>&1 &")
            .unwrap();
        let errexit_off = s.find("set +e\n").unwrap();
        let watchdog = s.find("read _ <&3; kill -s KILL -- -\"$p\"").unwrap();
        assert!(
            bind_data < bind_cfg
                && bind_cfg < ro
                && ro < errexit_off
                && errexit_off < start
                && start < watchdog
        );
        assert!(s.contains("'/usr/bin/hostname' 'tikv-0'"));
    }

    /// The script really starts the program, reports its pid, and the watchdog kills it
    /// when the pipe closes (no namespaces needed for this part).
    #[tokio::test]
    async fn watchdog_kills_the_program_when_the_pipe_closes() {
        let dir = std::env::temp_dir().join(format!("node-agent-watchdog-{}", std::process::id()));
        let tools = Tools::find().unwrap();
        let spec = LaunchSpec {
            program: "/bin/sleep".into(),
            args: vec!["600".into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            mounts: vec![],
            hostname: "watchdog-test".into(),
            workdir: dir.join("cwd"),
            log: dir.join("log"),
        };
        let mut started = spawn(&tools, &spec).await.unwrap();
        let alive = |pid: i32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
        };
        assert!(alive(started.pid));
        // The program leads its own process group.
        assert!(signal_group(started.pid, Signal::SIGCONT).unwrap());
        drop(started.watchdog);
        let status = tokio::time::timeout(Duration::from_secs(10), started.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            ExitInfo::from_status(status),
            ExitInfo {
                code: 137,
                signal: Some(9)
            }
        );
        assert!(!alive(started.pid));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exit_info_decodes_signals() {
        use std::os::unix::process::ExitStatusExt;
        let st = std::process::ExitStatus::from_raw(137 << 8);
        assert_eq!(
            ExitInfo::from_status(st),
            ExitInfo {
                code: 137,
                signal: Some(9)
            }
        );
        let st = std::process::ExitStatus::from_raw(3 << 8);
        assert_eq!(
            ExitInfo::from_status(st),
            ExitInfo {
                code: 3,
                signal: None
            }
        );
        let st = std::process::ExitStatus::from_raw(15);
        assert_eq!(
            ExitInfo::from_status(st),
            ExitInfo {
                code: 143,
                signal: Some(15)
            }
        );
    }
}
