//! A server on [`tls::net::incoming`] with configs from [`tls::Reloading`], and clients through
//! [`tls::net::Connector`]: mutual TLS is enforced, and changed files (a renewed certificate, a
//! bundle with a second CA) apply to the next connection without a restart, while a broken
//! change leaves the last good set in use.

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use testenv::pki::{Ca, Leaf, Pair, write_dir};
use tls::config::{self, ALPN_GRPC, ClientAuth};
use tls::{Paths, Reloading};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_service::Service;

fn ca(name: &str) -> Ca {
    Ca::new(name).unwrap()
}

/// A certificate for 127.0.0.1 with server and client usage.
fn leaf(ca: &Ca) -> Pair {
    ca.issue(&Leaf::peer("test", &["127.0.0.1", "localhost"]))
        .unwrap()
}

/// The three files in `dir`, swapped at once as the kubelet updates a Secret volume.
fn write(dir: &std::path::Path, ca: &str, pair: &Pair) {
    write_dir(dir, ca, pair).unwrap();
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tls-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn client_config(ca: &str, leaf: Option<&Pair>) -> Arc<rustls::ClientConfig> {
    Arc::new(testenv::pki::client_config(ca, leaf).unwrap())
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

#[tokio::test]
async fn mutual_tls_and_reloading_without_restart() {
    let dir = temp_dir("reload");
    let (a, b) = (ca("a"), ca("b"));
    let first = leaf(&a);
    write(&dir, a.pem(), &first);
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
        exchange(port, client_config(a.pem(), Some(&client_a)))
            .await
            .unwrap(),
        first.der()
    );
    // Without a certificate, or with one of another CA: refused.
    assert!(exchange(port, client_config(a.pem(), None)).await.is_err());
    let client_b = leaf(&b);
    assert!(
        exchange(port, client_config(a.pem(), Some(&client_b)))
            .await
            .is_err()
    );

    // Renewed: the next connection gets the new certificate.
    let renewed = leaf(&a);
    write(&dir, a.pem(), &renewed);
    assert_eq!(
        exchange(port, client_config(a.pem(), Some(&client_a)))
            .await
            .unwrap(),
        renewed.der()
    );

    // A broken change (a key of another certificate) leaves the renewed one in use.
    write(
        &dir,
        a.pem(),
        &Pair {
            cert: renewed.cert.clone(),
            key: leaf(&a).key,
        },
    );
    assert_eq!(
        exchange(port, client_config(a.pem(), Some(&client_a)))
            .await
            .unwrap(),
        renewed.der()
    );

    // CA rotation, step 1: a bundle of both CAs is trusted, so clients of either get in.
    let bundle = format!("{}{}", a.pem(), b.pem());
    write(&dir, &bundle, &renewed);
    assert!(
        exchange(port, client_config(a.pem(), Some(&client_a)))
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
        from_b.der()
    );
    // Step 3: only the new CA: clients of the old one are refused.
    write(&dir, b.pem(), &from_b);
    assert!(
        exchange(port, client_config(&bundle, Some(&client_a)))
            .await
            .is_err()
    );
    assert!(
        exchange(port, client_config(b.pem(), Some(&client_b)))
            .await
            .is_ok()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_broken_set_does_not_load() {
    let dir = temp_dir("broken");
    let a = ca("a");
    write(
        &dir,
        a.pem(),
        &Pair {
            cert: leaf(&a).cert,
            key: leaf(&a).key,
        },
    );
    let err = Reloading::new(
        Paths::in_dir(&dir),
        Box::new(|p| config::server(p, ALPN_GRPC, ClientAuth::Required)),
    )
    .unwrap_err();
    assert!(err.to_string().contains("tls.key is not the key"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
