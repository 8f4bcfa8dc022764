//! Shared by the benchmarks: a log of every state change the benchmark observes (from watchers on
//! the operator's objects, pods and Events, and from polling PD every 100 ms), with the instant it
//! was seen, plus the arithmetic and formatting both benches print with.
//!
//! Every observation is `(subject, aspect) = value`, e.g. `("pod/basic-tikv-x#2", "ready") =
//! "true"` or `("store/4", "leaders") = "0"`; only changes are kept, so "when did X first become
//! Y" is a lookup. Pods are numbered by incarnation (`#1` for the first pod seen under a name,
//! `#2` for the one recreated under the same name, ...).

// Each bench uses a different part of this module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::v1alpha1::{Cluster, PD, PDGroup, TiKV, TiKVGroup};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde::de::DeserializeOwned;

/// How often PD is polled.
pub const PD_POLL: Duration = Duration::from_millis(100);

/// One observed change.
#[derive(Clone, Debug)]
pub struct Entry {
    /// When the benchmark saw it.
    pub at: Instant,
    /// What it is about, e.g. `pod/basic-pd-abc#1`, `tikv/basic-tikv-xyz`, `store/4`.
    pub subject: String,
    /// Which aspect, e.g. `ready`, `Ready` (a condition), `leaders`.
    pub aspect: String,
    /// The new value.
    pub value: String,
}

#[derive(Default)]
struct LogInner {
    entries: Vec<Entry>,
    last: HashMap<(String, String), String>,
}

/// The log of observed changes, shared by the watcher tasks (cheap to clone).
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<LogInner>>);

impl Log {
    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `subject.aspect = value` now, unless that is already its value.
    pub fn set(&self, subject: &str, aspect: &str, value: impl ToString) {
        let value = value.to_string();
        let mut inner = self.lock();
        let key = (subject.to_string(), aspect.to_string());
        if inner.last.get(&key) == Some(&value) {
            return;
        }
        inner.last.insert(key, value.clone());
        inner.entries.push(Entry {
            at: Instant::now(),
            subject: subject.to_string(),
            aspect: aspect.to_string(),
            value,
        });
    }

    /// Every entry, in the order seen.
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().entries.clone()
    }

    /// Prints every entry, relative to `t0` (the benches' verbose mode).
    pub fn print(&self, t0: Instant) {
        for e in self.entries() {
            println!(
                "  {:>8} {} {}={}",
                rel(t0, Some(e.at)),
                e.subject,
                e.aspect,
                e.value
            );
        }
    }

    /// The value of `subject.aspect` at `t` (the last change at or before it).
    pub fn value_at(&self, subject: &str, aspect: &str, t: Instant) -> Option<String> {
        self.lock()
            .entries
            .iter()
            .rev()
            .find(|e| e.at <= t && e.subject == subject && e.aspect == aspect)
            .map(|e| e.value.clone())
    }

    /// When `subject.aspect` first had `value` at or after `after`: `after` itself if it already
    /// had it then, else the first change to it.
    pub fn reached(
        &self,
        subject: &str,
        aspect: &str,
        value: &str,
        after: Instant,
    ) -> Option<Instant> {
        if self.value_at(subject, aspect, after).as_deref() == Some(value) {
            return Some(after);
        }
        self.first_change(subject, aspect, after, |v| v == value)
    }

    /// The first change of `subject.aspect` strictly after `after` whose value passes `pred`.
    pub fn first_change(
        &self,
        subject: &str,
        aspect: &str,
        after: Instant,
        pred: impl Fn(&str) -> bool,
    ) -> Option<Instant> {
        self.lock()
            .entries
            .iter()
            .find(|e| e.at > after && e.subject == subject && e.aspect == aspect && pred(&e.value))
            .map(|e| e.at)
    }

    /// The first time `subject.aspect` had `value`, ever.
    pub fn first(&self, subject: &str, aspect: &str, value: &str) -> Option<Instant> {
        self.lock()
            .entries
            .iter()
            .find(|e| e.subject == subject && e.aspect == aspect && e.value == value)
            .map(|e| e.at)
    }

    /// Subjects with the given prefix (e.g. `pod/basic-tikv`), in the order first seen.
    pub fn subjects(&self, prefix: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in &self.lock().entries {
            if e.subject.starts_with(prefix) && !out.contains(&e.subject) {
                out.push(e.subject.clone());
            }
        }
        out
    }

    /// The last entry at or before `t`, and the first at or after it (to name what a gap in
    /// the timeline sits between).
    pub fn around(&self, t: Instant) -> (Option<Entry>, Option<Entry>) {
        let inner = self.lock();
        let before = inner.entries.iter().rev().find(|e| e.at <= t).cloned();
        let after = inner.entries.iter().find(|e| e.at >= t).cloned();
        (before, after)
    }
}

