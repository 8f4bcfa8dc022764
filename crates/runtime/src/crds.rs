//! Waiting for the CRDs a controller needs: a controller started before its CRDs would crash-loop.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};

/// Errors while waiting for CRDs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The CRD did not become established in time.
    #[error(
        "CRD {name} is not established after {waited:?}; install the tikv-operator-crds chart first"
    )]
    NotEstablished {
        /// CRD name.
        name: String,
        /// How long we waited.
        waited: Duration,
    },
    /// Watching the CRD failed.
    #[error("watching CRD {name}: {source}")]
    Watch {
        /// CRD name.
        name: String,
        /// Cause.
        source: kube::runtime::wait::Error,
    },
}

/// Waits until every named CRD (e.g. `tikvs.core.tikv.org`) is Established.
pub async fn wait_established(
    client: &Client,
    names: &[&str],
    timeout: Duration,
) -> Result<(), Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in names {
        let cond = await_condition(api.clone(), name, conditions::is_crd_established());
        match tokio::time::timeout(timeout, cond).await {
            Ok(Ok(_)) => {}
            Ok(Err(source)) => {
                return Err(Error::Watch {
                    name: name.to_string(),
                    source,
                });
            }
            Err(_) => {
                return Err(Error::NotEstablished {
                    name: name.to_string(),
                    waited: timeout,
                });
            }
        }
    }
    Ok(())
}
