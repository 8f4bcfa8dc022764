//! The controller's PD clients against a real three-member pd-server: one client per cluster,
//! reused, that learns every member's URL from PD and fails over to another member when the one
//! it started from is gone; every request is counted in the metrics.

use instance_controller::context::Context;
use operator_runtime::metrics::Metrics;
use testenv::pd::{PdCluster, PdOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_client_learns_the_members_and_fails_over() {
    let mut pd = PdCluster::start(PdOptions {
        members: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let metrics = Metrics::new();
    let registry = Context::pd_registry(&metrics);
    let key = ("ns".to_string(), "basic".to_string());
    let seed = pd.members()[0].client_url().to_string();

    let client = registry.client(&key, &seed, None).unwrap();
    assert_eq!(client.endpoints(), std::slice::from_ref(&seed));
    let members = client.members().await.unwrap().members;
    assert_eq!(members.len(), 3);
    registry.learn(&key, members.iter().flat_map(|m| m.client_urls.clone()));
    let client = registry.client(&key, &seed, None).unwrap();
    assert_eq!(client.endpoints().len(), 3, "{:?}", client.endpoints());
    assert!(
        registry
            .client(&key, &seed, None)
            .unwrap()
            .is_clone_of(&client),
        "the next reconcile gets the same client"
    );

    // The member it started from goes away: the others answer (after an election if it led).
    pd.member_mut("pd-0").unwrap().kill();
    let answered = testenv::wait_for(60, "PD answering through another member", || async {
        let c = registry.client(&key, &seed, None).ok()?;
        c.members().await.ok()
    })
    .await;
    assert_eq!(answered.members.len(), 3);
    // A client that knows only the dead member cannot ask anything.
    let alone = Context::pd_registry(&metrics);
    let err = alone
        .client(&key, &seed, None)
        .unwrap()
        .members()
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");

    let text = metrics.encode();
    assert!(
        text.contains(
            r#"tikv_operator_pd_requests_total{method="GET",route="/members",outcome="ok"}"#
        ),
        "{text}"
    );
    // The lone client's failure (and any met during the election) is counted too.
    assert!(text.contains(
        r#"tikv_operator_pd_requests_total{method="GET",route="/members",outcome="unavailable"}"#
    ));
}
