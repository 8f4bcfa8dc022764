//! PD members: facts (the common ones plus PD's members), a pure decision, its execution.

pub mod decide;
pub mod facts;
pub mod quorum;

use std::sync::Arc;

use api::v1alpha1::PD;
use kube::runtime::controller::Action;
use tracing::Instrument;

use crate::context::{Context, Error};
use crate::instance::execute;

/// Reconciles a PD member.
pub async fn reconcile(pd: Arc<PD>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.kube.metrics.reconcile("PD");
    async {
        let (facts, client) = facts::gather(&pd, &ctx).await?;
        let plan = decide::decide(&facts);
        execute::run(pd.as_ref(), &ctx, client.as_ref(), plan).await
    }
    .instrument(execute::span(pd.as_ref()))
    .await
}
