//! What every reconciler carries: the client, metrics, an Event recorder and its field manager.

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

use crate::metrics::Metrics;

/// Shared state of a controller's reconcilers.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Process metrics.
    pub metrics: Metrics,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// SSA field manager, `tikv-operator/<controller>`.
    pub manager: String,
}

impl Context {
    /// The context of `controller`; Events name the pod (`POD_NAME`) as the reporting instance.
    pub fn new(client: Client, metrics: Metrics, controller: &str) -> Self {
        let manager = crate::field_manager(controller);
        let reporter = Reporter {
            controller: manager.clone(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            manager,
        }
    }

    /// Publishes an Event about `obj`, and logs it (Events expire; logs are what is left to read
    /// afterwards). A failure to publish is logged, never fatal (Events are best effort).
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let (kind, name) = (K::kind(&()), obj.meta().name.as_deref().unwrap_or_default());
        match type_ {
            EventType::Normal => tracing::info!(%kind, name, reason, "{note}"),
            EventType::Warning => tracing::warn!(%kind, name, reason, "{note}"),
        }
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }
}
