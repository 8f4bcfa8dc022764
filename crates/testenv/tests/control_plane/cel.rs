//! Every CEL rule of our CRDs, against the real API server: a bad object is refused with the
//! rule's message, a good one (often the same object with the field fixed) is accepted. Rules
//! that compare with the old object (immutability, storage growth) are checked on updates.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::api::PostParams;
use serde_json::json;

use crate::fixtures::*;

/// The message of every rule that a test below checks. `every_rule_is_covered` fails when a rule
/// is added to the API without a test here.
const COVERED: &[&str] = &[
    "a Cluster name must be at most 40 characters",
    "a PDGroup name must be at most 40 characters",
    "a TiKVGroup name must be at most 40 characters",
    "a PD name must be at most 47 characters",
    "a TiKV name must be at most 47 characters",
    "cluster.name must not be empty",
    "cluster is immutable",
    "subdomain is immutable",
    "topology is immutable",
    "replicas must not be negative",
    "a PDGroup needs at least 1 member: to stop PD keeping its data, suspend the Cluster (spec.suspendAction.suspendCompute); to remove it, delete the Cluster",
    "a PDGroup may lose at most half of its members in one change (PD would lose its quorum): scale down in steps",
    "version must be a semantic version such as v8.5.0",
    "must be a duration such as 30s, 10m or 1h",
    "a volume with a mount of type data is required",
    "volume storage may only grow",
    "volume storage must be more than zero",
    "volume name must be a DNS label of at most 15 characters",
    "a mount needs a type or a mountPath",
    "overlay labels must not use the reserved prefixes tikv.org/ and app.kubernetes.io/",
    "overlay annotations must not use the reserved prefix tikv.org/",
    "store labels zone, host and region are set by the operator",
    "tlsCluster.enabled cannot change once the cluster exists",
];

fn collect_messages(s: &JSONSchemaProps, out: &mut Vec<String>) {
    for rule in s.x_kubernetes_validations.iter().flatten() {
        out.push(rule.message.clone().unwrap_or_else(|| rule.rule.clone()));
    }
    for p in s.properties.iter().flat_map(|p| p.values()) {
        collect_messages(p, out);
    }
    match &s.items {
        Some(JSONSchemaPropsOrArray::Schema(i)) => collect_messages(i, out),
        Some(JSONSchemaPropsOrArray::Schemas(is)) => {
            is.iter().for_each(|i| collect_messages(i, out))
        }
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(a)) = &s.additional_properties {
        collect_messages(a, out);
    }
}

#[test]
fn every_rule_is_covered() {
    let mut messages = Vec::new();
    for crd in api::crds() {
        for version in &crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
            {
                collect_messages(schema, &mut messages);
            }
        }
    }
    assert!(
        messages.len() >= COVERED.len(),
        "found only {} rules: {messages:?}",
        messages.len()
    );
    let missing: Vec<_> = messages
        .iter()
        .filter(|m| !COVERED.contains(&m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "CEL rules without a test in tests/control_plane/cel.rs: {missing:?}"
    );
}

#[tokio::test]
async fn name_lengths() {
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("cel-names").await;
    for kind in ALL_KINDS {
        let api = kind.api(&client, &ns);
        let max = kind.max_name_len();
        let ok = format!("n{}", "x".repeat(max - 1));
        create_ok(&api, kind.good(&ok)).await;
        let too_long = format!("n{}", "x".repeat(max));
        let message = format!("a {:?} name must be at most {max} characters", kind);
        assert_invalid(
            api.create(&PostParams::default(), &obj(kind.good(&too_long)))
                .await,
            &message,
        );
    }
}

#[tokio::test]
async fn cluster_reference_must_name_a_cluster() {
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("cel-clusterref").await;
    for kind in COMPONENT_KINDS {
        let api = kind.api(&client, &ns);
        let mut bad = kind.good("empty-ref");
        set(&mut bad, "/spec/cluster/name", json!(""));
        assert_invalid(
            api.create(&PostParams::default(), &obj(bad)).await,
            "cluster.name must not be empty",
        );
        create_ok(&api, kind.good("empty-ref")).await;
    }
}

