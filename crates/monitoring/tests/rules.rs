//! The alert rules: promtool accepts every rule file and passes every unit test of them
//! (`promtool test rules`), every alert has a test in which it fires, every rule says how bad it
//! is and what to do, and every operator metric a rule reads is one the controllers export.

mod common;

use std::collections::BTreeSet;

use monitoring::promql;

#[test]
fn promtool_accepts_the_rule_files_and_passes_their_unit_tests() {
    let dir = monitoring::chart_dir();
    let rules: Vec<String> = monitoring::rule_files()
        .unwrap()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(rules.len(), 3, "{rules:?}");
    let mut args = vec!["check", "rules"];
    args.extend(rules.iter().map(String::as_str));
    let checked = promql::promtool(&dir, &args).unwrap();
    assert!(checked.contains("SUCCESS"), "{checked}");

    let tests: Vec<String> = monitoring::rule_test_files()
        .unwrap()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let tested = promql::promtool(&dir, &args).unwrap();
    assert_eq!(
        tested.matches("SUCCESS").count(),
        tests.len(),
        "every test file passes:\n{tested}"
    );
}

#[test]
fn every_alert_fires_in_a_unit_test_and_says_what_it_means() {
    let mut alerts = BTreeSet::new();
    for path in monitoring::rule_files().unwrap() {
        let rules = monitoring::queries::load_rules(&path).unwrap();
        for group in rules["groups"].as_sequence().unwrap() {
            for rule in group["rules"].as_sequence().unwrap() {
                let name = rule["alert"].as_str().expect("only alerting rules");
                assert!(alerts.insert(name.to_string()), "{name} is defined twice");
                let severity = rule["labels"]["severity"].as_str();
                assert!(
                    matches!(severity, Some("critical" | "warning")),
                    "{name}: severity {severity:?}"
                );
                for a in ["summary", "description"] {
                    assert!(
                        rule["annotations"][a]
                            .as_str()
                            .is_some_and(|s| s.len() > 10),
                        "{name}: no {a}"
                    );
                }
            }
        }
    }
    let mut fired = BTreeSet::new();
    for path in monitoring::rule_test_files().unwrap() {
        let tests = monitoring::queries::load_rules(&path).unwrap();
        for t in tests["tests"].as_sequence().unwrap() {
            for case in t["alert_rule_test"].as_sequence().into_iter().flatten() {
                let firing = case["exp_alerts"]
                    .as_sequence()
                    .is_some_and(|a| !a.is_empty());
                if firing {
                    fired.insert(case["alertname"].as_str().unwrap().to_string());
                }
            }
        }
    }
    let untested: Vec<&String> = alerts.difference(&fired).collect();
    assert!(
        untested.is_empty(),
        "alerts no unit test fires: {untested:?}"
    );
    assert!(alerts.len() >= 20, "{alerts:?}");
}

#[test]
fn the_rules_read_only_metrics_the_controllers_export() {
    let known = common::operator_families();
    let queries: Vec<(String, String)> = monitoring::rule_files()
        .unwrap()
        .iter()
        .flat_map(|p| monitoring::queries::rule_queries(p).unwrap())
        .map(|q| (q.source, q.expr))
        .collect();
    let parsed = promql::parse(&queries).unwrap();
    for p in &parsed {
        assert!(p.error.is_empty(), "{}: {}", p.source, p.error);
        assert!(!p.selectors.is_empty(), "{} reads nothing", p.source);
        for s in &p.selectors {
            let name = promql::metric_name(s);
            if name.starts_with("tikv_operator_") {
                assert!(
                    known.contains(promql::family(name)),
                    "{}: {name} is not a metric the controllers export (they export {known:?})",
                    p.source
                );
            }
        }
    }
}
