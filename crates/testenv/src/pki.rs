//! Certificates for TLS tests, in cert-manager's layout (`ca.crt`, `tls.crt`, `tls.key`): a CA
//! that issues peer certificates (server and client auth, for PD members and stores) and client
//! certificates, and directories written the way the kubelet updates a mounted Secret (all three
//! files switch at once through a symlink swap), so that a process reading them never sees a
//! certificate with another one's key.
//!
//! Keys are ECDSA P-256. Validity defaults to a day back and a year ahead.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::Error;

/// A certificate authority.
pub struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("testenv::tls::Ca")
    }
}

/// What a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A cluster member: server and client auth.
    Peer,
    /// A client: client auth only.
    Client,
}

/// A certificate to issue.
#[derive(Clone, Debug)]
pub struct Leaf {
    /// Subject common name.
    pub common_name: String,
    /// Subject alternative names: DNS names (`*.x` wildcards too) or IP addresses.
    pub names: Vec<String>,
    /// Its usage.
    pub role: Role,
    /// Valid from (default: a day ago).
    pub not_before: SystemTime,
    /// Valid until (default: a year from now).
    pub not_after: SystemTime,
}

impl Leaf {
    /// A peer certificate for `names`, valid from a day ago for a year.
    pub fn peer(common_name: &str, names: &[&str]) -> Leaf {
        let now = SystemTime::now();
        Leaf {
            common_name: common_name.to_string(),
            names: names.iter().map(|n| n.to_string()).collect(),
            role: Role::Peer,
            not_before: now - Duration::from_secs(86_400),
            not_after: now + Duration::from_secs(365 * 86_400),
        }
    }

    /// A client certificate, valid from a day ago for a year.
    pub fn client(common_name: &str) -> Leaf {
        Leaf {
            role: Role::Client,
            ..Leaf::peer(common_name, &[])
        }
    }
}

/// A certificate and its key, PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    /// `tls.crt`.
    pub cert: String,
    /// `tls.key`.
    pub key: String,
}

impl Pair {
    /// The set this pair makes with the trust bundle `ca` (PEM of one or more CAs).
    pub fn material(&self, ca: &str) -> tls::Material {
        tls::Material {
            ca: ca.as_bytes().to_vec(),
            cert: self.cert.as_bytes().to_vec(),
            key: self.key.as_bytes().to_vec(),
        }
    }

    /// The certificate's DER (what a server presents in its handshake).
    pub fn der(&self) -> Vec<u8> {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(self.cert.as_bytes())
            .map(|c| c.to_vec())
            .unwrap_or_default()
    }
}

impl Ca {
    /// A new CA called `name`.
    pub fn new(name: &str) -> Result<Ca, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        let key = KeyPair::generate()?;
        let pem = params.self_signed(&key)?.pem();
        Ok(Ca {
            pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Issues `leaf`.
    pub fn issue(&self, leaf: &Leaf) -> Result<Pair, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, leaf.common_name.as_str());
        for name in &leaf.names {
            params.subject_alt_names.push(match name.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.as_str().try_into()?),
            });
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = match leaf.role {
            Role::Peer => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Role::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.not_before = leaf.not_before.into();
        params.not_after = leaf.not_after.into();
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        Ok(Pair {
            cert: params.signed_by(&key, &self.issuer)?.pem(),
            key: key.serialize_pem(),
        })
    }
}

/// Writes `ca.crt`, `tls.crt` and `tls.key` into `dir` as the kubelet updates a Secret volume:
/// the files are symlinks into `..data`, itself a symlink to a directory of this version, swapped
/// by a rename, so all three change at once.
pub fn write_dir(dir: &Path, ca: &str, pair: &Pair) -> Result<(), Error> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let io = |what: &str, p: &Path| Error::io(format!("{what} {}", p.display()));
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let version = format!(
        "..{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let version_dir = dir.join(&version);
    std::fs::create_dir(&version_dir).map_err(io("creating", &version_dir))?;
    for (file, content) in [
        (tls::CA, ca),
        (tls::CERT, pair.cert.as_str()),
        (tls::KEY, pair.key.as_str()),
    ] {
        let path = version_dir.join(file);
        std::fs::write(&path, content).map_err(io("writing", &path))?;
    }
    let data = dir.join("..data");
    let old = std::fs::read_link(&data).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&version, &tmp).map_err(io("linking", &tmp))?;
    std::fs::rename(&tmp, &data).map_err(io("swapping", &data))?;
    for file in [tls::CA, tls::CERT, tls::KEY] {
        let link = dir.join(file);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(file), &link)
                .map_err(io("linking", &link))?;
        }
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

