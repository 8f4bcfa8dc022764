//! The one line a person reads first: what a group is doing (`rolling TiKV 2/6: evicting
//! leaders from store 5`), built from what its instances report. Pure.

use api::conditions::{leaders_evicted, offlined, ready, restart_safe, store_down, synced};
use api::v1alpha1::{InstanceStatus, PD, TiKV};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use operator_runtime::conditions::{self, NewCondition};

use crate::plan::InstanceView;

/// At most this many instance activities are named in a summary; the rest are counted.
const MAX_ACTIVITIES: usize = 2;

/// What a TiKV store is doing, or what stops it, in a few words; `None` when it just serves.
pub fn tikv_activity(tikv: &TiKV) -> Option<String> {
    let name = tikv.metadata.name.as_deref().unwrap_or_default();
    let status = tikv.status.as_ref()?;
    let store = match &status.id {
        Some(id) => format!("store {id}"),
        None => name.to_string(),
    };
    let cs = &status.common.conditions;
    if let Some(c) = failing(cs, offlined::TYPE) {
        return Some(match c.reason.as_str() {
            offlined::REFUSED => format!("PD refused to remove {store}: {}", c.message),
            _ => match &status.removal {
                Some(r) => match r.eta_seconds {
                    Some(eta) => format!(
                        "removing {store}: {}%, ETA {}",
                        r.percent,
                        human_duration(eta)
                    ),
                    None => format!("removing {store}: {}%", r.percent),
                },
                None => format!(
                    "removing {store}: {} regions left",
                    status.region_count.unwrap_or_default()
                ),
            },
        });
    }
    if let Some(c) = conditions::find(cs, leaders_evicted::TYPE) {
        if [
            leaders_evicted::WAITING_FOR_DOWN_PEERS,
            leaders_evicted::WAITING_FOR_PENDING_PEERS,
        ]
        .contains(&c.reason.as_str())
        {
            return Some(format!("{store} waits: {}", c.message));
        }
        if c.status == conditions::FALSE {
            return Some(format!(
                "evicting leaders from {store} ({} left)",
                status.leader_count.unwrap_or_default()
            ));
        }
    }
    if conditions::is_true(cs, store_down::TYPE) {
        return Some(format!("{store} is Down"));
    }
    common_activity(name, &status.common)
}

/// What a PD member is doing, or what stops it, in a few words; `None` when it just serves.
pub fn pd_activity(pd: &PD) -> Option<String> {
    let name = pd.metadata.name.as_deref().unwrap_or_default();
    let status = pd.status.as_ref()?;
    if let Some(c) = failing(&status.common.conditions, restart_safe::TYPE) {
        match c.reason.as_str() {
            restart_safe::TRANSFERRING_LEADER => {
                return Some(format!("moving PD leadership away from {name}"));
            }
            restart_safe::WOULD_LOSE_QUORUM => {
                return Some(format!(
                    "{name} waits: restarting it would lose PD's quorum"
                ));
            }
            _ => {}
        }
    }
    common_activity(name, &status.common)
}

/// Not ready or not synced, as the instance says why.
fn common_activity(name: &str, status: &InstanceStatus) -> Option<String> {
    let cs = &status.conditions;
    if let Some(c) = failing(cs, synced::TYPE)
        && ![synced::PAUSED, synced::SUSPENDED].contains(&c.reason.as_str())
    {
        return Some(format!("{name}: {}", c.reason));
    }
    let c = failing(cs, ready::TYPE)?;
    Some(match c.reason.as_str() {
        ready::POD_NOT_READY => format!("{name} starting"),
        reason => format!("{name}: {reason}"),
    })
}

/// The condition `type_` when it is False.
fn failing<'a>(cs: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions::find(cs, type_).filter(|c| c.status == conditions::FALSE)
}

/// `45s`, `2m10s`, `1h5m`.
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

