//! Polling with a deadline, for tests that wait on controllers.

use std::future::Future;
use std::time::Duration;

/// Polls `f` every 200 ms until it returns `Some`, and panics naming `what` after `secs`.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll_for(secs, f).await {
        Some(v) => v,
        None => panic!("timed out after {secs}s waiting for {what}"),
    }
}

/// Polls `f` every 200 ms until it returns `Some`, for up to `secs`; `None` after that, for a
/// test that says more about the failure than [`wait_for`] can.
pub async fn poll_for<T, F, Fut>(secs: u64, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for an Event in `ns` with `reason` and `type_` ("Normal" or "Warning"), about the
/// object named `about` if given. Controllers publish Events after they write status, so a test
/// that saw the status must still wait for the Event.
pub async fn event(
    client: &kube::Client,
    ns: &str,
    reason: &str,
    type_: &str,
    about: Option<&str>,
) -> k8s_openapi::api::core::v1::Event {
    use k8s_openapi::api::core::v1::Event;
    use kube::api::{Api, ListParams};
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let what = format!(
        "a {type_} {reason} Event about {}",
        about.unwrap_or("anything")
    );
    wait_for(30, &what, || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.type_.as_deref() == Some(type_)
                    && about.is_none_or(|n| e.involved_object.name.as_deref() == Some(n))
            })
    })
    .await
}