#[tokio::test]
async fn replicas_must_not_be_negative() {
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("cel-replicas").await;
    for kind in [TiKVGroup] {
        let api = kind.api(&client, &ns);
        let mut bad = kind.good("g");
        set(&mut bad, "/spec/replicas", json!(-1));
        assert_invalid(
            api.create(&PostParams::default(), &obj(bad)).await,
            "replicas must not be negative",
        );
        let mut zero = kind.good("g");
        set(&mut zero, "/spec/replicas", json!(0));
        create_ok(&api, zero).await;
        // The rule holds on updates too (kubectl scale goes through the same validation).
        assert_invalid(
            update(&api, "g", |v| set(v, "/spec/replicas", json!(-2))).await,
            "replicas must not be negative",
        );
    }
}

#[tokio::test]
async fn a_pd_group_keeps_a_member_and_its_quorum() {
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("cel-pd-replicas").await;
    let api = PDGroup.api(&client, &ns);
    let at_least_one = "a PDGroup needs at least 1 member";
    let majority = "a PDGroup may lose at most half of its members in one change";
    let mut zero = PDGroup.good("g");
    set(&mut zero, "/spec/replicas", json!(0));
    assert_invalid(
        api.create(&PostParams::default(), &obj(zero)).await,
        at_least_one,
    );
    let mut five = PDGroup.good("g");
    set(&mut five, "/spec/replicas", json!(5));
    create_ok(&api, five).await;
    // Down in steps of at most half; a majority at once is refused.
    for (to, refused) in [
        (2, Some(majority)),
        (3, None),
        (1, Some(majority)),
        (2, None),
    ] {
        let r = update(&api, "g", |v| set(v, "/spec/replicas", json!(to))).await;
        match refused {
            Some(message) => assert_invalid(r, message),
            None => {
                r.unwrap_or_else(|e| panic!("replicas -> {to}: {e}"));
            }
        }
    }
    update(&api, "g", |v| set(v, "/spec/replicas", json!(1)))
        .await
        .unwrap();
    // `kubectl scale --replicas=0` (the scale subresource) is held to the same rules.
    let out = tokio::process::Command::from(cp.kubectl().unwrap())
        .args(["-n", &ns, "scale", "pdgroup", "g", "--replicas=0"])
        .output()
        .await
        .expect("running kubectl");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains(at_least_one),
        "kubectl scale pdgroup --replicas=0: {text}"
    );
    let now = api.get("g").await.unwrap();
    assert_eq!(now.data["spec"]["replicas"], json!(1));
}

#[tokio::test]
async fn version_must_be_semver() {
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("cel-version").await;
    for kind in COMPONENT_KINDS {
        let api = kind.api(&client, &ns);
        let ptr = format!("{}/version", kind.template_spec());
        for bad_version in ["latest", "v8.5", "8.5.0.1", "v08.5.0", ""] {
            let mut bad = kind.good("v");
            set(&mut bad, &ptr, json!(bad_version));
            assert_invalid(
                api.create(&PostParams::default(), &obj(bad)).await,
                "version must be a semantic version such as v8.5.0",
            );
        }
        for (i, good_version) in ["v8.5.0", "8.5.0", "v8.5.0-rc.1", "v7.1.0+build.3"]
            .iter()
            .enumerate()
        {
            let mut good = kind.good(&format!("v{i}"));
            set(&mut good, &ptr, json!(good_version));
            create_ok(&api, good).await;
        }
    }
}

#[tokio::test]
async fn durations() {
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("cel-durations").await;
    let message = "must be a duration such as 30s, 10m or 1h";
    let fields = [
        (PDGroup, "/spec/updatePolicy/leaderEvictionTimeout"),
        (TiKVGroup, "/spec/updatePolicy/leaderEvictionTimeout"),
        (TiKVGroup, "/spec/failover/period"),
        (TiKV, "/spec/restart/leaderEvictionTimeout"),
        (TiKVGroup, "/spec/updatePolicy/leaderTransferBackTimeout"),
        (TiKV, "/spec/restart/leaderTransferBackTimeout"),
    ];
    for (i, (kind, ptr)) in fields.into_iter().enumerate() {
        let api = kind.api(&client, &ns);
        for bad_duration in ["10 minutes", "10", "m", "-5m", "1d"] {
            let mut bad = kind.good(&format!("d{i}"));
            set(&mut bad, ptr, json!(bad_duration));
            assert_invalid(api.create(&PostParams::default(), &obj(bad)).await, message);
        }
        for (j, good_duration) in ["30s", "10m", "1h30m", "1.5h", "500ms"].iter().enumerate() {
            let mut good = kind.good(&format!("d{i}-{j}"));
            set(&mut good, ptr, json!(good_duration));
            create_ok(&api, good).await;
        }
    }
}

