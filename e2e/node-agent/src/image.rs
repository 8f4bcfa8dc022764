//! Which local program runs a container, decided by the container's image.
//!
//! There is no container runtime, so an image is only a name: [`classify`] maps it to an
//! [`ImageKind`] (pure), and [`Programs::resolve`] turns the kind into the path of a program on
//! this machine. The mapping is deliberately small and explicit:
//!
//! | image (any registry prefix)    | program                                                  |
//! |--------------------------------|----------------------------------------------------------|
//! | `pingcap/pd[:tag]`             | the real `pd-server` (the tag is ignored: one build)     |
//! | `pingcap/tikv:vX.Y.Z`          | `tikv-sim`, told its version through `TIKV_SIM_VERSION`  |
//! | `node-agent.test/sh` (test only) | `/bin/sh`, only when [`Programs::test_images`] is on   |
//!
//! Anything else is refused with a message the pod's status shows (`ErrImagePull`).
//!
//! Argument convention: the image decides the program; the container's `command` minus its
//! first element, followed by its `args`, are the program's arguments (see
//! [`crate::spec::program_args`]).

use std::path::{Path, PathBuf};

/// The test-only image that runs `/bin/sh` (see the module docs).
pub const TEST_SHELL_IMAGE: &str = "node-agent.test/sh";

/// Environment variable through which `tikv-sim` learns the version of the image it stands in
/// for (the image tag without a leading `v`).
pub const TIKV_SIM_VERSION_ENV: &str = "TIKV_SIM_VERSION";

/// A parsed image reference `[registry/]repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host (with port), when the first path component looks like one.
    pub registry: Option<String>,
    /// Repository path without the registry, e.g. `pingcap/pd`.
    pub repository: String,
    /// Tag, e.g. `v8.5.0`.
    pub tag: Option<String>,
    /// Digest, e.g. `sha256:...`.
    pub digest: Option<String>,
}

/// Why an image cannot run here. Shown in the container's waiting state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The reference is empty or malformed.
    #[error("invalid image reference {0:?}")]
    Invalid(String),
    /// No local program is mapped to this image.
    #[error(
        "node-agent has no local program for image {image:?}; it runs pingcap/pd (pd-server) and \
         pingcap/tikv:<version> (tikv-sim){test_hint}"
    )]
    Unknown {
        /// The image as written in the pod.
        image: String,
        /// Extra hint about the test image.
        test_hint: &'static str,
    },
    /// A TiKV image without a usable version tag.
    #[error("image {0:?}: tikv-sim needs a version tag such as v8.5.0")]
    MissingVersion(String),
    /// The program the image maps to is not on this machine.
    #[error("image {image:?} maps to {program}, which was not found (looked in: {looked})")]
    ProgramMissing {
        /// The image.
        image: String,
        /// Program name.
        program: &'static str,
        /// Where it was looked for.
        looked: String,
    },
}

/// What kind of program an image stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageKind {
    /// The real PD server.
    Pd,
    /// The simulated TiKV store with the given version (no leading `v`).
    Tikv {
        /// Version taken from the tag, e.g. `8.5.0`.
        version: String,
    },
    /// `/bin/sh`, for tests.
    TestShell,
}

/// Parses an image reference. Pure.
pub fn parse_image(image: &str) -> Result<ImageRef, ImageError> {
    let image = image.trim();
    if image.is_empty() || image.contains(char::is_whitespace) {
        return Err(ImageError::Invalid(image.to_string()));
    }
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d.to_string())),
        None => (image, None),
    };
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (
            &rest[..last_slash + i],
            Some(rest[last_slash + i + 1..].to_string()),
        ),
        None => (rest, None),
    };
    if name.is_empty() || tag.as_deref() == Some("") {
        return Err(ImageError::Invalid(image.to_string()));
    }
    let (registry, repository) = match name.split_once('/') {
        Some((first, repo))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first.to_string()), repo.to_string())
        }
        _ => (None, name.to_string()),
    };
    if repository.is_empty() || repository.split('/').any(str::is_empty) {
        return Err(ImageError::Invalid(image.to_string()));
    }
    Ok(ImageRef {
        registry,
        repository,
        tag,
        digest,
    })
}