/// The certificates of a PD cluster run with TLS: one directory per member, store and client
/// (`pd-0`, `tikv-1`, `client`, ...) under a root, each in cert-manager's layout.
#[derive(Debug)]
pub struct Pki {
    /// The CA that issued the certificates in place at start.
    pub ca: Ca,
    root: PathBuf,
}

/// The names every certificate of a loopback cluster is valid for.
pub const LOOPBACK_NAMES: &[&str] = &["127.0.0.1", "localhost"];

impl Pki {
    /// A new CA, with certificates under `root`.
    pub fn new(root: &Path) -> Result<Pki, Error> {
        Ok(Pki {
            ca: Ca::new("testenv-pd-ca")?,
            root: root.to_path_buf(),
        })
    }

    /// The directory of `component` (`pd-0`, `tikv-0`, `client`).
    pub fn dir(&self, component: &str) -> PathBuf {
        self.root.join(component)
    }

    /// Issues a fresh certificate for `component` from `ca`, trusting `bundle`, and writes it
    /// into the component's directory; returns it. Members and stores get peer certificates for
    /// loopback, `client` a client certificate.
    pub fn issue(&self, component: &str, ca: &Ca, bundle: &str) -> Result<Pair, Error> {
        let leaf = if component == "client" {
            Leaf::client(component)
        } else {
            Leaf::peer(component, LOOPBACK_NAMES)
        };
        let pair = ca.issue(&leaf)?;
        write_dir(&self.dir(component), bundle, &pair)?;
        Ok(pair)
    }

    /// What `component`'s directory holds now.
    pub fn material(&self, component: &str) -> Result<tls::Material, Error> {
        tls::Paths::in_dir(&self.dir(component))
            .read()
            .map_err(|e| Error::Io {
                context: format!("reading the TLS files of {component}"),
                source: std::io::Error::other(e.to_string()),
            })
    }

    /// A rustls client config with `component`'s certificate (for harness requests).
    pub fn client_config(&self, component: &str) -> Result<rustls::ClientConfig, Error> {
        let material = self.material(component)?;
        let parsed = material.parse().map_err(tls_error)?;
        tls::config::client(&parsed, &[]).map_err(tls_error)
    }
}

/// A rustls client config trusting the CAs in `ca` (PEM), presenting `pair` when given (else
/// no certificate: what a server requiring client certificates must refuse).
pub fn client_config(ca: &str, pair: Option<&Pair>) -> Result<rustls::ClientConfig, Error> {
    use rustls_pki_types::pem::PemObject;
    if let Some(p) = pair {
        let parsed = p.material(ca).parse().map_err(tls_error)?;
        return tls::config::client(&parsed, &[]).map_err(tls_error);
    }
    let bad_ca = |e: &dyn std::fmt::Display| tls_error(tls::Problem::BadCa(e.to_string()));
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots
            .add(c.map_err(|e| bad_ca(&e))?)
            .map_err(|e| bad_ca(&e))?;
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(tls::config::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad_ca(&e))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// What a TLS handshake with `addr` as `server_name` (then one request and one read) gives with
/// `config`: the certificate the server presented (DER), or why it failed. TLS 1.3 reports a
/// refused client certificate only on the first read, hence the request.
pub async fn handshake(
    addr: &str,
    server_name: &str,
    config: rustls::ClientConfig,
) -> Result<Vec<u8>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = connect(addr, server_name, config).await?;
    let served = tls.get_ref().1.peer_certificates().unwrap_or_default()[0].to_vec();
    // HTTP/1 and HTTP/2 servers both answer (or close); a refused client sees the alert.
    tls.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(3), tls.read(&mut buf)).await {
        Ok(Err(e)) => Err(e.to_string()),
        _ => Ok(served),
    }
}

/// `GET path` over TLS to `addr` as `server_name` with `config`: the status code and body.
pub async fn https_get(
    addr: &str,
    server_name: &str,
    config: rustls::ClientConfig,
    path: &str,
) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = connect(addr, server_name, config).await?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    // A peer that closes without close_notify still gave its answer.
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    let code = text
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    Ok((code, body))
}

async fn connect(
    addr: &str,
    server_name: &str,
    config: rustls::ClientConfig,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())
}

fn tls_error(p: tls::Problem) -> Error {
    Error::Io {
        context: "using the test certificates".into(),
        source: std::io::Error::other(p.to_string()),
    }
}

/// A Secret of cert-manager's layout (`ca.crt`, `tls.crt`, `tls.key`) holding `pair` and the CA
/// that issued it.
pub fn secret(name: &str, ca: &Ca, pair: &Pair) -> k8s_openapi::api::core::v1::Secret {
    use k8s_openapi::ByteString;
    let data = [
        ("ca.crt", ca.pem()),
        ("tls.crt", pair.cert.as_str()),
        ("tls.key", pair.key.as_str()),
    ];
    k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}