#[tokio::test]
async fn a_data_volume_is_required() {
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("cel-datavol").await;
    for kind in COMPONENT_KINDS {
        let api = kind.api(&client, &ns);
        let ptr = format!("{}/volumes", kind.template_spec());
        let mut bad = kind.good("vol");
        set(
            &mut bad,
            &ptr,
            json!([{"name": "logs", "mounts": [{"mountPath": "/var/log/x"}], "storage": "1Gi"}]),
        );
        assert_invalid(
            api.create(&PostParams::default(), &obj(bad)).await,
            "a volume with a mount of type data is required",
        );
        // A data mount on the second volume is enough.
        let mut good = kind.good("vol");
        set(
            &mut good,
            &ptr,
            json!([
                {"name": "logs", "mounts": [{"mountPath": "/var/log/x"}], "storage": "1Gi"},
                {"name": "data", "mounts": [{"type": "data"}], "storage": "1Gi"},
            ]),
        );
        create_ok(&api, good).await;
    }
}

#[tokio::test]
async fn volume_names_are_short_dns_labels() {
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("cel-volname").await;
    for kind in COMPONENT_KINDS {
        let api = kind.api(&client, &ns);
        let ptr = format!("{}/volumes/0/name", kind.template_spec());
        for bad_name in ["Data", "data_1", "-data", "data-"] {
            let mut bad = kind.good("vn");
            set(&mut bad, &ptr, json!(bad_name));
            assert_invalid(
                api.create(&PostParams::default(), &obj(bad)).await,
                "volume name must be a DNS label of at most 15 characters",
            );
        }
        // 16 characters: refused by the schema's maxLength (which bounds the rule's cost).
        let mut long = kind.good("vn");
        set(&mut long, &ptr, json!("a".repeat(16)));
        assert_invalid(
            api.create(&PostParams::default(), &obj(long)).await,
            "may not be more than 15 bytes",
        );
        let mut good = kind.good("vn");
        set(&mut good, &ptr, json!("data-0123456789"));
        create_ok(&api, good).await;
    }
}

#[tokio::test]
async fn a_mount_needs_a_type_or_a_path() {
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("cel-mount").await;
    for kind in COMPONENT_KINDS {
        let api = kind.api(&client, &ns);
        let mounts = format!("{}/volumes/0/mounts", kind.template_spec());
        for bad_mount in [json!({}), json!({"subPath": "x"})] {
            let mut bad = kind.good("m");
            set(&mut bad, &mounts, json!([{"type": "data"}, bad_mount]));
            assert_invalid(
                api.create(&PostParams::default(), &obj(bad)).await,
                "a mount needs a type or a mountPath",
            );
        }
        let mut good = kind.good("m");
        set(
            &mut good,
            &mounts,
            json!([{"type": "data"}, {"mountPath": "/extra", "subPath": "x"}]),
        );
        create_ok(&api, good).await;
    }
}