fn repository_is(image: &ImageRef, wanted: &str) -> bool {
    image.repository == wanted || image.repository.ends_with(&format!("/{wanted}"))
}

/// Maps an image to the kind of program that runs it. Pure.
///
/// `test_images` enables [`TEST_SHELL_IMAGE`].
pub fn classify(image: &str, test_images: bool) -> Result<ImageKind, ImageError> {
    let parsed = parse_image(image)?;
    if test_images
        && parsed.registry.as_deref() == Some("node-agent.test")
        && parsed.repository == "sh"
    {
        return Ok(ImageKind::TestShell);
    }
    if repository_is(&parsed, "pingcap/pd") {
        return Ok(ImageKind::Pd);
    }
    if repository_is(&parsed, "pingcap/tikv") {
        let version = parsed
            .tag
            .as_deref()
            .map(|t| t.strip_prefix('v').unwrap_or(t))
            .filter(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit()))
            .ok_or_else(|| ImageError::MissingVersion(image.to_string()))?;
        return Ok(ImageKind::Tikv {
            version: version.to_string(),
        });
    }
    let test_hint = if test_images {
        " and node-agent.test/sh (/bin/sh)"
    } else {
        ""
    };
    Err(ImageError::Unknown {
        image: image.to_string(),
        test_hint,
    })
}

/// A program to run for a container: its path and the extra environment the image implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// Absolute path of the executable.
    pub path: PathBuf,
    /// Environment added before the container's own (the container's variables win).
    pub env: Vec<(String, String)>,
}

/// Where the programs live. Built from the agent configuration.
#[derive(Debug, Clone, Default)]
pub struct Programs {
    /// Explicit path of `pd-server`.
    pub pd_server: Option<PathBuf>,
    /// Explicit path of `tikv-sim`.
    pub tikv_sim: Option<PathBuf>,
    /// Directories searched (in order) for `pd-server` and `tikv-sim` when no explicit path is
    /// given. See [`default_search_dirs`].
    pub search_dirs: Vec<PathBuf>,
    /// Whether [`TEST_SHELL_IMAGE`] is accepted.
    pub test_images: bool,
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The default search path for programs, in order: `bin_dir` (if given),
/// `$TIKV_OPERATOR_BIN_DIR`, `~/.cache/tikv-operator/bin`, `$CARGO_TARGET_DIR/debug`, the
/// directory of the running executable and its parent (a test binary lives in
/// `target/debug/deps`, next to `target/debug/tikv-sim`), and `target/debug` of the workspace
/// this crate was compiled in.
pub fn default_search_dirs(bin_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    dirs.extend(bin_dir.map(Path::to_path_buf));
    if let Some(d) = std::env::var_os("TIKV_OPERATOR_BIN_DIR").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(d));
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        dirs.push(PathBuf::from(home).join(".cache/tikv-operator/bin"));
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(t).join("debug"));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        dirs.push(dir.to_path_buf());
        dirs.extend(dir.parent().map(Path::to_path_buf));
    }
    // e2e/node-agent -> workspace root.
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug"));
    dirs
}

