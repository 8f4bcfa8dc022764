//! Server processes that cannot outlive the test process, a janitor that removes a temporary
//! directory after it, and loopback port allocation.
//!
//! Public so that other harnesses of this crate (e.g. the pd-server one) start their servers the
//! same way.
//!
//! # The watchdog
//!
//! [`Server::spawn`] runs `sh -c WATCHDOG sh PIDFILE PROGRAM ARGS...` with a piped stdin whose
//! write end only this process holds. The watchdog
//!
//! 1. starts `PROGRAM ARGS...` in the background (stdin `/dev/null`, stdout and stderr the log
//!    file) and writes its pid to `PIDFILE`;
//! 2. starts a reader on a copy of its stdin that blocks until end-of-file and then sends
//!    `SIGKILL` to the server;
//! 3. waits for the server and exits with its status, so [`Server::exit_status`] sees a crash.
//!
//! End-of-file comes when [`Server::stop`] (or `Drop`) closes the pipe, or when this process ends
//! in any way, `SIGKILL` included, because the kernel then closes its descriptors. `SIGKILL` is
//! used rather than `SIGTERM` because nothing a test server holds is worth a graceful shutdown
//! and teardown should be fast.

use std::ffi::OsStr;
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::Error;

/// How many log lines an error about a server quotes.
pub const LOG_TAIL_LINES: usize = 30;

/// The watchdog script; see the module docs. `$1` is the pid file, the rest the command.
const WATCHDOG: &str = r#"pidfile=$1; shift
exec 3<&0
"$@" </dev/null 3<&- &
p=$!
echo "$p" >"$pidfile"
# An asynchronous list gets /dev/null as stdin unless redirected explicitly, hence <&3.
# Ctrl-C in a terminal signals the whole process group; only end-of-file may stop the reader.
{ trap '' INT HUP; while read -r _; do :; done; kill -KILL "$p" 2>/dev/null; } <&3 &
w=$!
exec 3<&-
wait "$p"
rc=$?
kill "$w" 2>/dev/null
exit "$rc"
"#;

