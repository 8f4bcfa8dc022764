//! What a PD member's reconcile reads: the common facts, PD's members (one `GET /members`, one
//! `GET /health`), and while the cluster suspends, whether its TiKV stores have all stopped.

use api::conditions::synced;
use api::v1alpha1::{PD, TiKV};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Resource};
use operator_runtime::conditions;
use pdclient::PdClient;

use crate::context::{Context, Error};
use crate::instance::Facts;
use crate::kind::{InstanceKind, cluster_component, group_of, pd_service_url};

/// A PD member as PD reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    /// Member name (the PD object's name).
    pub name: String,
    /// Member id.
    pub id: u64,
    /// It is the PD leader.
    pub leader: bool,
    /// PD's health check of it passes.
    pub healthy: bool,
    /// Its client URLs.
    pub client_urls: Vec<String>,
}

/// The cluster's TiKV while it suspends: PD members stop only after all of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TikvStopping {
    /// TiKV pods that still exist.
    pub pods: usize,
    /// TiKV objects that have not reported the suspension (`Synced=False/Suspended`): they
    /// could still (re)create a pod.
    pub unsuspended: usize,
}

/// Everything a PD member's decision needs.
#[derive(Clone, Debug)]
pub struct PdFacts<'a> {
    /// Object, Cluster, pod.
    pub instance: Facts<'a, PD>,
    /// PD's members, or why PD could not be asked; `None` when it was not asked (the cluster
    /// is gone).
    pub members: Option<Result<Vec<Member>, String>>,
    /// While the cluster suspends and this member's pod runs: the cluster's TiKV.
    pub tikv: Option<TikvStopping>,
}

impl PdFacts<'_> {
    /// This member, as PD reports it.
    pub fn me(&self) -> Option<&Member> {
        let name = self.instance.obj.meta().name.as_deref()?;
        self.members
            .as_ref()?
            .as_ref()
            .ok()?
            .iter()
            .find(|m| m.name == name)
    }
}

/// Reads the facts of `pd`, and the PD client they were read with.
pub async fn gather<'a>(
    pd: &'a PD,
    ctx: &Context,
) -> Result<(PdFacts<'a>, Option<PdClient>), Error> {
    let instance = Facts::gather(pd, ctx).await?;
    if instance.deleting() && instance.cluster_gone() {
        let facts = PdFacts {
            instance,
            members: None,
            tikv: None,
        };
        return Ok((facts, None));
    }
    let tls = match &instance.pd_tls {
        Some(Err(problem)) => {
            // PD cannot be asked without the operator's certificate: nothing is changed.
            let members = Some(Err(problem.clone()));
            let facts = PdFacts {
                instance,
                members,
                tikv: None,
            };
            return Ok((facts, None));
        }
        Some(Ok(m)) => Some(m.clone()),
        None => None,
    };
    let client = ctx.pd_client(
        &instance.namespace,
        &pd.spec.cluster.name,
        &pd_url(&instance),
        tls.as_ref(),
    )?;
    let members = members(&client).await;
    if let Ok(ms) = &members {
        let key = (instance.namespace.clone(), pd.spec.cluster.name.clone());
        ctx.pd
            .learn(&key, ms.iter().flat_map(|m| m.client_urls.clone()));
    }
    let tikv = if instance.suspending() && instance.running_pod().is_some() {
        Some(tikv_stopping(pd, &instance.namespace, ctx).await?)
    } else {
        None
    };
    let facts = PdFacts {
        instance,
        members: Some(members.map_err(|e| {
            tracing::warn!(error = %e, "cannot ask PD about its members");
            e.to_string()
        })),
        tikv,
    };
    Ok((facts, Some(client)))
}

/// PD's URL: the Cluster's, or before the Cluster reports one (bootstrap), the group's Service.
pub fn pd_url(facts: &Facts<PD>) -> String {
    facts.pd_url().map(String::from).unwrap_or_else(|| {
        pd_service_url(
            group_of(facts.obj).unwrap_or_default(),
            &facts.namespace,
            facts.obj.spec.template.server.ports.client.port,
            facts.tls_enabled(),
        )
    })
}

/// Every member with its leadership and health.
async fn members(client: &PdClient) -> Result<Vec<Member>, pdclient::Error> {
    let (members, health) = tokio::join!(client.members(), client.health());
    let (members, health) = (members?, health?);
    Ok(members
        .members
        .iter()
        .map(|m| Member {
            name: m.name.clone(),
            id: m.member_id,
            leader: members.leader.as_ref().is_some_and(|l| l.name == m.name),
            healthy: health.iter().any(|h| h.name == m.name && h.health),
            client_urls: m.client_urls.clone(),
        })
        .collect())
}

/// The cluster's TiKV pods and the TiKV objects that have not seen the suspension.
async fn tikv_stopping(pd: &PD, ns: &str, ctx: &Context) -> Result<TikvStopping, Error> {
    let client = ctx.kube.client.clone();
    let selector = cluster_component(&pd.spec.cluster.name, TiKV::COMPONENT);
    let params = ListParams::default().labels(&selector);
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list_metadata(&params)
        .await?
        .items
        .len();
    let unsuspended = Api::<TiKV>::namespaced(client, ns)
        .list(&params)
        .await?
        .items
        .iter()
        .filter(|t| {
            t.status.as_ref().is_none_or(|s| {
                !conditions::has_reason(&s.common.conditions, synced::TYPE, synced::SUSPENDED)
            })
        })
        .count();
    Ok(TikvStopping { pods, unsuspended })
}
