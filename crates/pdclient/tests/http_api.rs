//! PdClient against canned answers: PD's real JSON shapes (captured from pd-server 7179657d),
//! error mapping, and endpoint failover. The same client is exercised against a real PD by the
//! tests in crates/tikv-sim/tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pdclient::{Error, NodeState, PdClient, StoreState, StoreStateName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// `GET /pd/api/v1/store/1` of an Up, Serving store (no `state` field: Up is the zero value).
const STORE_UP: &str = r#"{
  "store": {"id": 1, "address": "127.0.0.1:20161", "labels": [{"key": "zone", "value": "z1"}],
    "version": "8.5.0", "status_address": "127.0.0.1:20181", "git_hash": "tikv-sim-0.1.0",
    "start_timestamp": 1795315902, "deploy_path": "/bin", "last_heartbeat": 1795315917017751794,
    "node_state": 1, "state_name": "Up"},
  "status": {"capacity": "100GiB", "available": "96.75GiB", "used_size": "3.25GiB",
    "leader_count": 46, "leader_weight": 1, "leader_score": 46, "leader_size": 2944,
    "region_count": 52, "region_weight": 1, "region_score": 15359.000071298658, "region_size": 3328,
    "start_ts": "2026-11-22T02:51:42Z", "last_heartbeat_ts": "2026-11-22T02:51:57.017751794Z",
    "uptime": "15.017751794s"}
}"#;

/// A tombstone in `GET /stores/check`, and a Preparing store (no `node_state`).
const STORES: &str = r#"{"count": 2, "stores": [
  {"store": {"id": 4, "address": "a:1", "state": 2, "node_state": 3, "state_name": "Tombstone"},
   "status": {"capacity": "0B", "available": "0B", "used_size": "0B", "leader_count": 0,
     "leader_weight": 1, "leader_score": 0, "leader_size": 0, "region_count": 0,
     "region_weight": 1, "region_score": 0, "region_size": 0}},
  {"store": {"id": 5, "address": "a:2", "state_name": "Disconnected"}, "status": {}}
]}"#;

/// `GET /regions/check/down-peer`.
const DOWN_PEERS: &str = r#"{"count":1,"regions":[{"id":61,"start_key":"73696D303030303235","end_key":"73696D303030303236","epoch":{"conf_ver":2,"version":48},"peers":[{"role_name":"Voter","id":62,"store_id":1},{"role_name":"Learner","is_learner":true,"id":121,"store_id":10,"role":1}],"leader":{"role_name":"Voter","id":62,"store_id":1},"down_peers":[{"peer":{"role_name":"Learner","is_learner":true,"id":121,"store_id":10,"role":1},"down_seconds":19}],"pending_peers":[{"role_name":"Learner","is_learner":true,"id":121,"store_id":10,"role":1}],"cpu_usage":0,"written_bytes":0,"read_bytes":0,"written_keys":0,"read_keys":0,"approximate_size":64,"approximate_keys":640000}]}"#;

const REPLICATE: &str = r#"{"max-replicas": 3, "location-labels": "zone,host", "strictly-match-label": "false",
  "enable-placement-rules": "true", "enable-placement-rules-cache": "false", "isolation-level": ""}"#;

const LEADER: &str = r#"{"name": "pd-1", "member_id": 7, "peer_urls": ["http://127.0.0.1:2380"],
  "client_urls": ["http://127.0.0.1:2379"]}"#;

const EVICT_LIST: &str = r#"{"store-id-ranges": {"12": [{"start-key": "", "end-key": ""}],
  "4": [{"start-key": "", "end-key": ""}]}}"#;

/// A fake PD: answers `METHOD path` from a table, counts requests.
struct FakePd {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl FakePd {
    async fn start(routes: &[(&str, u16, &str)]) -> FakePd {
        let routes: HashMap<String, (u16, String)> = routes
            .iter()
            .map(|(k, s, b)| (k.to_string(), (*s, b.to_string())))
            .collect();
        let routes = Arc::new(routes);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (h, s) = (hits.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (routes, hits, seen) = (routes.clone(), h.clone(), s.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16384];
                    let mut len = 0;
                    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf[len..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => len += n,
                        }
                    }
                    let head = String::from_utf8_lossy(&buf[..len]).to_string();
                    let mut words = head.split_whitespace();
                    let key = format!(
                        "{} {}",
                        words.next().unwrap_or(""),
                        words.next().unwrap_or("")
                    );
                    hits.fetch_add(1, Ordering::SeqCst);
                    seen.lock().unwrap().push(key.clone());
                    let (status, body) = routes
                        .get(&key)
                        .cloned()
                        .unwrap_or((404, "404 page not found\n".into()));
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(resp.as_bytes()).await;
                });
            }
        });
        FakePd { addr, hits, seen }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// An endpoint that accepts connections and never answers (a frozen PD).
