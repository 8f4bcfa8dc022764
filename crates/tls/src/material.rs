//! The three PEM files of cert-manager's layout, and what they parse to.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Key (file name) of the trust bundle: the CA certificates peers' certificates must chain to.
pub const CA: &str = "ca.crt";
/// Key (file name) of the certificate, intermediates after it.
pub const CERT: &str = "tls.crt";
/// Key (file name) of the certificate's private key.
pub const KEY: &str = "tls.key";

/// Why a set of TLS files cannot be used. The messages name the file, for a condition that says
/// which Secret key to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A key is missing or empty.
    #[error("has no {0}")]
    Missing(&'static str),
    /// A file is not PEM.
    #[error("{file} is not PEM: {reason}")]
    NotPem {
        /// Which file.
        file: &'static str,
        /// What the PEM parser said.
        reason: String,
    },
    /// A file holds no certificate.
    #[error("{0} holds no certificate")]
    NoCertificate(&'static str),
    /// `tls.key` holds no private key (or one of an unsupported kind).
    #[error("tls.key holds no usable private key{0}")]
    NoKey(String),
    /// The key does not belong to the certificate.
    #[error("tls.key is not the key of the certificate in tls.crt")]
    KeyMismatch,
    /// A CA certificate cannot be used as a trust anchor.
    #[error("ca.crt: {0}")]
    BadCa(String),
    /// The certificate fails verification against `ca.crt` (issuer, time, names, usage).
    #[error("tls.crt {0}")]
    Rejected(String),
}

/// The PEM bytes of one set, as a Secret or a directory holds them. `ca` may be empty where no
/// trust bundle is needed (a server that does not ask for client certificates).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Material {
    /// `ca.crt`.
    pub ca: Vec<u8>,
    /// `tls.crt`.
    pub cert: Vec<u8>,
    /// `tls.key`.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a private key.
        f.debug_struct("Material")
            .field("ca", &self.ca.len())
            .field("cert", &self.cert.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// A parsed set.
#[derive(Debug)]
pub struct Parsed {
    /// The CA certificates of `ca.crt` (empty when it was empty).
    pub roots: Vec<CertificateDer<'static>>,
    /// `tls.crt`: the certificate first, then any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// `tls.key`.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Parsed {
    fn clone(&self) -> Self {
        Parsed {
            roots: self.roots.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Material {
    /// The three keys of a Secret's data; all must be there and non-empty.
    pub fn from_secret<'a>(get: impl Fn(&str) -> Option<&'a [u8]>) -> Result<Material, Problem> {
        let need = |key: &'static str| {
            get(key)
                .filter(|v| !v.iter().all(u8::is_ascii_whitespace))
                .map(<[u8]>::to_vec)
                .ok_or(Problem::Missing(key))
        };
        Ok(Material {
            ca: need(CA)?,
            cert: need(CERT)?,
            key: need(KEY)?,
        })
    }

    /// Parses the PEM: at least one certificate in `tls.crt`, a private key in `tls.key`, and
    /// (when `ca.crt` is not empty) at least one certificate there.
    pub fn parse(&self) -> Result<Parsed, Problem> {
        let chain = certificates(CERT, &self.cert)?;
        let roots = if self.ca.iter().all(u8::is_ascii_whitespace) {
            Vec::new()
        } else {
            certificates(CA, &self.ca)?
        };
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => Problem::NoKey(String::new()),
            other => Problem::NoKey(format!(": {other}")),
        })?;
        Ok(Parsed { roots, chain, key })
    }
}

fn certificates(file: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Problem> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Problem::NotPem {
            file,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(Problem::NoCertificate(file));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_need_all_three_keys() {
        let data = [(CA, &b"x"[..]), (CERT, b"y"), (KEY, b" \n")];
        let get = |k: &str| data.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        assert_eq!(Material::from_secret(get), Err(Problem::Missing(KEY)));
        let get = |k: &str| data[..1].iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        assert_eq!(Material::from_secret(get), Err(Problem::Missing(CERT)));
    }

    #[test]
    fn parsing_names_the_file_at_fault() {
        let m = Material {
            ca: Vec::new(),
            cert: b"not pem at all".to_vec(),
            key: Vec::new(),
        };
        assert_eq!(m.parse().unwrap_err(), Problem::NoCertificate(CERT));
        let m = Material {
            cert: b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".to_vec(),
            ..m
        };
        assert!(matches!(
            m.parse().unwrap_err(),
            Problem::NotPem { file: CERT, .. }
        ));
        assert!(format!("{m:?}").contains("redacted"));
    }
}
