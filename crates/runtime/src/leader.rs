//! Lease-based leader election, so each controller Deployment can run two replicas: only the
//! holder of the Lease reconciles. The Lease is updated with optimistic concurrency (replace with
//! resourceVersion), so two candidates can never both win the same term.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;

/// Leader-election settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Lease name, one per controller, e.g. `tikv-operator-group-controller`.
    pub name: String,
    /// This process, e.g. the pod name.
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews (well below `lease_duration`).
    pub renew_every: Duration,
}

/// What to do with the current lease.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it (a new term).
    Acquire,
    /// Someone else holds a valid lease.
    Wait,
}

/// Decides from the lease as stored; pure so the timing rules are tested without a cluster.
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Acquire;
    }
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    // In microseconds, as stored: whole seconds would expire a lease up to 1 s early.
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15)) * 1_000_000;
    match renewed {
        Some(t) if t.as_microsecond() + duration > now.as_microsecond() => Decision::Wait,
        _ => Decision::Acquire,
    }
}

/// Tries once to acquire or renew; returns whether we hold the lease afterwards.
pub async fn try_acquire(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let existing = api.get_opt(&cfg.name).await?;
    let decision = decide(
        existing.as_ref().and_then(|l| l.spec.as_ref()),
        &cfg.identity,
        now,
    );
    if decision == Decision::Wait {
        return Ok(false);
    }
    let old_spec = existing
        .as_ref()
        .and_then(|l| l.spec.clone())
        .unwrap_or_default();
    let spec = LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.lease_duration.as_secs() as i32),
        renew_time: Some(MicroTime(now)),
        acquire_time: if decision == Decision::Renew {
            old_spec.acquire_time.clone()
        } else {
            Some(MicroTime(now))
        },
        lease_transitions: Some(
            old_spec.lease_transitions.unwrap_or(0)
                + i32::from(decision == Decision::Acquire && existing.is_some()),
        ),
        ..Default::default()
    };
    let result = match existing {
        // Replace carries the resourceVersion we read: a concurrent writer makes this a 409.
        Some(mut lease) => {
            lease.spec = Some(spec);
            api.replace(&cfg.name, &PostParams::default(), &lease).await
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease).await
        }
    };
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Runs the election in the background. The receiver turns true when we lead and false when we
/// lose the lease, including when we could not renew it for a whole lease duration: we step down
/// when our last renewal expires even if the API server does not answer. Dropping the receiver
/// stops the candidate; it does not release the lease, which others take once it expires.
pub fn spawn(client: Client, cfg: LeaseConfig) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    tokio::spawn(async move {
        // While we lead, when our last renewal expires, counted from before its request, so no
        // later than its renewTime plus the lease duration, which is what the others go by.
        let mut valid_until: Option<Instant> = None;
        loop {
            let started = Instant::now();
            let attempt = try_acquire(&api, &cfg);
            // A request that hangs must not keep us leading past our lease.
            let result = match valid_until {
                Some(until) => tokio::time::timeout_at(until, attempt).await.ok(),
                None => Some(attempt.await),
            };
            match result {
                Some(Ok(held)) => valid_until = held.then(|| started + cfg.lease_duration),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, lease = %cfg.name, "leader election: cannot reach the API server");
                }
                None => {
                    tracing::warn!(lease = %cfg.name, "leader election: the API server did not answer before our lease expired");
                }
            }
            // Keep leading only while our last renewal is still valid.
            let leading = valid_until.is_some_and(|until| Instant::now() < until);
            if !leading {
                valid_until = None;
            }
            if *tx.borrow() != leading {
                tracing::info!(lease = %cfg.name, identity = %cfg.identity, leading, "leader election changed");
            }
            if tx.send(leading).is_err() {
                return;
            }
            let wait = if leading {
                cfg.renew_every
            } else {
                cfg.renew_every.min(Duration::from_secs(2))
            };
            // Wake by the end of our lease at the latest, to step down on time.
            let wake = valid_until.map_or(Instant::now() + wait, |until| {
                until.min(Instant::now() + wait)
            });
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                // Stopped: no more writes to the lease.
                () = tx.closed() => return,
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_string()),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            lease_duration_seconds: Some(duration),
            ..Default::default()
        }
    }

    #[test]
    fn decisions() {
        let now = Timestamp::from_second(1000).unwrap();
        assert_eq!(decide(None, "a", now), Decision::Acquire);
        assert_eq!(
            decide(Some(&lease("a", 990, 15)), "a", now),
            Decision::Renew
        );
        assert_eq!(decide(Some(&lease("b", 990, 15)), "a", now), Decision::Wait);
        // Sub-second precision: renewed at 985.5, valid until 1000.5.
        let mut half = lease("b", 985, 15);
        half.renew_time = Some(MicroTime(Timestamp::from_millisecond(985_500).unwrap()));
        assert_eq!(decide(Some(&half), "a", now), Decision::Wait);
        assert_eq!(
            decide(Some(&lease("b", 980, 15)), "a", now),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&lease("", 999, 15)), "a", now),
            Decision::Acquire
        );
    }
}