async fn hung_endpoint() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (url, task)
}

/// An endpoint nothing listens on.
async fn closed_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

fn client(endpoints: &[String]) -> PdClient {
    PdClient::builder(endpoints)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap()
}

#[tokio::test]
async fn real_json_shapes_decode() {
    let pd = FakePd::start(&[
        ("GET /pd/api/v1/store/1", 200, STORE_UP),
        ("GET /pd/api/v1/stores/check", 200, STORES),
        ("GET /pd/api/v1/regions/check/down-peer", 200, DOWN_PEERS),
        ("GET /pd/api/v1/config/replicate", 200, REPLICATE),
        (
            "GET /pd/api/v1/scheduler-config/evict-leader-scheduler/list",
            200,
            EVICT_LIST,
        ),
    ])
    .await;
    let c = client(&[pd.url()]);

    let s = c.store(1).await.unwrap();
    assert_eq!(
        (
            s.store.state,
            s.store.node_state,
            s.store.state_name.clone()
        ),
        (StoreState::Up, NodeState::Serving, StoreStateName::Up)
    );
    assert_eq!((s.status.leader_count, s.status.region_count), (46, 52));
    assert_eq!(s.store.label_map()["zone"], "z1");
    assert_eq!(s.status.capacity, "100GiB");
    assert_eq!(c.store_leader_count(1).await.unwrap(), 46);

    let all = c.stores().await.unwrap();
    assert_eq!(
        (all[0].store.state, all[0].store.node_state),
        (StoreState::Tombstone, NodeState::Removed)
    );
    assert_eq!(
        (all[1].store.state, all[1].store.node_state),
        (StoreState::Up, NodeState::Preparing)
    );
    assert_eq!(all[1].store.state_name, StoreStateName::Disconnected);

    let down = c.down_peer_regions().await.unwrap();
    assert_eq!(down[0].down_peers[0].peer.store_id, 10);
    assert_eq!(down[0].down_peers[0].down_seconds, 19);
    assert!(down[0].pending_peers[0].is_learner);
    assert_eq!(down[0].leader.store_id, 1);

    let r = c.replication_config().await.unwrap();
    assert_eq!(
        (
            r.max_replicas,
            r.location_labels.clone(),
            r.enable_placement_rules
        ),
        (3, vec!["zone".to_string(), "host".to_string()], true)
    );

    assert_eq!(c.evict_leader_stores().await.unwrap(), [4, 12]);
}

