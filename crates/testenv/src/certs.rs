//! The PKI of a test control plane: a CA, the API server's serving certificate, an admin client
//! certificate, the API server's client certificate for kubelets and the service-account signing
//! key, written as PEM files; more client certificates (kubelets, kube-proxy) on request.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::Error;

/// Paths of the generated PEM files.
#[derive(Debug, Clone)]
pub(crate) struct Pki {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    /// The API server's client certificate towards kubelets (logs, exec, port-forward).
    pub kubelet_client_cert: PathBuf,
    pub kubelet_client_key: PathBuf,
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

/// Names the serving certificate is valid for: loopback (how tests reach the server) and the
/// in-cluster names of the `kubernetes` Service (its IP is added by the caller).
const SERVING_NAMES: &[&str] = &[
    "127.0.0.1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// Common name of the CA; [`issuer`] rebuilds the CA's parameters from it.
const CA_NAME: &str = "tikv-operator-testenv-ca";

fn ca_params() -> Result<CertificateParams, Error> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, CA_NAME);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    Ok(ca_params)
}

/// The CA as an issuer, from its key file: the parameters are the same as at generation, so
/// what it signs chains to the CA certificate.
fn issuer(pki: &Pki) -> Result<Issuer<'static, KeyPair>, Error> {
    let pem = std::fs::read_to_string(&pki.ca_key)
        .map_err(Error::io(format!("reading {}", pki.ca_key.display())))?;
    Ok(Issuer::new(ca_params()?, KeyPair::from_pem(&pem)?))
}

/// A client certificate for user `cn` in `groups` (the API server maps CN to the user and O to
/// its groups), signed by the CA: `(certificate PEM, key PEM)`.
pub(crate) fn client_certificate(
    pki: &Pki,
    cn: &str,
    groups: &[&str],
) -> Result<(String, String), Error> {
    client(&issuer(pki)?, cn, groups)
}

fn client(
    issuer: &Issuer<'_, KeyPair>,
    cn: &str,
    groups: &[&str],
) -> Result<(String, String), Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, cn);
    for g in groups {
        params.distinguished_name.push(DnType::OrganizationName, *g);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    Ok((params.signed_by(&key, issuer)?.pem(), key.serialize_pem()))
}

/// Generates the PKI into `dir`; the serving certificate is also valid for `extra_ips` (the
/// address real nodes reach the API server at, the `kubernetes` Service's IP). Keys are ECDSA
/// P-256 (fast to generate, accepted by Go and rustls); validity is rcgen's default (1975 to
/// 4096), so clock skew never matters.
pub(crate) fn generate(dir: &Path, extra_ips: &[Ipv4Addr]) -> Result<Pki, Error> {
    let pki = Pki {
        ca_cert: dir.join("ca.crt"),
        ca_key: dir.join("ca.key"),
        serving_cert: dir.join("apiserver.crt"),
        serving_key: dir.join("apiserver.key"),
        admin_cert: dir.join("admin.crt"),
        admin_key: dir.join("admin.key"),
        kubelet_client_cert: dir.join("apiserver-kubelet-client.crt"),
        kubelet_client_key: dir.join("apiserver-kubelet-client.key"),
        sa_key: dir.join("sa.key"),
        sa_pub: dir.join("sa.pub"),
    };

    let ca_params = ca_params()?;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    write(&pki.ca_cert, &ca_cert.pem())?;
    write(&pki.ca_key, &ca_key.serialize_pem())?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut serving = CertificateParams::new(
        SERVING_NAMES
            .iter()
            .map(|s| s.to_string())
            .chain(extra_ips.iter().map(|ip| ip.to_string()))
            .collect::<Vec<_>>(),
    )?;
    serving
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    serving.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    serving.use_authority_key_identifier_extension = true;
    let serving_key = KeyPair::generate()?;
    write(
        &pki.serving_cert,
        &serving.signed_by(&serving_key, &issuer)?.pem(),
    )?;
    write(&pki.serving_key, &serving_key.serialize_pem())?;

    // `system:masters` is bound to cluster-admin and bypasses RBAC.
    let (cert, key) = client(&issuer, "testenv-admin", &["system:masters"])?;
    write(&pki.admin_cert, &cert)?;
    write(&pki.admin_key, &key)?;
    // As kubeadm's apiserver-kubelet-client: kubelets authorize it through the API server.
    let (cert, key) = client(
        &issuer,
        "kube-apiserver-kubelet-client",
        &["system:masters"],
    )?;
    write(&pki.kubelet_client_cert, &cert)?;
    write(&pki.kubelet_client_key, &key)?;

    // Service-account tokens are signed with this key (ES256) by the API server and the
    // controller manager's token controller, and verified with its public half.
    let sa_key = KeyPair::generate()?;
    write(&pki.sa_key, &sa_key.serialize_pem())?;
    write(&pki.sa_pub, &sa_key.public_key_pem())?;

    Ok(pki)
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(Error::io(format!("writing {}", path.display())))
}
