//! The generated CRDs: committed YAML is current, subresources, printer columns, CEL rules and
//! descriptions are all there.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};

fn crd(plural: &str) -> CustomResourceDefinition {
    api::crds()
        .into_iter()
        .find(|c| c.spec.names.plural == plural)
        .unwrap_or_else(|| panic!("no CRD {plural}"))
}

fn schema(plural: &str) -> JSONSchemaProps {
    crd(plural).spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.clone())
        .expect("CRD has a schema")
}

/// Every `(rule, message)` in a schema, depth first.
fn rules(s: &JSONSchemaProps, out: &mut Vec<(String, String)>) {
    for r in s.x_kubernetes_validations.iter().flatten() {
        out.push((r.rule.clone(), r.message.clone().unwrap_or_default()));
    }
    for p in s.properties.iter().flat_map(|p| p.values()) {
        rules(p, out);
    }
    if let Some(items) = &s.items {
        match items {
            JSONSchemaPropsOrArray::Schema(i) => rules(i, out),
            JSONSchemaPropsOrArray::Schemas(is) => is.iter().for_each(|i| rules(i, out)),
        }
    }
    if let Some(JSONSchemaPropsOrBool::Schema(a)) = &s.additional_properties {
        rules(a, out);
    }
}

fn messages(plural: &str) -> Vec<String> {
    let mut out = Vec::new();
    rules(&schema(plural), &mut out);
    out.into_iter().map(|(_, m)| m).collect()
}

#[test]
fn committed_crd_yaml_is_up_to_date() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(api::CRD_CHART_TEMPLATES);
    for (file, yaml) in api::crd_files().unwrap() {
        let committed = std::fs::read_to_string(dir.join(&file)).unwrap_or_default();
        assert!(
            committed == yaml,
            "{file} differs from what the Rust types generate; run `just generate` (cargo run -p api --bin crdgen)"
        );
    }
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files, api::crds().len(), "stale files in {}", dir.display());
}

#[test]
fn every_kind_has_status_and_groups_have_scale() {
    for plural in ["clusters", "pdgroups", "pds", "tikvgroups", "tikvs"] {
        let sub = crd(plural).spec.versions[0]
            .subresources
            .clone()
            .expect("subresources");
        assert!(sub.status.is_some(), "{plural} has no status subresource");
        let scale = sub.scale;
        if plural.ends_with("groups") {
            let scale = scale.unwrap_or_else(|| panic!("{plural} has no scale subresource"));
            assert_eq!(scale.spec_replicas_path, ".spec.replicas");
            assert_eq!(scale.status_replicas_path, ".status.replicas");
            assert_eq!(
                scale.label_selector_path.as_deref(),
                Some(".status.selector")
            );
        } else {
            assert!(scale.is_none(), "{plural} must not be scalable");
        }
    }
}

#[test]
fn names_categories_and_printer_columns() {
    let columns = |plural: &str| -> Vec<String> {
        crd(plural).spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect()
    };
    assert_eq!(
        columns("tikvs"),
        [
            "Cluster", "StoreID", "State", "Leaders", "Regions", "Size", "Ready", "Version", "Age"
        ]
    );
    assert_eq!(
        columns("pds"),
        ["Cluster", "ID", "Leader", "Version", "Ready", "Age"]
    );
    for g in ["pdgroups", "tikvgroups"] {
        assert_eq!(
            columns(g),
            [
                "Cluster", "Desired", "Ready", "Updated", "Version", "Status", "Age"
            ]
        );
    }
    // The one line of what the cluster does is a default column.
    assert_eq!(
        columns("clusters"),
        ["PD", "ID", "Paused", "Available", "Ready", "Status", "Age"]
    );
    for (plural, short) in [
        ("clusters", Some("tkc")),
        ("pdgroups", Some("pdg")),
        ("tikvgroups", Some("tkvg")),
        // `kubectl get pd` / `kubectl get tikv` (the singular names) are as short as it gets.
        ("pds", None),
        ("tikvs", None),
    ] {
        let names = crd(plural).spec.names;
        assert_eq!(
            names
                .short_names
                .unwrap_or_default()
                .first()
                .map(String::as_str),
            short
        );
        assert_eq!(names.categories.unwrap_or_default(), ["tikv-all"]);
    }
}

