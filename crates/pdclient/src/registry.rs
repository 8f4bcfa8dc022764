//! One [`PdClient`] per PD cluster, shared by every reconcile of a controller: connections are
//! reused, and the client knows every member's URL, so requests fail over to another member when
//! the one it used goes away.
//!
//! A cluster's client starts from its seed URL (the PD Service in front of all members) and
//! learns the members' client URLs from `GET /members` ([`Registry::learn`]). It is rebuilt only
//! when that set of URLs changes (a member joined or left, the seed moved), or its TLS
//! certificate does (a renewal: new connections present the new one).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use crate::client::{Observer, PdClient};
use crate::error::Error;

/// The clients of several PD clusters, keyed by `K` (e.g. namespace and Cluster name).
pub struct Registry<K> {
    clients: Mutex<BTreeMap<K, Entry>>,
    observer: Option<Observer>,
}

struct Entry {
    seed: String,
    tls: Option<tls::Material>,
    members: BTreeSet<String>,
    client: PdClient,
}

impl<K: Ord + Clone> Registry<K> {
    /// An empty registry; every client it builds reports its requests to `observer`.
    pub fn new(observer: Option<Observer>) -> Self {
        Self {
            clients: Mutex::new(BTreeMap::new()),
            observer,
        }
    }

    /// The client of cluster `key`, whose PD answers at `seed` (and at the member URLs learned
    /// so far), with the TLS certificate `tls` when PD requires one. The same client (and
    /// connection pool) as last time unless `seed` or the certificate changed.
    pub fn client(
        &self,
        key: &K,
        seed: &str,
        tls: Option<&tls::Material>,
    ) -> Result<PdClient, Error> {
        let mut clients = self.lock();
        if let Some(e) = clients
            .get(key)
            .filter(|e| e.seed == seed && e.tls.as_ref() == tls)
        {
            return Ok(e.client.clone());
        }
        let members = clients
            .get(key)
            .map(|e| e.members.clone())
            .unwrap_or_default();
        let entry = self.build(seed.to_string(), tls.cloned(), members)?;
        let client = entry.client.clone();
        clients.insert(key.clone(), entry);
        Ok(client)
    }

    /// Records the client URLs of cluster `key`'s members, as `GET /members` reports them; the
    /// next [`Registry::client`] can reach every one of them. Unparsable URLs are left out.
    pub fn learn(&self, key: &K, member_urls: impl IntoIterator<Item = String>) {
        let mut clients = self.lock();
        let Some(current) = clients.get(key) else {
            return;
        };
        let tls = current.tls.is_some();
        let members: BTreeSet<String> = member_urls
            .into_iter()
            .filter(|u| crate::client::normalize_endpoint(u, tls).is_ok())
            .collect();
        if current.members == members {
            return;
        }
        if let Ok(entry) = self.build(current.seed.clone(), current.tls.clone(), members) {
            clients.insert(key.clone(), entry);
        }
    }

    /// Forgets cluster `key` (it was deleted).
    pub fn forget(&self, key: &K) {
        self.lock().remove(key);
    }

    fn build(
        &self,
        seed: String,
        tls: Option<tls::Material>,
        members: BTreeSet<String>,
    ) -> Result<Entry, Error> {
        // The seed first: a Service answers from whichever member is up.
        let endpoints: Vec<&String> = std::iter::once(&seed)
            .chain(members.iter().filter(|m| **m != seed))
            .collect();
        let mut builder = PdClient::builder(endpoints);
        if let Some(o) = &self.observer {
            builder = builder.observer(o.clone());
        }
        if let Some(t) = &tls {
            builder = builder.tls(t.clone());
        }
        Ok(Entry {
            client: builder.build()?,
            seed,
            tls,
            members,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<K, Entry>> {
        // Entries are replaced whole, so a panic elsewhere cannot leave one half-written.
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_per_cluster_rebuilt_only_when_its_urls_change() {
        let r: Registry<&str> = Registry::new(None);
        let a = r.client(&"a", "http://pd.a:2379", None).unwrap();
        assert_eq!(a.endpoints(), ["http://pd.a:2379"]);
        let again = r.client(&"a", "http://pd.a:2379", None).unwrap();
        assert!(again.is_clone_of(&a), "reconciles share one client");
        r.learn(&"a", []);
        assert!(
            r.client(&"a", "http://pd.a:2379", None)
                .unwrap()
                .is_clone_of(&a)
        );
        r.learn(
            &"a",
            [
                "http://pd-0.a:2379".to_string(),
                "http://pd-1.a:2379".to_string(),
                "not a url".to_string(),
            ],
        );
        let a = r.client(&"a", "http://pd.a:2379", None).unwrap();
        assert_eq!(
            a.endpoints(),
            [
                "http://pd.a:2379",
                "http://pd-0.a:2379",
                "http://pd-1.a:2379"
            ]
        );
        // A member left: it is no longer tried.
        r.learn(&"a", ["http://pd-1.a:2379".to_string()]);
        assert_eq!(
            r.client(&"a", "http://pd.a:2379", None)
                .unwrap()
                .endpoints(),
            ["http://pd.a:2379", "http://pd-1.a:2379"]
        );
        // Clusters do not share clients; a new seed keeps the members learned.
        assert_eq!(
            r.client(&"b", "http://pd.b:2379", None)
                .unwrap()
                .endpoints(),
            ["http://pd.b:2379"]
        );
        assert_eq!(
            r.client(&"a", "http://pd-1.a:2379", None)
                .unwrap()
                .endpoints(),
            ["http://pd-1.a:2379"]
        );
        r.forget(&"a");
        r.learn(&"a", ["http://pd-0.a:2379".to_string()]);
        assert_eq!(
            r.client(&"a", "http://pd.a:2379", None)
                .unwrap()
                .endpoints(),
            ["http://pd.a:2379"]
        );
        assert!(r.client(&"c", "pd", None).is_err());
    }
}
