//! TiKV stores: facts (the common ones plus one PD snapshot), a pure decision, its execution.

pub mod decide;
pub mod evict;
pub mod facts;
pub mod transfer_back;

use std::sync::Arc;

use api::v1alpha1::TiKV;
use kube::runtime::controller::Action;
use tracing::Instrument;

use crate::context::{Context, Error};
use crate::instance::execute;

/// Reconciles a TiKV store.
pub async fn reconcile(tikv: Arc<TiKV>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.kube.metrics.reconcile("TiKV");
    ctx.observed
        .touch(&crate::metrics::GroupLabels::of(tikv.as_ref()));
    async {
        let (facts, pd) = facts::gather(&tikv, &ctx).await?;
        let plan = decide::decide(&facts);
        execute::run(tikv.as_ref(), &ctx, pd.as_ref(), plan).await
    }
    .instrument(execute::span(tikv.as_ref()))
    .await
}