impl Programs {
    fn find(
        &self,
        explicit: Option<&PathBuf>,
        name: &'static str,
        image: &str,
    ) -> Result<PathBuf, ImageError> {
        let candidates: Vec<PathBuf> = match explicit {
            Some(p) => vec![p.clone()],
            None => self.search_dirs.iter().map(|d| d.join(name)).collect(),
        };
        candidates
            .iter()
            .find(|p| is_executable(p))
            .cloned()
            .ok_or_else(|| ImageError::ProgramMissing {
                image: image.to_string(),
                program: name,
                looked: candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Resolves an image to the program that runs it on this machine.
    pub fn resolve(&self, image: &str) -> Result<Program, ImageError> {
        match classify(image, self.test_images)? {
            ImageKind::Pd => Ok(Program {
                path: self.find(self.pd_server.as_ref(), "pd-server", image)?,
                env: Vec::new(),
            }),
            ImageKind::Tikv { version } => Ok(Program {
                path: self.find(self.tikv_sim.as_ref(), "tikv-sim", image)?,
                env: vec![(TIKV_SIM_VERSION_ENV.to_string(), version)],
            }),
            ImageKind::TestShell => Ok(Program {
                path: PathBuf::from("/bin/sh"),
                env: Vec::new(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r = parse_image("gcr.io/pingcap/pd:v8.5.0").unwrap();
        assert_eq!(r.registry.as_deref(), Some("gcr.io"));
        assert_eq!(r.repository, "pingcap/pd");
        assert_eq!(r.tag.as_deref(), Some("v8.5.0"));
        let r = parse_image("localhost:5000/pingcap/tikv:v7.1.0@sha256:abc").unwrap();
        assert_eq!(r.registry.as_deref(), Some("localhost:5000"));
        assert_eq!(r.repository, "pingcap/tikv");
        assert_eq!(r.tag.as_deref(), Some("v7.1.0"));
        assert_eq!(r.digest.as_deref(), Some("sha256:abc"));
        let r = parse_image("pingcap/pd").unwrap();
        assert_eq!((r.registry, r.tag), (None, None));
        assert!(parse_image("").is_err());
        assert!(parse_image("pingcap/pd:").is_err());
        assert!(parse_image("a b").is_err());
    }

    #[test]
    fn classifies_images() {
        assert_eq!(classify("pingcap/pd:v8.5.0", false), Ok(ImageKind::Pd));
        assert_eq!(classify("docker.io/pingcap/pd", false), Ok(ImageKind::Pd));
        assert_eq!(
            classify("registry.example.com/mirror/pingcap/pd:v8.5.1", false),
            Ok(ImageKind::Pd)
        );
        assert_eq!(
            classify("pingcap/tikv:v8.5.0", false),
            Ok(ImageKind::Tikv {
                version: "8.5.0".into()
            })
        );
        assert_eq!(
            classify("hub.io/pingcap/tikv:7.5.1", false),
            Ok(ImageKind::Tikv {
                version: "7.5.1".into()
            })
        );
        assert!(matches!(
            classify("pingcap/tikv", false),
            Err(ImageError::MissingVersion(_))
        ));
        assert!(matches!(
            classify("pingcap/tikv:latest", false),
            Err(ImageError::MissingVersion(_))
        ));
        assert!(matches!(
            classify("pingcap/pdx:v1", false),
            Err(ImageError::Unknown { .. })
        ));
        assert!(matches!(
            classify("nginx", false),
            Err(ImageError::Unknown { .. })
        ));
        assert!(matches!(
            classify(TEST_SHELL_IMAGE, false),
            Err(ImageError::Unknown { .. })
        ));
        assert_eq!(classify(TEST_SHELL_IMAGE, true), Ok(ImageKind::TestShell));
        assert_eq!(
            classify("node-agent.test/sh:any", true),
            Ok(ImageKind::TestShell)
        );
    }

    #[test]
    fn resolves_programs_and_reports_missing_ones() {
        let programs = Programs {
            search_dirs: vec![PathBuf::from("/nonexistent")],
            ..Default::default()
        };
        let err = programs.resolve("pingcap/pd:v8.5.0").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/pd-server"), "{err}");
        let programs = Programs {
            tikv_sim: Some(PathBuf::from("/bin/sh")),
            ..Default::default()
        };
        let p = programs.resolve("pingcap/tikv:v8.5.0").unwrap();
        assert_eq!(p.path, PathBuf::from("/bin/sh"));
        assert_eq!(
            p.env,
            vec![(TIKV_SIM_VERSION_ENV.to_string(), "8.5.0".to_string())]
        );
    }
}