/// Records every condition's status as an aspect named after its type, and the reason of the
/// Ready condition (`Ready reason`).
fn log_conditions(log: &Log, subject: &str, conditions: &[Condition]) {
    for c in conditions {
        log.set(subject, &c.type_, &c.status);
        if c.type_ == "Ready" {
            log.set(subject, "Ready reason", &c.reason);
        }
    }
}

/// Watches `api` and hands every object seen (`deleted` for a deletion) to `f`; counts in
/// `synced` once its initial list is done.
fn spawn_watch<K, F>(api: Api<K>, synced: Arc<AtomicUsize>, mut f: F) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    F: FnMut(&K, bool) + Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut counted = false;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => f(&o, false),
                Ok(watcher::Event::Delete(o)) => f(&o, true),
                Ok(watcher::Event::InitDone) if !counted => {
                    counted = true;
                    synced.fetch_add(1, Ordering::SeqCst);
                }
                _ => {}
            }
        }
    })
}

/// Watchers on everything the operator touches in one namespace, and a PD poller.
pub struct Observer {
    /// What was seen.
    pub log: Log,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Observer {
    /// Starts watching Pods, PD, TiKV, PDGroup, TiKVGroup, Cluster and Events in the namespace
    /// and polling the PD of Cluster `cluster` (once its status names it); returns when every
    /// watcher has its initial list, so later changes are timed as they happen.
    pub async fn start(env: &e2e::Env, cluster: &str) -> Observer {
        let log = Log::default();
        let synced = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();

        let l = log.clone();
        let mut incarnations: HashMap<String, Vec<String>> = HashMap::new();
        tasks.push(spawn_watch(
            env.api::<Pod>(),
            synced.clone(),
            move |p: &Pod, deleted| {
                let uids = incarnations.entry(p.name_any()).or_default();
                let uid = p.uid().unwrap_or_default();
                let n = match uids.iter().position(|u| *u == uid) {
                    Some(i) => i + 1,
                    None => {
                        uids.push(uid);
                        uids.len()
                    }
                };
                let s = format!("pod/{}#{n}", p.name_any());
                l.set(&s, "exists", !deleted);
                if deleted {
                    return;
                }
                if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                    l.set(&s, "scheduled", true);
                }
                let status = p.status.as_ref();
                if let Some(phase) = status.and_then(|s| s.phase.as_ref()) {
                    l.set(&s, "phase", phase);
                }
                let ready = status
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
                l.set(&s, "ready", ready && running);
                if p.metadata.deletion_timestamp.is_some() {
                    l.set(&s, "deleting", true);
                }
            },
        ));

        let l = log.clone();
        tasks.push(spawn_watch(
            env.api::<PD>(),
            synced.clone(),
            move |p: &PD, deleted| {
                let s = format!("pd/{}", p.name_any());
                l.set(&s, "exists", !deleted);
                if let Some(st) = &p.status {
                    log_conditions(&l, &s, &st.common.conditions);
                    l.set(&s, "leader", st.is_leader);
                }
            },
        ));

        let l = log.clone();
        tasks.push(spawn_watch(
            env.api::<TiKV>(),
            synced.clone(),
            move |t: &TiKV, deleted| {
                let s = format!("tikv/{}", t.name_any());
                l.set(&s, "exists", !deleted);
                l.set(&s, "version", &t.spec.template.version);
                if let Some(st) = &t.status {
                    log_conditions(&l, &s, &st.common.conditions);
                    if let Some(id) = &st.id {
                        l.set(&s, "store", id);
                    }
                    let ready =
                        operator_runtime::conditions::is_true(&st.common.conditions, "Ready");
                    let rev = st.common.current_revision.as_deref().unwrap_or("-");
                    l.set(&s, "revision+ready", format!("{rev}/{ready}"));
                }
                if let Some(zone) = t.spec.topology.as_ref().and_then(|z| z.values().next()) {
                    l.set(&s, "zone", zone);
                }
            },
        ));

        for kind in ["pdgroup", "tikvgroup"] {
            let l = log.clone();
            let f = move |name: String, st: Option<&api::v1alpha1::GroupStatus>| {
                let s = format!("{kind}/{name}");
                if let Some(st) = st {
                    log_conditions(&l, &s, &st.conditions);
                    l.set(
                        &s,
                        "replicas/ready/updated",
                        format!(
                            "{}/{}/{}",
                            st.replicas, st.ready_replicas, st.updated_replicas
                        ),
                    );
                    if let Some(r) = &st.update_revision {
                        l.set(&s, "updateRevision", r);
                    }
                    if let Some(v) = &st.version {
                        l.set(&s, "version", v);
                    }
                }
            };
            tasks.push(if kind == "pdgroup" {
                spawn_watch(
                    env.api::<PDGroup>(),
                    synced.clone(),
                    move |g: &PDGroup, _| f(g.name_any(), g.status.as_ref()),
                )
            } else {
                spawn_watch(
                    env.api::<TiKVGroup>(),
                    synced.clone(),
                    move |g: &TiKVGroup, _| f(g.name_any(), g.status.as_ref()),
                )
            });
        }

        let l = log.clone();
        tasks.push(spawn_watch(
            env.api::<Cluster>(),
            synced.clone(),
            move |c: &Cluster, _| {
                let s = format!("cluster/{}", c.name_any());
                if let Some(st) = &c.status {
                    log_conditions(&l, &s, &st.conditions);
                    l.set(&s, "pd", st.pd.is_some());
                }
            },
        ));

        let l = log.clone();
        tasks.push(spawn_watch(
            env.api::<Event>(),
            synced.clone(),
            move |e: &Event, deleted| {
                if deleted {
                    return;
                }
                let o = &e.involved_object;
                let s = format!(
                    "{}/{}",
                    o.kind.as_deref().unwrap_or("?").to_lowercase(),
                    o.name.as_deref().unwrap_or("?")
                );
                let reason = e.reason.as_deref().unwrap_or("?");
                // One entry per Event object (its name is unique); repeats of it are not new.
                l.set(&s, &format!("event {reason}"), e.name_any());
            },
        ));

        let watchers = tasks.len();
        tasks.push(tokio::spawn(poll_pd(
            env.api::<Cluster>(),
            cluster.to_string(),
            log.clone(),
        )));
        while synced.load(Ordering::SeqCst) < watchers {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Observer { log, tasks }
    }

    /// Stops the watchers and the poller.
    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

/// Once the Cluster names PD, polls it every [`PD_POLL`]: per store (`store/<id>`) its state,
/// version, leader and region count, zone label, `Up <version>`, and whether it is in the evict-leader
/// scheduler (`evicting`, logged once a store was listed); the PD leader (`pd` `leader`); each
/// member's health (`pdmember/<name>` `healthy`). Each question has its own loop and a short
/// timeout, so one slow answer does not delay the others' observations.
async fn poll_pd(clusters: Api<Cluster>, cluster: String, log: Log) {
    let url = loop {
        if let Ok(Some(url)) = clusters
            .get_opt(&cluster)
            .await
            .map(|c| c.and_then(|c| c.status?.pd))
        {
            break url;
        }
        tokio::time::sleep(PD_POLL).await;
    };
    let pd = pdclient::PdClient::builder([url])
        .timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(300))
        .build()
        .expect("the Cluster's PD URL is valid");
    let (pd, log) = (&pd, &log);
    let members = every(|| async move {
        if let Ok(m) = pd.members().await
            && let Some(leader) = m.leader
        {
            log.set("pd", "leader", leader.name);
        }
    });
    let health = every(|| async move {
        for h in pd.health().await.unwrap_or_default() {
            log.set(&format!("pdmember/{}", h.name), "healthy", h.health);
        }
    });
    let stores = every(|| async move {
        for s in pd.stores().await.unwrap_or_default() {
            let subject = format!("store/{}", s.store.id);
            let state = s.store.state_name.as_str();
            log.set(&subject, "state", state);
            log.set(&subject, "version", &s.store.version);
            log.set(
                &subject,
                "state+version",
                format!("{state} {}", s.store.version),
            );
            log.set(&subject, "leaders", s.status.leader_count);
            log.set(&subject, "regions", s.status.region_count);
            if let Some(zone) = s.store.label_map().get("zone") {
                log.set(&subject, "zone", zone);
            }
        }
    });
    let listed = Mutex::new(std::collections::BTreeSet::new());
    let listed = &listed;
    let evicting = every(|| async move {
        if let Ok(ids) = pd.evict_leader_stores().await {
            let mut listed = listed.lock().unwrap_or_else(|p| p.into_inner());
            listed.extend(ids.iter().copied());
            for id in listed.iter() {
                log.set(&format!("store/{id}"), "evicting", ids.contains(id));
            }
        }
    });
    tokio::join!(members, health, stores, evicting);
}

/// Runs `f` every [`PD_POLL`] (or as soon as it returns, when it takes longer), forever.
async fn every<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        let next = tokio::time::Instant::now() + PD_POLL;
        f().await;
        tokio::time::sleep_until(next).await;
    }
}

