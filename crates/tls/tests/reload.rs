//! A server on [`tls::net::incoming`] with configs from [`tls::Reloading`], and clients through
//! [`tls::net::Connector`]: mutual TLS is enforced, and changed files (a renewed certificate, a
//! bundle with a second CA) apply to the next connection without a restart, while a broken
//! change leaves the last good set in use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose as Eku, IsCa, Issuer, KeyPair,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tls::config::{self, ALPN_GRPC, ClientAuth};
use tls::{Material, Paths, Reloading};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_service::Service;

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, name.to_string());
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let pem = p.self_signed(&key).unwrap().pem();
    Ca {
        pem,
        issuer: Issuer::new(p, key),
    }
}

/// A certificate for 127.0.0.1 with server and client usage: `(cert, key)`.
fn leaf(ca: &Ca) -> (String, String) {
    let mut p =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    p.extended_key_usages = vec![Eku::ServerAuth, Eku::ClientAuth];
    let key = KeyPair::generate().unwrap();
    (
        p.signed_by(&key, &ca.issuer).unwrap().pem(),
        key.serialize_pem(),
    )
}

fn write(dir: &Path, ca: &str, (cert, key): &(String, String)) {
    std::fs::write(dir.join("ca.crt"), ca).unwrap();
    std::fs::write(dir.join("tls.crt"), cert).unwrap();
    std::fs::write(dir.join("tls.key"), key).unwrap();
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tls-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn client_config(ca: &str, leaf: Option<&(String, String)>) -> Arc<rustls::ClientConfig> {
    match leaf {
        Some((cert, key)) => {
            let m = Material {
                ca: ca.into(),
                cert: cert.clone().into(),
                key: key.clone().into(),
            };
            Arc::new(config::client(&m.parse().unwrap(), ALPN_GRPC).unwrap())
        }
        None => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            Arc::new(
                rustls::ClientConfig::builder_with_provider(config::provider())
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        }
    }
}

/// Dials the server, sends a byte and reads its echo: `Ok(the server's certificate)`.
async fn exchange(port: u16, config: Arc<rustls::ClientConfig>) -> Result<Vec<u8>, String> {
    let mut connector = tls::net::Connector::new(Arc::new(move || config.clone()));
    let uri: http::Uri = format!("https://127.0.0.1:{port}").parse().unwrap();
    let io = connector.call(uri).await.map_err(|e| e.to_string())?;
    let mut stream = io.into_inner();
    let served = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    stream.write_all(b"x").await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1];
    // TLS 1.3 reports a refused client certificate on the first read.
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    Ok(served)
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn mutual_tls_and_reloading_without_restart() {
    let dir = temp_dir("reload");
    let (a, b) = (ca("a"), ca("b"));
    let first = leaf(&a);
    write(&dir, &a.pem, &first);
    let reloading = Arc::new(
        Reloading::new(
            Paths::in_dir(&dir),
            Box::new(|p| config::server(p, ALPN_GRPC, ClientAuth::Required).map(Arc::new)),
        )
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let source = reloading.clone();
    let mut incoming = Box::pin(tls::net::incoming(
        listener,
        Arc::new(move || (*source.get()).clone()),
    ));
    tokio::spawn(async move {
        while let Some(Ok(mut conn)) = incoming.next().await {
            assert!(conn.authenticated());
            tokio::spawn(async move {
                let mut buf = [0u8; 1];
                if conn.read_exact(&mut buf).await.is_ok() {
                    let _ = conn.write_all(&buf).await;
                }
            });
        }
    });

    let client_a = leaf(&a);
    assert_eq!(
        exchange(port, client_config(&a.pem, Some(&client_a)))
            .await
            .unwrap(),
        der(&first.0)
    );
    // Without a certificate, or with one of another CA: refused.
    assert!(exchange(port, client_config(&a.pem, None)).await.is_err());
    let client_b = leaf(&b);
    assert!(
        exchange(port, client_config(&a.pem, Some(&client_b)))
            .await
            .is_err()
    );

    // Renewed: the next connection gets the new certificate.
    let renewed = leaf(&a);
    write(&dir, &a.pem, &renewed);
    assert_eq!(
        exchange(port, client_config(&a.pem, Some(&client_a)))
            .await
            .unwrap(),
        der(&renewed.0)
    );

    // A broken change (a key of another certificate) leaves the renewed one in use.
    write(&dir, &a.pem, &(renewed.0.clone(), leaf(&a).1));
    assert_eq!(
        exchange(port, client_config(&a.pem, Some(&client_a)))
            .await
            .unwrap(),
        der(&renewed.0)
    );

    // CA rotation, step 1: a bundle of both CAs is trusted, so clients of either get in.
    let bundle = format!("{}{}", a.pem, b.pem);
    write(&dir, &bundle, &renewed);
    assert!(
        exchange(port, client_config(&a.pem, Some(&client_a)))
            .await
            .is_ok()
    );
    assert!(
        exchange(port, client_config(&bundle, Some(&client_b)))
            .await
            .is_ok()
    );
    // Step 2: the server's certificate from the new CA; clients with the bundle trust it.
    let from_b = leaf(&b);
    write(&dir, &bundle, &from_b);
    assert_eq!(
        exchange(port, client_config(&bundle, Some(&client_a)))
            .await
            .unwrap(),
        der(&from_b.0)
    );
    // Step 3: only the new CA: clients of the old one are refused.
    write(&dir, &b.pem, &from_b);
    assert!(
        exchange(port, client_config(&bundle, Some(&client_a)))
            .await
            .is_err()
    );
    assert!(
        exchange(port, client_config(&b.pem, Some(&client_b)))
            .await
            .is_ok()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_broken_set_does_not_load() {
    let dir = temp_dir("broken");
    let a = ca("a");
    write(&dir, &a.pem, &(leaf(&a).0, leaf(&a).1));
    let err = Reloading::new(
        Paths::in_dir(&dir),
        Box::new(|p| config::server(p, ALPN_GRPC, ClientAuth::Required)),
    )
    .unwrap_err();
    assert!(err.to_string().contains("tls.key is not the key"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
