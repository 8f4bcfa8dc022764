//! Lease leader election (`operator_runtime::leader`) against a real kube-apiserver (`testenv`).
//!
//! What it proves, with a 3 s lease renewed every second:
//! - two candidates on one Lease: at every sampled moment exactly one reports leader, it stays
//!   the same while it renews, and the Lease in the API server names it;
//! - failover: once the holder is stopped (its receiver dropped) it writes the Lease no more, and
//!   the standby takes over, but not before the holder's last renewal has expired;
//! - a holder cut off from the API server (a proxy that stops forwarding, like a partition that
//!   drops packets, so requests hang) stops reporting leader on its own, before the standby
//!   reports leader: never two leaders, even when the old one cannot hear anything;
//! - optimistic concurrency: two `try_acquire` racing on a free or an expired Lease never both
//!   win, one does, and the Lease names it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use operator_runtime::leader::{self, LeaseConfig, try_acquire};
use testenv::wait_for;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

const LEASE: &str = "tikv-operator-test";
const LEASE_SECONDS: u64 = 3;

fn config(ns: &str, identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: ns.to_string(),
        name: LEASE.to_string(),
        identity: identity.to_string(),
        lease_duration: Duration::from_secs(LEASE_SECONDS),
        renew_every: Duration::from_secs(1),
    }
}

/// Which of the two candidates reports leader; panics when both do.
fn leader_of(a: &watch::Receiver<bool>, b: &watch::Receiver<bool>) -> Option<&'static str> {
    match (*a.borrow(), *b.borrow()) {
        (true, true) => panic!("both candidates report leader"),
        (true, false) => Some("a"),
        (false, true) => Some("b"),
        (false, false) => None,
    }
}

async fn lease_spec(api: &Api<Lease>) -> LeaseSpec {
    api.get(LEASE)
        .await
        .unwrap()
        .spec
        .expect("a Lease written by the election has a spec")
}

fn micros(t: &Option<MicroTime>) -> i64 {
    t.as_ref().expect("time is set").0.as_microsecond()
}

#[tokio::test]
async fn one_leader_among_two_candidates() {
    let cp = testenv::shared();
    let ns = cp.create_namespace("leader-two").await;
    let leases: Api<Lease> = Api::namespaced(cp.client(), &ns);
    let a = leader::spawn(cp.client(), config(&ns, "a"));
    let b = leader::spawn(cp.client(), config(&ns, "b"));

    let first = wait_for(20, "one of two candidates to lead", || async {
        leader_of(&a, &b)
    })
    .await;

    // Sample for longer than a lease: the holder renews, so it stays the only leader.
    let end = Instant::now() + Duration::from_secs(LEASE_SECONDS + 1);
    let mut samples = 0;
    while Instant::now() < end {
        assert_eq!(
            leader_of(&a, &b),
            Some(first),
            "after {samples} samples: leadership must stay with {first} while it renews"
        );
        samples += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(samples >= 30, "only {samples} samples");

    let spec = lease_spec(&leases).await;
    assert_eq!(spec.holder_identity.as_deref(), Some(first));
    assert_eq!(spec.lease_duration_seconds, Some(LEASE_SECONDS as i32));
    assert_eq!(spec.lease_transitions, Some(0));
}

#[tokio::test]
async fn standby_takes_over_once_the_holder_stops() {
    let cp = testenv::shared();
    let ns = cp.create_namespace("leader-failover").await;
    let leases: Api<Lease> = Api::namespaced(cp.client(), &ns);
    let a = leader::spawn(cp.client(), config(&ns, "a"));
    wait_for(20, "a to lead", || async { (*a.borrow()).then_some(()) }).await;
    let b = leader::spawn(cp.client(), config(&ns, "b"));

    // The standby does not take a lease that is being renewed.
    for _ in 0..15 {
        assert_eq!(leader_of(&a, &b), Some("a"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Stop a: dropping its receiver is the only handle `spawn` gives.
    drop(a);
    let stopped_at = Timestamp::now().as_microsecond();
    let started = Instant::now();

    // Poll until b leads, remembering a's last renewal as the API server had it.
    let mut last_a_renewal = None;
    let deadline = started + Duration::from_secs(20);
    while !*b.borrow() {
        let spec = lease_spec(&leases).await;
        if spec.holder_identity.as_deref() == Some("a") {
            last_a_renewal = Some(micros(&spec.renew_time));
        }
        assert!(
            Instant::now() < deadline,
            "b did not take over within 20 s of a stopping"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    let last_a_renewal = last_a_renewal.expect("the Lease named a until b took over");

    let spec = lease_spec(&leases).await;
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
    let gap = micros(&spec.acquire_time) - last_a_renewal;
    assert!(
        gap >= (LEASE_SECONDS * 1_000_000) as i64,
        "b took the Lease {gap} µs after a's last renewal, before that renewal expired ({LEASE_SECONDS} s)"
    );
    assert!(
        last_a_renewal <= stopped_at,
        "a stopped candidate renewed the Lease {} ms after it was stopped",
        (last_a_renewal - stopped_at) / 1000
    );
    eprintln!(
        "failover: b led {took:?} after a stopped, {} ms after a's last renewal",
        gap / 1000
    );
    // About lease duration + renew period (+ b's own poll period); generous for a loaded machine.
    assert!(
        took < Duration::from_secs(LEASE_SECONDS + 6),
        "failover took {took:?}"
    );
}

/// A TCP proxy to the API server. Once cut, it forwards nothing more, on open connections and on
/// new ones, yet closes nothing: requests through it hang, as in a partition that drops packets.
struct Proxy {
    port: u16,
    cut: watch::Sender<bool>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, cut_rx) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut cut_rx = cut_rx.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    if !*cut_rx.borrow()
                        && let Ok(mut outbound) = TcpStream::connect(&target).await
                    {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                            _ = cut_rx.wait_for(|cut| *cut) => {}
                        }
                    }
                    // Partitioned: keep the connection open and silent until the test ends.
                    std::future::pending::<()>().await;
                    drop(inbound);
                });
            }
        });
        Proxy { port, cut }
    }

    fn client(&self, cp: &testenv::ControlPlane) -> Client {
        let mut config = cp.config().clone();
        config.cluster_url = format!("https://127.0.0.1:{}", self.port).parse().unwrap();
        Client::try_from(config).unwrap()
    }
}