/// The group's summary: `kind` is `PD` or `TiKV`, `desired` its replicas, `synced` the
/// condition that says whether the group may change anything now.
pub fn group(
    kind: &str,
    desired: usize,
    instances: &[InstanceView],
    update_revision: &str,
    synced: &NewCondition,
) -> String {
    if synced.status != conditions::TRUE {
        return match synced.reason.as_str() {
            synced::PAUSED => format!("{kind} paused"),
            _ => format!("{kind} waits: {}", synced.message),
        };
    }
    let live: Vec<&InstanceView> = instances
        .iter()
        .filter(|i| !i.deleting && !i.offline)
        .collect();
    let leaving: Vec<&InstanceView> = instances.iter().filter(|i| i.offline).collect();
    let updated = |i: &InstanceView| i.revision.as_deref() == Some(update_revision);
    let done = live.iter().filter(|i| updated(i) && i.ready).count();
    let ready = live.iter().filter(|i| i.ready).count();
    let rolling = live.iter().any(|i| !updated(i));
    let replacing: Vec<String> = live
        .iter()
        .filter_map(|i| {
            let target = i.replacement_for.as_ref()?;
            instances
                .iter()
                .any(|t| &t.name == target)
                .then(|| format!("{} replaces Down {target}", i.name))
        })
        .collect();
    // The instances being worked on speak first: updated but not ready yet, then the others,
    // then deleted ones still leaving PD.
    let mut ordered = live.clone();
    ordered.sort_by_key(|i| !updated(i) || i.ready);
    ordered.extend(instances.iter().filter(|i| i.deleting));
    let activities = |of: &[&InstanceView]| {
        let mut all: Vec<String> = replacing.clone();
        all.extend(of.iter().filter_map(|i| i.activity.clone()));
        name_some(&all)
    };
    let (head, rest) = if rolling {
        (
            format!("rolling {kind} {done}/{desired}"),
            activities(&ordered),
        )
    } else if !leaving.is_empty() {
        (
            format!("scaling in {kind} to {desired}"),
            activities(&leaving),
        )
    } else if live.len() < desired {
        (
            format!("scaling out {kind} {}/{desired}", live.len()),
            activities(&ordered),
        )
    } else if ready < live.len() || !replacing.is_empty() {
        (
            format!("{kind} {ready}/{desired} ready"),
            activities(&ordered),
        )
    } else {
        (format!("{kind} {ready}/{desired} ready"), String::new())
    };
    if rest.is_empty() {
        head
    } else {
        format!("{head}: {rest}")
    }
}