#[test]
fn every_cel_rule_is_in_the_schema_with_its_message() {
    let template_rules = [
        "version must be a semantic version such as v8.5.0",
        "a volume with a mount of type data is required",
        "volume storage may only grow",
        "volume name must be a DNS label of at most 15 characters",
        "a mount needs a type or a mountPath",
        "overlay labels must not use the reserved prefixes tikv.org/ and app.kubernetes.io/",
        "overlay annotations must not use the reserved prefix tikv.org/",
        "cluster is immutable",
        "cluster.name must not be empty",
    ];
    let expect: [(&str, Vec<&str>); 5] = [
        (
            "clusters",
            vec!["a Cluster name must be at most 40 characters"],
        ),
        (
            "pdgroups",
            [
                &template_rules[..],
                &[
                    "a PDGroup name must be at most 40 characters",
                    "a PDGroup needs at least 1 member: to stop PD keeping its data, suspend the Cluster (spec.suspendAction.suspendCompute); to remove it, delete the Cluster",
                    "a PDGroup may lose at most half of its members in one change (PD would lose its quorum): scale down in steps",
                    "must be a duration such as 30s, 10m or 1h",
                ],
            ]
            .concat(),
        ),
        (
            "pds",
            [
                &template_rules[..],
                &[
                    "a PD name must be at most 47 characters",
                    "subdomain is immutable",
                    "topology is immutable",
                ],
            ]
            .concat(),
        ),
        (
            "tikvgroups",
            [
                &template_rules[..],
                &[
                    "a TiKVGroup name must be at most 40 characters",
                    "replicas must not be negative",
                    "must be a duration such as 30s, 10m or 1h",
                    "store labels zone, host and region are set by the operator",
                ],
            ]
            .concat(),
        ),
        (
            "tikvs",
            [
                &template_rules[..],
                &[
                    "a TiKV name must be at most 47 characters",
                    "subdomain is immutable",
                    "topology is immutable",
                    "store labels zone, host and region are set by the operator",
                ],
            ]
            .concat(),
        ),
    ];
    for (plural, wanted) in expect {
        let have = messages(plural);
        for m in wanted {
            assert!(
                have.iter().any(|h| h == m),
                "{plural}: no rule with message {m:?}; have {have:?}"
            );
        }
    }
    // Rules that iterate need bounds, or the API server rejects them for their estimated cost.
    let s = schema("tikvgroups");
    let volumes = &s.properties.as_ref().unwrap()["spec"]
        .properties
        .as_ref()
        .unwrap()["template"]
        .properties
        .as_ref()
        .unwrap()["spec"]
        .properties
        .as_ref()
        .unwrap()["volumes"];
    assert_eq!(volumes.max_items, Some(16));
    assert_eq!(volumes.x_kubernetes_list_type.as_deref(), Some("map"));
}

/// Field docs become the descriptions `kubectl explain` shows; every field must have one.
#[test]
fn every_field_has_a_description() {
    fn walk(path: &str, s: &JSONSchemaProps, missing: &mut Vec<String>) {
        for (name, p) in s.properties.iter().flatten() {
            let here = format!("{path}.{name}");
            // apiVersion/kind/metadata come from Kubernetes itself.
            let from_kubernetes =
                matches!(name.as_str(), "apiVersion" | "kind" | "metadata") && path.is_empty();
            if !from_kubernetes && p.description.as_deref().unwrap_or("").is_empty() {
                missing.push(here.clone());
            }
            walk(&here, p, missing);
        }
        if let Some(JSONSchemaPropsOrArray::Schema(i)) = &s.items {
            walk(&format!("{path}[]"), i, missing);
        }
    }
    for plural in ["clusters", "pdgroups", "pds", "tikvgroups", "tikvs"] {
        let mut missing = Vec::new();
        walk("", &schema(plural), &mut missing);
        assert!(
            missing.is_empty(),
            "{plural}: fields without a description: {missing:?}"
        );
    }
}
