//! Running the system tools the environment is built with (`ip`, `ctr`, `crictl`, `kubectl`).

use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};

use crate::Error;

/// Runs `program args...` to completion; its stdout on success, else [`Error::Command`] with
/// what it printed.
pub fn run<I, S>(program: impl AsRef<OsStr>, args: I) -> Result<String, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args);
    output(&mut cmd)
}

/// Runs a prepared command to completion (stdin `/dev/null`); see [`run`].
pub fn output(cmd: &mut Command) -> Result<String, Error> {
    let line = command_line(cmd);
    let out: Output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::MissingTool {
                name: cmd.get_program().to_string_lossy().into_owned(),
                hint: "install it (e2e/tools/deps.sh installs what the environment needs)".into(),
            },
            _ => Error::Io {
                context: format!("running `{line}`"),
                source: e,
            },
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let text = if err.trim().is_empty() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        err.into_owned()
    };
    Err(Error::Command {
        command: line,
        status: out.status.to_string(),
        output: text.trim().to_string(),
    })
}

/// `ip -n NETNS args...`.
pub fn ip<I, S>(netns: &str, args: I) -> Result<String, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("ip");
    cmd.arg("-n").arg(netns).args(args);
    output(&mut cmd)
}

/// The command as one would type it (for messages).
pub fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