/// The first few of `items`, and how many more there are.
fn name_some(items: &[String]) -> String {
    let mut out = items
        .iter()
        .take(MAX_ACTIVITIES)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > MAX_ACTIVITIES {
        out.push_str(&format!(" (+{} more)", items.len() - MAX_ACTIVITIES));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tikv(status: serde_json::Value) -> TiKV {
        serde_json::from_value(json!({
            "apiVersion": "core.tikv.org/v1alpha1", "kind": "TiKV",
            "metadata": {"name": "basic-tikv-x"},
            "spec": {"cluster": {"name": "basic"}, "subdomain": "s", "version": "v8.5.0",
                     "volumes": [{"name": "data", "mounts": [{"type": "data"}], "storage": "1Gi"}]},
            "status": status,
        }))
        .unwrap()
    }

    fn pd(status: serde_json::Value) -> PD {
        serde_json::from_value(json!({
            "apiVersion": "core.tikv.org/v1alpha1", "kind": "PD",
            "metadata": {"name": "basic-pd-y"},
            "spec": {"cluster": {"name": "basic"}, "subdomain": "s", "version": "v8.5.0",
                     "volumes": [{"name": "data", "mounts": [{"type": "data"}], "storage": "1Gi"}]},
            "status": status,
        }))
        .unwrap()
    }

    fn cond(type_: &str, status: &str, reason: &str, message: &str) -> serde_json::Value {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "lastTransitionTime": "2026-01-01T00:00:00Z"})
    }

    #[test]
    fn instance_activities() {
        let cases: Vec<(TiKV, Option<&str>)> = vec![
            (tikv(json!({"id": "5", "state": "Up"})), None),
            (
                tikv(json!({"id": "5", "leaderCount": 12, "conditions": [
                    cond("LeadersEvicted", "False", "Evicting", "12 leaders left on store 5")]})),
                Some("evicting leaders from store 5 (12 left)"),
            ),
            (
                tikv(json!({"id": "5", "conditions": [
                    cond("LeadersEvicted", "True", "WaitingForDownPeers", "stores 3 have down peers; restarting this one could lose a quorum")]})),
                Some(
                    "store 5 waits: stores 3 have down peers; restarting this one could lose a quorum",
                ),
            ),
            (
                tikv(
                    json!({"id": "7", "removal": {"percent": 45, "etaSeconds": 130}, "conditions": [
                    cond("Offlined", "False", "Removing", "")]}),
                ),
                Some("removing store 7: 45%, ETA 2m10s"),
            ),
            (
                tikv(json!({"id": "7", "removal": {"percent": 3}, "conditions": [
                    cond("Offlined", "False", "Removing", "")]})),
                Some("removing store 7: 3%"),
            ),
            (
                tikv(json!({"id": "7", "regionCount": 30, "conditions": [
                    cond("Offlined", "False", "Removing", "")]})),
                Some("removing store 7: 30 regions left"),
            ),
            (
                tikv(json!({"id": "7", "conditions": [
                    cond("Offlined", "False", "Refused", "need 3 up stores")]})),
                Some("PD refused to remove store 7: need 3 up stores"),
            ),
            (
                tikv(json!({"id": "7", "conditions": [
                    cond("StoreDown", "True", "Down", ""), cond("Ready", "False", "StoreDown", "")]})),
                Some("store 7 is Down"),
            ),
            (
                tikv(json!({"conditions": [cond("Ready", "False", "ErrImagePull", "")]})),
                Some("basic-tikv-x: ErrImagePull"),
            ),
            (
                tikv(json!({"conditions": [cond("Ready", "False", "PodNotReady", "")]})),
                Some("basic-tikv-x starting"),
            ),
            (
                tikv(
                    json!({"conditions": [cond("Synced", "False", "InvalidConfig", "bad"),
                    cond("Ready", "False", "PodNotReady", "")]}),
                ),
                Some("basic-tikv-x: InvalidConfig"),
            ),
            (
                tikv(json!({"conditions": [cond("Synced", "False", "Paused", "")]})),
                None,
            ),
        ];
        for (t, want) in cases {
            assert_eq!(tikv_activity(&t).as_deref(), want, "{:?}", t.status);
        }
        let transferring = pd(json!({"conditions": [
            cond("RestartSafe", "False", "TransferringLeader", "")]}));
        assert_eq!(
            pd_activity(&transferring).as_deref(),
            Some("moving PD leadership away from basic-pd-y")
        );
        let blocked =
            pd(json!({"conditions": [cond("RestartSafe", "False", "WouldLoseQuorum", "")]}));
        assert_eq!(
            pd_activity(&blocked).as_deref(),
            Some("basic-pd-y waits: restarting it would lose PD's quorum")
        );
        assert_eq!(pd_activity(&pd(json!({"isLeader": true}))), None);
    }

    fn view(name: &str, rev: &str, ready: bool, activity: Option<&str>) -> InstanceView {
        InstanceView {
            name: name.into(),
            revision: Some(rev.into()),
            ready,
            activity: activity.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn group_summaries() {
        let synced = NewCondition::new("Synced", true, "Synced", "");
        let s = |desired, views: &[InstanceView]| group("TiKV", desired, views, "r2", &synced);
        let ready = [
            view("a", "r2", true, None),
            view("b", "r2", true, None),
            view("c", "r2", true, None),
        ];
        assert_eq!(s(3, &ready), "TiKV 3/3 ready");
        // Rolling: what the store being restarted does is named first.
        let rolling = [
            view("a", "r2", true, None),
            view(
                "b",
                "r2",
                false,
                Some("evicting leaders from store 5 (3 left)"),
            ),
            view("c", "r1", true, None),
        ];
        assert_eq!(
            s(3, &rolling),
            "rolling TiKV 1/3: evicting leaders from store 5 (3 left)"
        );
        assert_eq!(
            s(
                3,
                &[view("a", "r1", true, None), view("b", "r1", true, None)]
            ),
            "rolling TiKV 0/3"
        );
        // Scaling in: the leaving stores' progress.
        let mut leaving = view("d", "r2", true, Some("removing store 7: 45%, ETA 2m10s"));
        leaving.offline = true;
        let mut four = ready.to_vec();
        four.push(leaving);
        assert_eq!(
            s(3, &four),
            "scaling in TiKV to 3: removing store 7: 45%, ETA 2m10s"
        );
        // A deleted store drains while its replacement is created.
        let mut deleted = view("c", "r2", true, Some("removing store 6: 10%"));
        deleted.deleting = true;
        assert_eq!(
            s(3, &[ready[0].clone(), ready[1].clone(), deleted]),
            "scaling out TiKV 2/3: removing store 6: 10%"
        );
        // Scaling out, and not ready.
        assert_eq!(
            s(
                5,
                &[
                    view("a", "r2", true, None),
                    view("b", "r2", false, Some("b starting"))
                ]
            ),
            "scaling out TiKV 2/5: b starting"
        );
        assert_eq!(
            s(
                3,
                &[
                    view("a", "r2", true, None),
                    view("b", "r2", false, Some("store 4 is Down")),
                    view("c", "r2", false, Some("c: CrashLoopBackOff")),
                    view("d", "r2", false, Some("d starting")),
                ][..3]
            ),
            "TiKV 1/3 ready: store 4 is Down, c: CrashLoopBackOff"
        );
        let many: Vec<InstanceView> = (0..5)
            .map(|i| {
                view(
                    &format!("s{i}"),
                    "r2",
                    false,
                    Some(&format!("s{i} starting")),
                )
            })
            .collect();
        assert_eq!(
            s(5, &many),
            "TiKV 0/5 ready: s0 starting, s1 starting (+3 more)"
        );
        // Failover: the replacement is named while the failed store exists.
        let mut replacement = view("e", "r2", true, None);
        replacement.replacement_for = Some("b".into());
        let failed = view("b", "r2", false, Some("store 4 is Down"));
        assert_eq!(
            s(2, &[view("a", "r2", true, None), failed, replacement]),
            "TiKV 2/2 ready: e replaces Down b, store 4 is Down"
        );
        // Held or paused: why.
        let held = NewCondition::new("Synced", false, "WaitingForPD", "PD rolls out first");
        assert_eq!(
            group("TiKV", 3, &ready, "r2", &held),
            "TiKV waits: PD rolls out first"
        );
        let paused = NewCondition::new("Synced", false, "Paused", "paused");
        assert_eq!(group("PD", 3, &ready, "r2", &paused), "PD paused");
    }

    #[test]
    fn durations_read_like_kubectl_ages() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(120), "2m");
        assert_eq!(human_duration(130), "2m10s");
        assert_eq!(human_duration(3900), "1h5m");
        assert_eq!(human_duration(7200), "2h");
    }
}