#[tokio::test]
async fn partitioned_holder_steps_down_before_the_standby_leads() {
    let cp = testenv::shared();
    let ns = cp.create_namespace("leader-partition").await;
    let target = cp
        .server_url()
        .strip_prefix("https://")
        .expect("the API server URL is https")
        .to_string();
    let proxy = Proxy::start(target).await;

    let a = leader::spawn(proxy.client(cp), config(&ns, "a"));
    wait_for(20, "a to lead through the proxy", || async {
        (*a.borrow()).then_some(())
    })
    .await;
    let b = leader::spawn(cp.client(), config(&ns, "b"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(leader_of(&a, &b), Some("a"));

    proxy.cut.send(true).unwrap();
    let cut = Instant::now();
    let deadline = cut + Duration::from_secs(20);
    let mut a_stepped_down = None;
    while !*b.borrow() {
        if a_stepped_down.is_none() && !*a.borrow() {
            a_stepped_down = Some(cut.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "b did not take over within 20 s of a being cut off (a still leads: {})",
            *a.borrow()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b_leads = cut.elapsed();
    assert!(
        !*a.borrow(),
        "a, cut off from the API server, still reports leader {b_leads:?} after the cut, while b leads"
    );
    // Within the last sampling period at worst.
    let a_stepped_down = a_stepped_down.unwrap_or(b_leads);
    assert!(
        a_stepped_down <= Duration::from_secs(LEASE_SECONDS) + Duration::from_millis(100),
        "a stepped down {a_stepped_down:?} after the cut, beyond its {LEASE_SECONDS} s lease"
    );
    eprintln!("partition: a stepped down {a_stepped_down:?} and b led {b_leads:?} after the cut");
    let spec = lease_spec(&Api::namespaced(cp.client(), &ns)).await;
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
}

/// Makes the Lease free (`expired == false`: deleted) or expired (held by another identity whose
/// last renewal is a minute old).
async fn reset(api: &Api<Lease>, expired: bool) {
    match api.delete(LEASE, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => panic!("deleting the Lease: {e}"),
    }
    if expired {
        let old = MicroTime(Timestamp::from_second(Timestamp::now().as_second() - 60).unwrap());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(LEASE.to_string()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some("gone".to_string()),
                lease_duration_seconds: Some(LEASE_SECONDS as i32),
                acquire_time: Some(old.clone()),
                renew_time: Some(old),
                lease_transitions: Some(4),
                ..Default::default()
            }),
        };
        api.create(&PostParams::default(), &lease).await.unwrap();
    }
}

#[tokio::test]
async fn racing_acquisitions_have_one_winner() {
    let cp = testenv::shared();
    let ns = cp.create_namespace("leader-race").await;
    // One client per candidate, as two processes would have.
    let admin: Api<Lease> = Api::namespaced(cp.client(), &ns);
    let api_a: Api<Lease> = Api::namespaced(cp.client(), &ns);
    let api_b: Api<Lease> = Api::namespaced(cp.client(), &ns);
    let (cfg_a, cfg_b) = (config(&ns, "a"), config(&ns, "b"));

    let mut wins = [0; 2];
    for round in 0..20 {
        let expired = round % 2 == 1;
        reset(&admin, expired).await;
        let (won_a, won_b) = tokio::join!(try_acquire(&api_a, &cfg_a), try_acquire(&api_b, &cfg_b));
        let (won_a, won_b) = (won_a.unwrap(), won_b.unwrap());
        assert!(
            !(won_a && won_b),
            "round {round} (expired: {expired}): both acquired"
        );
        assert!(
            won_a || won_b,
            "round {round} (expired: {expired}): nobody acquired"
        );
        let winner = if won_a { "a" } else { "b" };
        wins[usize::from(won_b)] += 1;
        let spec = lease_spec(&admin).await;
        assert_eq!(
            spec.holder_identity.as_deref(),
            Some(winner),
            "round {round}"
        );
        assert_eq!(
            spec.lease_transitions,
            Some(if expired { 5 } else { 0 }),
            "round {round}"
        );
    }
    eprintln!("wins: a {}, b {}", wins[0], wins[1]);
}
