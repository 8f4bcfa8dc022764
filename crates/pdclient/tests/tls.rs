//! PdClient over mutual TLS against the real pd-server (`--cacert/--cert/--key`, `https://`
//! URLs): it works with the client's certificate; PD refuses a client without one or with one
//! from another CA; the registry rebuilds a cluster's client when its certificate is renewed.

use std::time::Duration;

use pdclient::{Error, PdClient, Registry};
use testenv::pd::{PdCluster, PdOptions};
use testenv::pki::{Ca, Leaf};

async fn tls_pd(members: usize) -> PdCluster {
    PdCluster::start(PdOptions {
        members,
        tls: true,
        ..PdOptions::default()
    })
    .await
    .expect("PD starts with TLS")
}

fn client(pd: &PdCluster, material: tls::Material) -> PdClient {
    PdClient::builder(pd.endpoints())
        .timeout(Duration::from_secs(3))
        .tls(material)
        .build()
        .unwrap()
}

#[tokio::test]
async fn https_with_the_clients_certificate_and_refused_without() {
    let pd = tls_pd(3).await;
    let pki = pd.pki().unwrap();
    assert!(pd.endpoints().iter().all(|e| e.starts_with("https://")));
    let ok = client(&pd, pki.material("client").unwrap());
    let members = ok.members().await.unwrap();
    assert_eq!(members.members.len(), 3);
    assert!(
        members
            .members
            .iter()
            .all(|m| m.client_urls.iter().all(|u| u.starts_with("https://")))
    );
    assert!(ok.health().await.unwrap().iter().all(|h| h.health));
    assert!(ok.cluster_id().await.unwrap() > 0);

    // A certificate from another CA (trusting PD's CA, so only PD can say no).
    let other = Ca::new("other").unwrap();
    let stranger = other.issue(&Leaf::client("stranger")).unwrap();
    let refused = client(&pd, stranger.material(pki.ca.pem()));
    match refused.members().await {
        Err(Error::Unavailable { attempts, .. }) => {
            assert_eq!(attempts.len(), 3, "{attempts:?}");
            assert!(
                attempts.iter().all(|a| a.contains("UnknownCA")),
                "refused for its certificate: {attempts:?}"
            );
        }
        other => panic!("a client of another CA got {other:?}"),
    }
    // Plain HTTP to a TLS port is no answer either.
    let plain = PdClient::builder(
        pd.endpoints()
            .iter()
            .map(|e| e.replace("https://", "http://")),
    )
    .timeout(Duration::from_secs(3))
    .build()
    .unwrap();
    assert!(matches!(
        plain.members().await,
        Err(Error::Unavailable { .. })
    ));
    // TLS files that cannot be used are an error at build time, naming the file.
    let broken = tls::Material {
        key: Vec::new(),
        ..pki.material("client").unwrap()
    };
    let err = PdClient::builder(pd.endpoints())
        .tls(broken)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("tls.key"), "{err}");
}

#[tokio::test]
async fn the_registry_rebuilds_a_client_when_its_certificate_changes() {
    let pd = tls_pd(1).await;
    let pki = pd.pki().unwrap();
    let registry: Registry<&str> = Registry::new(None);
    let seed = &pd.endpoints()[0];
    let first = pki.material("client").unwrap();
    let a = registry.client(&"c", seed, Some(&first)).unwrap();
    a.members().await.unwrap();
    assert!(
        registry
            .client(&"c", seed, Some(&first))
            .unwrap()
            .is_clone_of(&a)
    );
    // Renewed (same CA, new key): a new client, which PD accepts.
    pki.issue("client", &pki.ca, pki.ca.pem()).unwrap();
    let renewed = pki.material("client").unwrap();
    assert_ne!(renewed, first);
    let b = registry.client(&"c", seed, Some(&renewed)).unwrap();
    assert!(!b.is_clone_of(&a));
    b.members().await.unwrap();
    // Learned member URLs keep the certificate.
    registry.learn(&"c", pd.endpoints());
    registry
        .client(&"c", seed, Some(&renewed))
        .unwrap()
        .health()
        .await
        .unwrap();
}