#[tokio::test]
async fn overlays_may_not_use_reserved_keys() {
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("cel-overlay").await;
    let labels_message =
        "overlay labels must not use the reserved prefixes tikv.org/ and app.kubernetes.io/";
    let annotations_message = "overlay annotations must not use the reserved prefix tikv.org/";
    for kind in COMPONENT_KINDS {
        let api = kind.api(&client, &ns);
        let overlay = format!("{}/overlay", kind.template_spec());
        // The pod's metadata and each volume claim's metadata are both OverlayMeta.
        for meta in ["/pod/metadata", "/volumeClaims/0/metadata"] {
            let with = |labels: serde_json::Value, annotations: serde_json::Value| {
                let mut v = kind.good("o");
                if meta.starts_with("/volumeClaims") {
                    set(
                        &mut v,
                        &format!("{overlay}/volumeClaims"),
                        json!([{"name": "data"}]),
                    );
                }
                set(&mut v, &format!("{overlay}{meta}/labels"), labels);
                set(&mut v, &format!("{overlay}{meta}/annotations"), annotations);
                obj(v)
            };
            let pp = PostParams::default();
            assert_invalid(
                api.create(&pp, &with(json!({"tikv.org/cluster": "x"}), json!({})))
                    .await,
                labels_message,
            );
            assert_invalid(
                api.create(
                    &pp,
                    &with(
                        json!({"team": "a", "app.kubernetes.io/name": "x"}),
                        json!({}),
                    ),
                )
                .await,
                labels_message,
            );
            assert_invalid(
                api.create(&pp, &with(json!({}), json!({"tikv.org/revision": "x"})))
                    .await,
                annotations_message,
            );
            // Other keys pass, including app.kubernetes.io/ annotations and look-alike prefixes.
            let good = with(
                json!({"team": "a", "example.com/tikv.org": "b", "tikv.org.example/x": "c"}),
                json!({"app.kubernetes.io/note": "x", "prometheus.io/scrape": "true"}),
            );
            api.create(&pp, &good)
                .await
                .unwrap_or_else(|e| panic!("{kind:?} {meta}: {e}"));
            api.delete("o", &Default::default()).await.unwrap();
            // Deletion of our kinds has no finalizers here, so the name is free again at once.
        }
    }
}

#[tokio::test]
async fn store_labels_zone_host_region_are_reserved() {
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("cel-storelabels").await;
    for kind in [TiKVGroup, TiKV] {
        let api = kind.api(&client, &ns);
        let ptr = format!("{}/server/labels", kind.template_spec());
        for key in ["zone", "host", "region"] {
            let mut bad = kind.good("s");
            set(&mut bad, &ptr, json!({"rack": "r1", key: "x"}));
            assert_invalid(
                api.create(&PostParams::default(), &obj(bad)).await,
                "store labels zone, host and region are set by the operator",
            );
        }
        let mut good = kind.good("s");
        set(
            &mut good,
            &ptr,
            json!({"rack": "r1", "disk": "nvme", "zone-type": "x"}),
        );
        create_ok(&api, good).await;
    }
}

#[tokio::test]
async fn storage_may_only_grow() {
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("cel-storage").await;
    let message = "volume storage may only grow";
    for kind in COMPONENT_KINDS {
        let api = kind.api(&client, &ns);
        let ptr = format!("{}/volumes/0/storage", kind.template_spec());
        create_ok(&api, kind.good("st")).await; // 10Gi
        update(&api, "st", |v| set(v, &ptr, json!("20Gi")))
            .await
            .expect("growing 10Gi -> 20Gi");
        // Same size in other units is not shrinking.
        update(&api, "st", |v| set(v, &ptr, json!("20480Mi")))
            .await
            .expect("20Gi -> 20480Mi");
        assert_invalid(
            update(&api, "st", |v| set(v, &ptr, json!("5Gi"))).await,
            message,
        );
        assert_invalid(
            update(&api, "st", |v| set(v, &ptr, json!("21474836479"))).await,
            message,
        );
        // Integer sizes compare too.
        update(&api, "st", |v| set(v, &ptr, json!(32_000_000_000_i64)))
            .await
            .expect("growing to an integer size");
        assert_invalid(
            update(&api, "st", |v| set(v, &ptr, json!(1_000_000))).await,
            message,
        );

        // A new volume has no old size; adding one is fine.
        let volumes = format!("{}/volumes", kind.template_spec());
        update(&api, "st", |v| {
            let mut list = v.pointer(&volumes).unwrap().clone();
            list.as_array_mut().unwrap().push(
                json!({"name": "logs", "mounts": [{"mountPath": "/logs"}], "storage": "1Mi"}),
            );
            set(v, &volumes, list);
        })
        .await
        .expect("adding a volume");
        // Volumes are matched by name (a list map), so reordering does not compare the wrong pair.
        update(&api, "st", |v| {
            let list = v.pointer_mut(&volumes).unwrap().as_array_mut().unwrap();
            list.reverse();
        })
        .await
        .expect("reordering volumes");
    }
}