/// The janitor script: once stdin closes, wait (at most 10 s) until no server whose pid file is
/// in the directory `$1` is alive, then remove the directory.
const JANITOR: &str = r#"dir=$1
trap '' INT HUP
while read -r _; do :; done
i=0
while [ "$i" -lt 100 ]; do
  alive=
  for f in "$dir"/*.pid; do
    [ -f "$f" ] && kill -0 "$(cat "$f" 2>/dev/null)" 2>/dev/null && alive=1
  done
  [ -z "$alive" ] && break
  sleep 0.1
  i=$((i + 1))
done
rm -rf "$dir"
"#;

/// A server process running under the watchdog. Dropping it kills the server.
#[derive(Debug)]
pub struct Server {
    name: String,
    watchdog: Child,
    /// The write end of the watchdog's stdin; closing it kills the server.
    lifeline: Option<ChildStdin>,
    log: PathBuf,
    pid_file: PathBuf,
}

impl Server {
    /// Starts `program args...` under the watchdog, logging (stdout and stderr) to
    /// `dir/NAME.log` and writing the server's pid to `dir/NAME.pid`. `name` should be a plain
    /// file name such as `etcd` or `pd-0`.
    pub fn spawn<I, S>(name: &str, program: &Path, args: I, dir: &Path) -> Result<Server, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).map_err(Error::io(format!("creating {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(Error::io(format!("duplicating {}", log.display())))?;
        Server::start(
            name,
            program,
            args,
            &[],
            (Stdio::from(out), Stdio::from(err)),
            log,
            dir,
        )
    }

    /// Like [`spawn`](Self::spawn), but the program gets the extra environment variables `envs`
    /// and writes to this process's stdout and stderr: for programs whose output belongs to the
    /// caller's, such as a test process run inside an environment.
    pub fn spawn_inheriting<I, S>(
        name: &str,
        program: &Path,
        args: I,
        envs: &[(&str, &OsStr)],
        dir: &Path,
    ) -> Result<Server, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let log = dir.join(format!("{name}.log"));
        Server::start(
            name,
            program,
            args,
            envs,
            (Stdio::inherit(), Stdio::inherit()),
            log,
            dir,
        )
    }

    fn start<I, S>(
        name: &str,
        program: &Path,
        args: I,
        envs: &[(&str, &OsStr)],
        (out, err): (Stdio, Stdio),
        log: PathBuf,
        dir: &Path,
    ) -> Result<Server, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let pid_file = dir.join(format!("{name}.pid"));
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(&pid_file)
            .arg(program)
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(Error::io(format!(
                "starting {name} ({}) under sh",
                program.display()
            )))?;
        let lifeline = watchdog.stdin.take();
        Ok(Server {
            name: name.to_string(),
            watchdog,
            lifeline,
            log,
            pid_file,
        })
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The server's pid, once the watchdog has written it (a few milliseconds after spawn).
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The exit status, if the server has exited (a server killed by a signal shows as
    /// `128 + signal`, as the shell reports it).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.watchdog.try_wait().ok().flatten()
    }

    /// `Ok` while the server runs; [`Error::ServerExited`] with the end of its log once it has
    /// exited.
    pub fn ensure_running(&mut self) -> Result<(), Error> {
        match self.exit_status() {
            None => Ok(()),
            Some(status) => Err(Error::ServerExited {
                server: self.name.clone(),
                status: status.to_string(),
                log: self.log.clone(),
                tail: log_tail(&self.log, LOG_TAIL_LINES),
            }),
        }
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Kills the server and waits (up to 10 s) until it is gone. Idempotent.
    pub fn stop(&mut self) {
        if self.lifeline.take().is_none() && self.exit_status().is_some() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.exit_status().is_none() {
            if Instant::now() >= deadline {
                // The watchdog did not react: kill both directly.
                if let Some(pid) = self.pid() {
                    kill(pid);
                }
                let _ = self.watchdog.kill();
                let _ = self.watchdog.wait();
                break;
            }
            sleep(Duration::from_millis(10));
        }
        // A stopped server's pid must not make the janitor wait for an unrelated process that
        // reuses the pid.
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `SIGKILL` to `pid` (through `kill(1)`: the workspace forbids `unsafe`, so no libc).
pub fn kill(pid: u32) {
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether a process with this pid exists and is not a zombie (Linux `/proc`).
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Removes a directory once this process has ended, even by `SIGKILL`, after the servers whose
/// pid files are in it are gone. Dropping it (after removing the directory yourself) ends it.
#[derive(Debug)]
pub struct Janitor {
    child: Child,
    lifeline: Option<ChildStdin>,
}

impl Janitor {
    /// Starts the janitor of `dir`.
    pub fn spawn(dir: &Path) -> Result<Janitor, Error> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(JANITOR)
            .arg("sh")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(Error::io("starting the janitor (sh)"))?;
        let lifeline = child.stdin.take();
        Ok(Janitor { child, lifeline })
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        drop(self.lifeline.take());
        // Reap it so that it does not linger as a zombie; it ends at once when the servers are
        // gone (their pid files are removed when they stop).
        let deadline = Instant::now() + Duration::from_secs(15);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            sleep(Duration::from_millis(10));
        }
    }
}

/// `n` distinct free TCP ports on 127.0.0.1. They are free when returned; another process can
/// take one before the server binds it, so callers retry on "address already in use"
/// ([`Error::is_port_conflict`]).
pub fn free_ports(n: usize) -> Result<Vec<u16>, Error> {
    // Holding all listeners until every port is chosen keeps the kernel from handing out the
    // same port twice.
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Error::io("finding a free port on 127.0.0.1"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Error::io("finding a free port on 127.0.0.1"))
}

/// The last `lines` lines of a file (empty if it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    // Lossy: a log may hold anything, and the tail is only for people to read.
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Error {
    /// Whether the error is a server failing to bind its port because another process took it.
    pub fn is_port_conflict(&self) -> bool {
        match self {
            Error::ServerExited { tail, .. } | Error::NotReady { tail, .. } => {
                tail.contains("address already in use")
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("testenv-process-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn wait_for_pid(server: &Server) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = server.pid() {
                return pid;
            }
            assert!(Instant::now() < deadline, "the watchdog wrote no pid file");
            sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn stop_kills_the_server() {
        let dir = temp_dir("stop");
        let mut server = Server::spawn("sleeper", Path::new("sleep"), ["600"], &dir).unwrap();
        let pid = wait_for_pid(&server);
        assert!(is_alive(pid));
        server.ensure_running().unwrap();
        server.stop();
        assert!(!is_alive(pid), "sleep {pid} survived stop()");
        assert!(!dir.join("sleeper.pid").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_exited_server_is_reported_with_its_log() {
        let dir = temp_dir("exit");
        let script = "for i in $(seq 1 40); do echo line $i; done; echo boom >&2; exit 3";
        let mut server = Server::spawn("failing", Path::new("sh"), ["-c", script], &dir).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.exit_status().is_none() {
            assert!(Instant::now() < deadline, "the server did not exit");
            sleep(Duration::from_millis(10));
        }
        let err = server.ensure_running().unwrap_err();
        let Error::ServerExited {
            server: name,
            status,
            tail,
            ..
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!(name, "failing");
        assert!(status.contains('3'), "{status}");
        assert_eq!(tail.lines().count(), LOG_TAIL_LINES);
        assert!(tail.ends_with("line 40\nboom"), "{tail}");
        assert!(!err.is_port_conflict());
        drop(server);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn free_ports_are_distinct() {
        // Whether a port is still free when bound later is a race with every process on the
        // machine (outgoing connections take ephemeral ports too), so only distinctness is
        // promised; servers that lose the race fail with a clear bind error.
        let ports = free_ports(5).unwrap();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 5);
        assert!(ports.iter().all(|p| *p != 0));
    }

    #[test]
    fn the_janitor_removes_the_dir_when_dropped() {
        let dir = temp_dir("janitor");
        std::fs::write(dir.join("file"), "x").unwrap();
        let janitor = Janitor::spawn(&dir).unwrap();
        assert!(dir.exists());
        drop(janitor);
        // Dropping closes the pipe, as the end of the process would.
        let deadline = Instant::now() + Duration::from_secs(10);
        while dir.exists() {
            assert!(
                Instant::now() < deadline,
                "{} was not removed",
                dir.display()
            );
            sleep(Duration::from_millis(10));
        }
    }
}
