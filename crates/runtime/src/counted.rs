//! A Kubernetes client that counts every request it sends in [`Metrics`], by verb and resource,
//! for the kind whose controller uses it: `/metrics` then shows how hard each controller works
//! the API server (and a benchmark can divide by reconciles).

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Method, Request, Response, Uri};
use kube::Client;
use kube::client::Body;

use crate::metrics::Metrics;

/// `client`, with each request counted as made for `kind` (e.g. `TiKV`).
pub fn client(client: Client, metrics: Metrics, kind: &str) -> Client {
    let default_namespace = client.default_namespace().to_string();
    Client::new(
        Counted {
            inner: client,
            metrics,
            kind: kind.to_string(),
        },
        default_namespace,
    )
}

#[derive(Clone)]
struct Counted {
    inner: Client,
    metrics: Metrics,
    kind: String,
}

impl tower_service::Service<Request<Body>> for Counted {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The inner client buffers requests itself.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let (verb, resource) = classify(request.method(), request.uri());
        self.metrics.api_request(&self.kind, verb, &resource);
        let inner = self.inner.clone();
        Box::pin(async move { inner.send(request).await })
    }
}

/// Whether a verb changes state on the API server.
pub fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    )
}

/// The Kubernetes verb and the resource (`pods`, `tikvs/status`) of a request.
fn classify(method: &Method, uri: &Uri) -> (&'static str, String) {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // `/api/v1/...` or `/apis/<group>/<version>/...`, then maybe `namespaces/<ns>/`.
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => None,
    }
    .unwrap_or_default();
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let resource = match rest {
        [] => "unknown".to_string(),
        [r] | [r, _] => r.to_string(),
        [r, _, sub, ..] => format!("{r}/{sub}"),
    };
    let named = rest.len() >= 2;
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let verb = match *method {
        Method::GET if watch => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    };
    (verb, resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(method: Method, uri: &str) -> (&'static str, String) {
        classify(&method, &uri.parse().unwrap())
    }

    #[test]
    fn requests_are_named_as_kubectl_names_them() {
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/ns/pods/p1"),
            ("get", "pods".into())
        );
        assert_eq!(
            c(
                Method::GET,
                "/api/v1/namespaces/ns/pods?labelSelector=a%3Db"
            ),
            ("list", "pods".into())
        );
        assert_eq!(
            c(
                Method::GET,
                "/apis/core.tikv.org/v1alpha1/namespaces/ns/tikvs?watch=true&timeoutSeconds=290"
            ),
            ("watch", "tikvs".into())
        );
        assert_eq!(
            c(
                Method::PATCH,
                "/apis/core.tikv.org/v1alpha1/namespaces/ns/tikvs/t1/status?fieldManager=x"
            ),
            ("patch", "tikvs/status".into())
        );
        assert_eq!(
            c(Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events"),
            ("create", "events".into())
        );
        assert_eq!(
            c(Method::DELETE, "/api/v1/namespaces/ns/pods/p1"),
            ("delete", "pods".into())
        );
        assert_eq!(
            c(Method::GET, "/apis/core.tikv.org/v1alpha1/tikvs"),
            ("list", "tikvs".into())
        );
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/ns"),
            ("get", "namespaces".into())
        );
        assert!(is_write("patch") && !is_write("watch"));
    }
}
