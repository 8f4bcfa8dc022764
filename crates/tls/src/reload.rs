//! A set read from files and rebuilt whenever their content changes, as TiKV reloads its
//! `[security]` files: every new connection (in or out) asks for the current configs, which
//! re-reads the three files (a few KiB) and rebuilds only when the bytes differ. Established
//! connections keep what they were made with. A changed set that cannot be used is reported once
//! and the last good one stays in use, so a half-written renewal never takes a server down.
//!
//! The files are compared by content, not by modification time: a Secret volume replaces them
//! through a symlink swap, and a test may rewrite one within the file system's time granularity.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::material::{CA, CERT, KEY, Material, Parsed, Problem};

/// Where the files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    /// The trust bundle; `None` for a server that does not check clients.
    pub ca: Option<PathBuf>,
    /// The certificate (intermediates may follow).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl Paths {
    /// `ca.crt`, `tls.crt` and `tls.key` in `dir` (a mounted Secret of cert-manager's layout).
    pub fn in_dir(dir: &Path) -> Paths {
        Paths {
            ca: Some(dir.join(CA)),
            cert: dir.join(CERT),
            key: dir.join(KEY),
        }
    }

    /// Reads the files.
    pub fn read(&self) -> Result<Material, LoadError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| LoadError::Read {
                path: p.to_path_buf(),
                source,
            })
        };
        Ok(Material {
            ca: match &self.ca {
                Some(p) => read(p)?,
                None => Vec::new(),
            },
            cert: read(&self.cert)?,
            key: read(&self.key)?,
        })
    }
}

/// Why a set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The files cannot be used.
    #[error("the TLS files {cert} and {key}: {problem}")]
    Invalid {
        /// The certificate file (the set's name in messages).
        cert: PathBuf,
        /// Its key file.
        key: PathBuf,
        /// What is wrong.
        problem: Problem,
    },
}

/// Builds what a process uses from a parsed set (e.g. a server and a client config).
pub type Build<C> = Box<dyn Fn(&Parsed) -> Result<C, Problem> + Send + Sync>;

/// Configs of type `C` built from files, rebuilt when the files change.
pub struct Reloading<C> {
    paths: Paths,
    build: Build<C>,
    state: Mutex<State<C>>,
}

struct State<C> {
    /// What the current configs were built from.
    material: Material,
    current: Arc<C>,
    /// The last content that could not be used, so it is reported once.
    rejected: Option<Material>,
}

impl<C> std::fmt::Debug for Reloading<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("paths", &self.paths)
            .finish()
    }
}

impl<C> Reloading<C> {
    /// Loads the files once; they must be usable now (a process does not start with a broken
    /// set, as TiKV does not).
    pub fn new(paths: Paths, build: Build<C>) -> Result<Self, LoadError> {
        let material = paths.read()?;
        let current = Arc::new(Self::make(&paths, &build, &material)?);
        Ok(Reloading {
            paths,
            build,
            state: Mutex::new(State {
                material,
                current,
                rejected: None,
            }),
        })
    }

    fn make(paths: &Paths, build: &Build<C>, material: &Material) -> Result<C, LoadError> {
        material
            .parse()
            .and_then(|p| build(&p))
            .map_err(|problem| LoadError::Invalid {
                cert: paths.cert.clone(),
                key: paths.key.clone(),
                problem,
            })
    }

    /// The files.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The configs the files hold now: rebuilt if they changed and can be used, else the last
    /// good ones.
    pub fn get(&self) -> Arc<C> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let material = match self.paths.read() {
            Ok(m) => m,
            Err(e) => {
                // Mid-swap, or deleted: keep serving with what was loaded.
                tracing::debug!(error = %e, "cannot read the TLS files; keeping the loaded ones");
                return state.current.clone();
            }
        };
        if material == state.material || state.rejected.as_ref() == Some(&material) {
            return state.current.clone();
        }
        match Self::make(&self.paths, &self.build, &material) {
            Ok(c) => {
                tracing::info!(cert = %self.paths.cert.display(), "TLS files changed; new connections use them");
                state.current = Arc::new(c);
                state.material = material;
                state.rejected = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the changed TLS files cannot be used; keeping the loaded ones");
                state.rejected = Some(material);
            }
        }
        state.current.clone()
    }
}
