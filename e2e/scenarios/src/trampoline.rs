//! [`run`]: a scenario's body runs inside an environment of its own.

use std::ffi::OsString;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use e2e_env::state::STATE_ENV;
use testenv::process::Server;

/// Runs a scenario. Inside an environment (the child that `tikv-env run` started), runs
/// `scenario` on a multi-threaded runtime. Outside (the cargo test or bench process), drops it
/// unpolled and runs this test (or this whole benchmark) again inside a new environment: builds
/// the images if needed, starts `tikv-env run`, relays the child's output and fails if it failed.
///
/// # Panics
///
/// When the scenario fails, or when the environment cannot be started (the message says why,
/// e.g. a binary that is not built).
pub fn run<F: Future<Output = ()>>(scenario: F) {
    if std::env::var_os(STATE_ENV).is_some() {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(scenario);
        return;
    }
    drop(scenario);
    let exe = std::env::current_exe().expect("the path of this test binary");
    let profile = profile_dir(&exe);
    build_images(&profile);
    let tikv_env = profile.join("tikv-env");
    assert!(
        tikv_env.exists(),
        "{} is missing: build it with `cargo build --workspace --bins` (just test does)",
        tikv_env.display()
    );
    // libtest names each test's thread after the test; a benchmark's main has the main thread.
    let test = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .map(str::to_string);
    let dir = state_dir();
    let mut args: Vec<OsString> = vec![
        "run".into(),
        "--state".into(),
        dir.clone().into(),
        "--images".into(),
        profile.join("images").into(),
        "--".into(),
        exe.clone().into(),
    ];
    match &test {
        Some(name) => args.extend(
            [
                "--exact",
                name,
                "--nocapture",
                "--include-ignored",
                "--test-threads=1",
            ]
            .map(OsString::from),
        ),
        None => args.extend(std::env::args_os().skip(1)),
    }
    let logs = std::env::temp_dir();
    let name = format!("tikv-env-{}-{}", std::process::id(), next());
    match test {
        // A test's output is captured by the harness (shown when it fails): relay it with print!.
        Some(test) => {
            let mut env = Server::spawn(&name, &tikv_env, &args, &logs).unwrap();
            let log = env.log_path().to_path_buf();
            let status = relay(&mut env, &log);
            let _ = std::fs::remove_file(&log);
            // Empty unless teardown left something, which then stays for a look.
            let _ = std::fs::remove_dir(&dir);
            assert!(
                status == Some(0),
                "scenario {test} failed (exit status {status:?})"
            );
        }
        None => {
            let mut env = Server::spawn_inheriting(&name, &tikv_env, &args, &[], &logs).unwrap();
            let status = loop {
                if let Some(s) = env.exit_status() {
                    break s.code();
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            let _ = std::fs::remove_dir(&dir);
            if status != Some(0) {
                std::process::exit(status.unwrap_or(1));
            }
        }
    }
}

/// Prints what `env` writes to `log` as it comes, until it exits; its exit code.
fn relay(env: &mut Server, log: &Path) -> Option<i32> {
    let mut offset = 0;
    loop {
        let done = env.exit_status();
        if let Ok(mut f) = std::fs::File::open(log)
            && f.seek(SeekFrom::Start(offset)).is_ok()
        {
            let mut buf = Vec::new();
            if let Ok(n) = f.read_to_end(&mut buf) {
                offset += n as u64;
                print!("{}", String::from_utf8_lossy(&buf));
            }
        }
        if let Some(status) = done {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `target/<profile>` for a test or bench binary in `target/<profile>/deps`.
fn profile_dir(exe: &Path) -> PathBuf {
    let dir = exe.parent().expect("a binary is in a directory");
    if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir).to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// The images from this profile's binaries, rebuilt when their inputs changed (`images/build.sh`
/// skips what is up to date). One build at a time: tests of one binary run in parallel.
fn build_images(profile: &Path) {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images/build.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .env("TIKV_IMAGE_BINS", profile)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building the images failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn next() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A new directory for one environment.
fn state_dir() -> PathBuf {
    std::env::temp_dir().join(format!("tikv-e2e-{}-{}", std::process::id(), next()))
}