#[tokio::test]
async fn storage_must_be_more_than_zero() {
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("cel-storage-size").await;
    let message = "volume storage must be more than zero";
    for kind in COMPONENT_KINDS {
        let api = kind.api(&client, &ns);
        let ptr = format!("{}/volumes/0/storage", kind.template_spec());
        for (i, bad_size) in [json!("-1Gi"), json!("0"), json!("0Gi"), json!(-5)]
            .into_iter()
            .enumerate()
        {
            let mut bad = kind.good(&format!("sz{i}"));
            set(&mut bad, &ptr, bad_size);
            assert_invalid(api.create(&PostParams::default(), &obj(bad)).await, message);
        }
        for (i, good_size) in [json!("1Mi"), json!(1)].into_iter().enumerate() {
            let mut good = kind.good(&format!("ok{i}"));
            set(&mut good, &ptr, good_size);
            create_ok(&api, good).await;
        }
    }
}

#[tokio::test]
async fn cluster_subdomain_and_topology_are_immutable() {
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("cel-immutable").await;
    for kind in COMPONENT_KINDS {
        let api = kind.api(&client, &ns);
        create_ok(&api, kind.good("i")).await;
        assert_invalid(
            update(&api, "i", |v| set(v, "/spec/cluster/name", json!("other"))).await,
            "cluster is immutable",
        );
        if matches!(kind, PD | TiKV) {
            assert_invalid(
                update(&api, "i", |v| set(v, "/spec/subdomain", json!("other"))).await,
                "subdomain is immutable",
            );
            let zone = "/spec/topology/topology.kubernetes.io~1zone";
            assert_invalid(
                update(&api, "i", |v| set(v, zone, json!("zone-b"))).await,
                "topology is immutable",
            );
            assert_invalid(
                update(&api, "i", |v| {
                    set(
                        v,
                        "/spec/topology/topology.kubernetes.io~1region",
                        json!("r"),
                    )
                })
                .await,
                "topology is immutable",
            );
            assert_invalid(
                update(&api, "i", |v| remove(v, "/spec/topology")).await,
                "topology is immutable",
            );
            // An object created without topology cannot get one later.
            let mut bare = kind.good("bare");
            remove(&mut bare, "/spec/topology");
            create_ok(&api, bare).await;
            assert_invalid(
                update(&api, "bare", |v| set(v, zone, json!("zone-a"))).await,
                "topology is immutable",
            );
        }
        // Everything else may change while those stay as they are.
        let version = format!("{}/version", kind.template_spec());
        update(&api, "i", |v| set(v, &version, json!("v8.5.1")))
            .await
            .expect("changing the version");
        if kind == TiKV {
            update(&api, "i", |v| set(v, "/spec/offline", json!(true)))
                .await
                .expect("marking offline");
        }
    }
}

#[tokio::test]
async fn tls_cannot_be_switched_on_or_off() {
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("cel-tls").await;
    let api = Cluster.api(&client, &ns);
    let message = "tlsCluster.enabled cannot change once the cluster exists";
    // Created without TLS: it cannot be turned on; `enabled: false` changes nothing.
    create_ok(&api, Cluster.good("plain")).await;
    assert_invalid(
        update(&api, "plain", |v| {
            set(v, "/spec/tlsCluster", json!({"enabled": true}))
        })
        .await,
        message,
    );
    update(&api, "plain", |v| {
        set(v, "/spec/tlsCluster", json!({"enabled": false}))
    })
    .await
    .expect("adding tlsCluster.enabled=false");
    // Created with TLS: it cannot be turned off or removed; the client Secret may change.
    let mut tls = Cluster.good("tls");
    set(&mut tls, "/spec/tlsCluster", json!({"enabled": true}));
    create_ok(&api, tls).await;
    assert_invalid(
        update(&api, "tls", |v| {
            set(v, "/spec/tlsCluster/enabled", json!(false))
        })
        .await,
        message,
    );
    assert_invalid(
        update(&api, "tls", |v| remove(v, "/spec/tlsCluster")).await,
        message,
    );
    update(&api, "tls", |v| {
        set(
            v,
            "/spec/tlsCluster/clientSecretName",
            json!("operator-client"),
        )
    })
    .await
    .expect("changing the client Secret");
    update(&api, "tls", |v| set(v, "/spec/paused", json!(true)))
        .await
        .expect("other fields still change");
}
