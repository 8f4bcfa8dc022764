//! `kubectl tikv status`: the cluster on one screen. Pure: it renders a [`ClusterView`].

use api::conditions::{ready, synced};
use api::v1alpha1::{GroupStatus, PD, TiKV};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::table;
use crate::view::{ClusterView, event_time};

fn condition<'a>(cs: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    cs.iter().find(|c| c.type_ == type_)
}

fn status_of(cs: &[Condition], type_: &str) -> String {
    condition(cs, type_).map_or("-".into(), |c| c.status.clone())
}

fn or_dash(v: Option<impl ToString>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// The message of what keeps an instance from running: a False Synced (not paused or
/// suspended) or Ready condition that says more than its reason.
fn blocked_by(cs: &[Condition]) -> Option<&str> {
    let not_synced = condition(cs, synced::TYPE).filter(|c| {
        c.status == "False" && ![synced::PAUSED, synced::SUSPENDED].contains(&c.reason.as_str())
    });
    let not_ready = condition(cs, ready::TYPE).filter(|c| c.status == "False");
    not_synced
        .or(not_ready)
        .map(|c| c.message.as_str())
        .filter(|m| !m.is_empty())
}

fn group_line(kind: &str, name: &str, status: Option<&GroupStatus>) -> String {
    let summary = status
        .and_then(|s| s.summary.clone())
        .unwrap_or_else(|| "no status yet".into());
    format!("{kind} group {name}: {summary}\n")
}

fn revision(meta: &kube::api::ObjectMeta) -> String {
    or_dash(api::labels::revision(meta))
}

fn pd_rows(pds: &[PD]) -> Vec<Vec<String>> {
    pds.iter()
        .map(|pd| {
            let s = pd.status.clone().unwrap_or_default();
            vec![
                pd.name_any(),
                or_dash(s.id),
                if s.is_leader { "leader" } else { "" }.into(),
                if s.health { "healthy" } else { "unhealthy" }.into(),
                status_of(&s.common.conditions, ready::TYPE),
                pd.spec.template.version.clone(),
                revision(&pd.metadata),
            ]
        })
        .collect()
}

fn tikv_rows(tikvs: &[TiKV]) -> Vec<Vec<String>> {
    tikvs
        .iter()
        .map(|t| {
            let s = t.status.clone().unwrap_or_default();
            vec![
                t.name_any(),
                or_dash(s.id),
                or_dash(s.state),
                or_dash(s.leader_count),
                or_dash(s.region_count),
                or_dash(s.data_size.map(|q| q.0)),
                status_of(&s.common.conditions, ready::TYPE),
                t.spec.template.version.clone(),
                revision(&t.metadata),
            ]
        })
        .collect()
}

/// The status screen of `view`; `now` for the Events' ages; at most `max_events` Warnings.
pub fn render(view: &ClusterView, now: Timestamp, max_events: usize) -> String {
    let c = &view.cluster;
    let cs = c.status.clone().unwrap_or_default();
    let mut out = format!(
        "Cluster {}/{}: {}\n",
        view.namespace,
        c.name_any(),
        cs.summary.as_deref().unwrap_or("no status yet")
    );
    out.push_str(&format!(
        "  PD: {}   cluster id: {}\n",
        cs.pd.as_deref().unwrap_or("-"),
        cs.id.as_deref().unwrap_or("-")
    ));
    let conditions: Vec<String> = ["Available", "Ready", "Progressing", "Paused", "Suspended"]
        .iter()
        .filter_map(|t| condition(&cs.conditions, t).map(|c| format!("{t}={}", c.status)))
        .collect();
    if !conditions.is_empty() {
        out.push_str(&format!("  {}\n", conditions.join(" ")));
    }
    if let Some(r) = &cs.replication {
        out.push_str(&format!(
            "  replicas: {}, location labels: {}\n",
            r.max_replicas,
            if r.location_labels.is_empty() {
                "-".to_string()
            } else {
                r.location_labels.join(",")
            }
        ));
    }

    out.push('\n');
    for g in &view.pd_groups {
        out.push_str(&group_line("PD", &g.name_any(), g.status.as_ref()));
    }
    if view.pds.is_empty() {
        out.push_str("  no PD members\n");
    } else {
        out.push_str(&table::render(
            "  ",
            &[
                "NAME", "ID", "LEADER", "HEALTH", "READY", "VERSION", "REVISION",
            ],
            &pd_rows(&view.pds),
        ));
    }
    out.push('\n');
    for g in &view.tikv_groups {
        out.push_str(&group_line("TiKV", &g.name_any(), g.status.as_ref()));
    }
    if view.tikvs.is_empty() {
        out.push_str("  no TiKV stores\n");
    } else {
        out.push_str(&table::render(
            "  ",
            &[
                "NAME", "STORE", "STATE", "LEADERS", "REGIONS", "SIZE", "READY", "VERSION",
                "REVISION",
            ],
            &tikv_rows(&view.tikvs),
        ));
    }

    // What each instance is doing or waits for, in the words the groups' summaries use, with
    // the full message of what stops it.
    let pds = view.pds.iter().map(|p| {
        let cs = p.status.as_ref().map(|s| s.common.conditions.clone());
        (p.name_any(), group_controller::summary::pd_activity(p), cs)
    });
    let tikvs = view.tikvs.iter().map(|t| {
        let cs = t.status.as_ref().map(|s| s.common.conditions.clone());
        (
            t.name_any(),
            group_controller::summary::tikv_activity(t),
            cs,
        )
    });
    let operations: Vec<String> = pds
        .chain(tikvs)
        .filter_map(|(name, activity, cs)| {
            let activity = activity?;
            Some(match cs.as_deref().and_then(blocked_by) {
                Some(message) => format!("  {name}: {activity} ({message})\n"),
                None => format!("  {name}: {activity}\n"),
            })
        })
        .collect();
    out.push_str("\nOperations in progress\n");
    if operations.is_empty() {
        out.push_str("  none\n");
    } else {
        out.extend(operations);
    }

    let warnings: Vec<&k8s_openapi::api::core::v1::Event> = view
        .events
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .collect();
    out.push_str(&format!(
        "\nRecent warnings ({} of {})\n",
        warnings.len().min(max_events),
        warnings.len()
    ));
    if warnings.is_empty() {
        out.push_str("  none\n");
    } else {
        let rows: Vec<Vec<String>> = warnings
            .iter()
            .rev()
            .take(max_events)
            .rev()
            .map(|e| {
                let o = &e.involved_object;
                vec![
                    table::age(event_time(e), now),
                    format!(
                        "{}/{}",
                        o.kind.as_deref().unwrap_or_default(),
                        o.name.as_deref().unwrap_or_default()
                    ),
                    e.reason.clone().unwrap_or_default(),
                    e.message.clone().unwrap_or_default(),
                ]
            })
            .collect();
        out.push_str(&table::render(
            "  ",
            &["AGE", "OBJECT", "REASON", "MESSAGE"],
            &rows,
        ));
    }
    out
}