/// Seconds from `t0` to `t` (negative when before).
pub fn secs(t0: Instant, t: Instant) -> f64 {
    if t >= t0 {
        (t - t0).as_secs_f64()
    } else {
        -(t0 - t).as_secs_f64()
    }
}

/// `t` relative to `t0`, as `12.34`, or `-` when unknown.
pub fn rel(t0: Instant, t: Option<Instant>) -> String {
    t.map_or_else(|| "-".to_string(), |t| format!("{:.2}", secs(t0, t)))
}

/// A duration between two optional instants, as `1.23`, or `-`.
pub fn span(a: Option<Instant>, b: Option<Instant>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", secs(a, b)),
        _ => "-".to_string(),
    }
}

/// Merges intervals (seconds) into disjoint sorted ones, each clipped to `[lo, hi]`.
pub fn union(mut intervals: Vec<(f64, f64)>, lo: f64, hi: f64) -> Vec<(f64, f64)> {
    intervals.retain(|(a, b)| b > a);
    intervals.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (a, b) in intervals {
        let (a, b) = (a.max(lo), b.min(hi));
        if b <= a {
            continue;
        }
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Total length of disjoint intervals.
pub fn length(intervals: &[(f64, f64)]) -> f64 {
    intervals.iter().map(|(a, b)| b - a).sum()
}

/// The gaps of `[lo, hi]` that `covered` (disjoint, sorted) leaves.
pub fn gaps(covered: &[(f64, f64)], lo: f64, hi: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut at = lo;
    for (a, b) in covered {
        if *a > at {
            out.push((at, *a));
        }
        at = at.max(*b);
    }
    if hi > at {
        out.push((at, hi));
    }
    out
}

/// min / median / max of some values.
pub fn stats(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    (v[0], median, v[v.len() - 1])
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `secs`; `None` on timeout.
pub async fn poll<T, F, Fut>(secs: u64, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Short form of an object name: the part after the group name (`basic-tikv-x7k2` → `x7k2`)
/// is kept whole; only the kind prefix of a subject (`tikv/`) is dropped.
pub fn short(subject: &str) -> &str {
    subject.split_once('/').map_or(subject, |(_, n)| n)
}

/// Waits until PD reports `n` Up stores, each with leaders, and leader and region counts have
/// not changed for 5 s (at most 180 s; says so and goes on otherwise).
pub async fn wait_settled(pd: &pdclient::PdClient, n: usize) {
    let start = Instant::now();
    let mut last: Option<Vec<(u64, u64, u64)>> = None;
    let mut since = Instant::now();
    while start.elapsed() < Duration::from_secs(180) {
        if let Ok(stores) = pd.stores().await {
            let mut up: Vec<(u64, u64, u64)> = stores
                .iter()
                .filter(|s| s.store.state_name.as_str() == "Up")
                .map(|s| (s.store.id, s.status.leader_count, s.status.region_count))
                .collect();
            up.sort_unstable();
            let spread = up.len() == n && up.iter().all(|s| s.1 > 0);
            if !spread || last.as_ref() != Some(&up) {
                last = Some(up);
                since = Instant::now();
            } else if since.elapsed() >= Duration::from_secs(5) {
                println!(
                    "settled after {:.1}s: (store, leaders, regions) {:?}",
                    start.elapsed().as_secs_f64(),
                    last.unwrap_or_default()
                );
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("NOTE: PD's leader/region counts did not settle within 180 s: {last:?}");
}