#[tokio::test]
async fn pd_errors_are_typed() {
    let pd = FakePd::start(&[
        // Before bootstrap: 500 on most store routes, 406 on scheduler-config (seen on PD 8.1).
        ("GET /pd/api/v1/stores/check", 500, r#""[PD:cluster:ErrNotBootstrapped]TiKV cluster not bootstrapped, please start TiKV first""#),
        ("GET /pd/api/v1/scheduler-config/evict-leader-scheduler/list", 406, r#""[PD:cluster:ErrNotBootstrapped]TiKV cluster not bootstrapped, please start TiKV first""#),
        ("DELETE /pd/api/v1/store/1", 400, r#""[PD:core:ErrStoresNotEnough]can not remove store 1 since the number of up stores would be 2 while need 3""#),
        ("DELETE /pd/api/v1/store/2", 410, r#""[PD:core:ErrStoreRemoved]store 2 has been removed""#),
        ("GET /pd/api/v1/store/3", 404, r#""[PD:core:ErrStoreNotFound]store 3 not found""#),
        ("GET /pd/api/v1/cluster", 200, "not json"),
    ])
    .await;
    let c = client(&[pd.url()]);
    assert!(matches!(c.stores().await, Err(Error::NotBootstrapped)));
    assert!(matches!(
        c.evict_leader_stores().await,
        Err(Error::NotBootstrapped)
    ));
    match c.delete_store(1).await {
        Err(Error::Refused {
            status: 400,
            message,
        }) => {
            assert_eq!(
                message,
                "[PD:core:ErrStoresNotEnough]can not remove store 1 since the number of up stores would be 2 while need 3"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        c.delete_store(2).await,
        Err(Error::Refused { status: 410, .. })
    ));
    assert!(matches!(c.store(3).await, Err(Error::NotFound { .. })));
    assert!(matches!(c.cluster().await, Err(Error::Decode { .. })));
    // Without the evict-leader scheduler PD's router has no route for it: a plain-text 404,
    // which is an empty list when reading and NotFound when removing.
    let bare = FakePd::start(&[]).await;
    let c = client(&[bare.url()]);
    assert_eq!(c.evict_leader_stores().await.unwrap(), Vec::<u64>::new());
    match c.remove_evict_leader(9).await {
        Err(Error::NotFound { message }) => assert_eq!(message, "404 page not found"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn fails_over_and_remembers_the_endpoint_that_answered() {
    let good = FakePd::start(&[
        ("GET /pd/api/v1/leader", 200, LEADER),
        (
            "POST /pd/api/v1/leader/resign",
            200,
            r#""The resign command is submitted.""#,
        ),
    ])
    .await;
    let no_leader = FakePd::start(&[(
        "GET /pd/api/v1/leader",
        503,
        "[PD:apiutil:ErrRedirectNoLeader]no leader",
    )])
    .await;
    // A member removed from PD whose process still runs answers this to everything.
    let stopping = FakePd::start(&[(
        "GET /pd/api/v1/leader",
        500,
        "[PD:server:ErrServerNotStarted]server not started",
    )])
    .await;
    let (hung, _hung_task) = hung_endpoint().await;
    let closed = closed_endpoint().await;

    let c = client(&[
        closed.clone(),
        stopping.url(),
        hung.clone(),
        no_leader.url(),
        good.url(),
    ]);
    assert_eq!(c.leader().await.unwrap().name, "pd-1");
    assert_eq!(
        no_leader.hits.load(Ordering::SeqCst),
        1,
        "503 moved on to the next endpoint"
    );
    assert_eq!(
        stopping.hits.load(Ordering::SeqCst),
        1,
        "a closed PD server moved on to the next endpoint"
    );
    assert_eq!(c.leader().await.unwrap().name, "pd-1");
    assert_eq!(
        no_leader.hits.load(Ordering::SeqCst),
        1,
        "the answering endpoint is tried first"
    );
    assert_eq!(good.hits.load(Ordering::SeqCst), 2);

    // Nothing answers: Unavailable with one line per endpoint.
    let dead = client(&[closed.clone(), hung.clone()]);
    match dead.members().await {
        Err(Error::Unavailable { attempts, path, .. }) => {
            assert_eq!(path, "/members");
            assert_eq!(attempts.len(), 2, "{attempts:?}");
            assert!(attempts[1].contains("no answer within"), "{attempts:?}");
        }
        other => panic!("{other:?}"),
    }

    // A resign that may have reached a (frozen) PD is not repeated elsewhere ...
    let c = client(&[hung.clone(), good.url()]);
    assert!(matches!(
        c.resign_leader().await,
        Err(Error::Unavailable { .. })
    ));
    assert!(
        !good
            .seen
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.starts_with("POST"))
    );
    // ... but one that could not even connect is.
    let c = client(&[closed, good.url()]);
    c.resign_leader().await.unwrap();
    assert!(
        good.seen
            .lock()
            .unwrap()
            .contains(&"POST /pd/api/v1/leader/resign".to_string())
    );
}

#[tokio::test]
async fn the_observer_sees_each_call_once_by_route_and_outcome() {
    let pd = FakePd::start(&[
        ("GET /pd/api/v1/store/1", 200, STORE_UP),
        (
            "DELETE /pd/api/v1/store/1",
            200,
            r#""The store is set as Offline.""#,
        ),
    ])
    .await;
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let observer: pdclient::Observer = Arc::new(move |r: &pdclient::RequestRecord| {
        record
            .lock()
            .unwrap()
            .push(format!("{} {} {}", r.method, r.route, r.outcome));
    });
    // The first endpoint is closed: failover is one call, not two.
    let c = PdClient::builder([closed_endpoint().await, pd.url()])
        .timeout(Duration::from_millis(300))
        .observer(observer)
        .build()
        .unwrap();
    c.store(1).await.unwrap();
    c.delete_store(1).await.unwrap();
    assert!(c.store(2).await.unwrap_err().is_not_found());
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "GET /store/{id} ok",
            "DELETE /store/{id} ok",
            "GET /store/{id} not_found"
        ]
    );
}
