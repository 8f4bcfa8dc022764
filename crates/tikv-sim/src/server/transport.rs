//! Raft messages to other stores, over their `tikvpb.Tikv` address as in TiKV: one
//! `BatchRaft` stream per destination store, and each snapshot on its own `Snapshot` stream.
//! A store's address comes from PD (`GetStore`), cached and looked up again after failures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pdclient::proto::pdpb;
use tls::net::ClientSource;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

use crate::pd::{Pd, check};
use crate::proto::raft_serverpb::{RaftMessage, SnapshotChunk};
use crate::proto::tikvpb::BatchRaftMessage;
use crate::proto::tikvpb::tikv_client::TikvClient;
use crate::raftstore::store::{Handle, Msg, Outbound};

/// Messages queued per destination store before new ones are dropped (raft resends).
const QUEUE: usize = 8192;
/// Messages per BatchRaft message.
const BATCH: usize = 256;
/// Snapshot chunk size (TiKV sends 1 MiB chunks).
const CHUNK: usize = 1 << 20;

/// Store addresses from PD.
pub struct Resolver {
    pd: Arc<Pd>,
    cache: Mutex<HashMap<u64, (String, Instant)>>,
}

impl Resolver {
    /// A resolver asking `pd`.
    pub fn new(pd: Arc<Pd>) -> Resolver {
        Resolver {
            pd,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The address of `store_id`, asking PD if it is not cached.
    pub async fn resolve(&self, store_id: u64) -> Option<String> {
        if let Some((addr, _)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&store_id)
        {
            return Some(addr.clone());
        }
        let resp = self
            .pd
            .call("GetStore", Duration::from_secs(2), |mut c, h| async move {
                c.get_store(pdpb::GetStoreRequest {
                    header: Some(h),
                    store_id,
                })
                .await
            })
            .await
            .ok()?;
        check("GetStore", resp.header.as_ref()).ok()?;
        let store = resp.store?;
        if store.state == pdclient::proto::metapb::StoreState::Tombstone as i32 {
            return None;
        }
        let addr = if store.peer_address.is_empty() {
            store.address
        } else {
            store.peer_address
        };
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(store_id, (addr.clone(), Instant::now()));
        Some(addr)
    }

    /// Forgets an address that failed, at most every few seconds (a restarted store may have
    /// moved; a dead one has not, and PD need not be asked on every retry).
    pub fn failed(&self, store_id: u64) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache
            .get(&store_id)
            .is_some_and(|(_, at)| at.elapsed() > Duration::from_secs(5))
        {
            cache.remove(&store_id);
        }
    }
}

/// How this store dials the others: the raft message timeout, and TLS when the store has
/// `[security]`.
#[derive(Clone)]
pub struct Dial {
    /// Connect timeout (and how long a peer gets to answer).
    pub timeout: Duration,
    /// The client config of the next connection.
    pub tls: Option<ClientSource>,
}

async fn connect(addr: &str, dial: &Dial) -> Result<TikvClient<Channel>, String> {
    let scheme = if dial.tls.is_some() { "https" } else { "http" };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(dial.timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(3));
    let channel = tls::net::connect(endpoint, dial.tls.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    Ok(TikvClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

/// Routes the raftstore's outbound messages until the raftstore drops its sender.
pub async fn run(
    mut rx: mpsc::UnboundedReceiver<Vec<Outbound>>,
    resolver: Arc<Resolver>,
    store: Handle,
    dial: Dial,
) {
    let mut queues: HashMap<u64, mpsc::Sender<RaftMessage>> = HashMap::new();
    while let Some(batch) = rx.recv().await {
        for out in batch {
            if let Some(data) = out.snapshot {
                tokio::spawn(send_snapshot(
                    resolver.clone(),
                    store.clone(),
                    out.to_store,
                    out.msg,
                    data,
                    dial.clone(),
                ));
                continue;
            }
            let to = out.to_store;
            let queue = queues.entry(to).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(connection(
                    to,
                    rx,
                    resolver.clone(),
                    store.clone(),
                    dial.clone(),
                ));
                tx
            });
            if queue.try_send(out.msg).is_err() {
                tracing::debug!(store_id = to, "raft queue full; message dropped");
            }
        }
    }
}

/// Keeps a BatchRaft stream to one store open and feeds it.
async fn connection(
    store_id: u64,
    mut rx: mpsc::Receiver<RaftMessage>,
    resolver: Arc<Resolver>,
    store: Handle,
    dial: Dial,
) {
    let mut pending: Option<RaftMessage> = None;
    loop {
        let first = match pending.take() {
            Some(m) => m,
            None => match rx.recv().await {
                Some(m) => m,
                None => return,
            },
        };
        let Some(addr) = resolver.resolve(store_id).await else {
            unreachable(&store, &mut rx, store_id).await;
            continue;
        };
        let mut client = match connect(&addr, &dial).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(store_id, %addr, error = %e, "cannot connect to store");
                resolver.failed(store_id);
                unreachable(&store, &mut rx, store_id).await;
                continue;
            }
        };
        let (tx, stream_rx) = mpsc::channel::<BatchRaftMessage>(16);
        let outbound =
            futures::stream::unfold(
                stream_rx,
                |mut r| async move { r.recv().await.map(|m| (m, r)) },
            );
        let mut call = tokio::spawn(async move { client.batch_raft(outbound).await });
        let mut next = Some(first);
        loop {
            let msg = match next.take() {
                Some(m) => m,
                None => tokio::select! {
                    m = rx.recv() => match m {
                        Some(m) => m,
                        None => return,
                    },
                    _ = &mut call => break,
                },
            };
            let mut msgs = vec![msg];
            while msgs.len() < BATCH {
                match rx.try_recv() {
                    Ok(m) => msgs.push(m),
                    Err(_) => break,
                }
            }
            if let Err(e) = tx.send(BatchRaftMessage { msgs }).await {
                pending = e.0.msgs.into_iter().next();
                break;
            }
        }
        tracing::debug!(store_id, %addr, "raft stream to store closed");
        resolver.failed(store_id);
        unreachable(&store, &mut rx, store_id).await;
    }
}

/// Tells the raftstore the store is unreachable and drops what queued meanwhile.
async fn unreachable(store: &Handle, rx: &mut mpsc::Receiver<RaftMessage>, store_id: u64) {
    store.send(Msg::Unreachable(store_id));
    tokio::time::sleep(Duration::from_millis(200)).await;
    while rx.try_recv().is_ok() {}
}

async fn send_snapshot(
    resolver: Arc<Resolver>,
    store: Handle,
    store_id: u64,
    msg: RaftMessage,
    data: Vec<u8>,
    dial: Dial,
) {
    let region_id = msg.region_id;
    let to_peer = msg.to_peer.map(|p| p.id).unwrap_or_default();
    let size = data.len();
    let result = async {
        let addr = resolver
            .resolve(store_id)
            .await
            .ok_or("store address unknown")?;
        let mut client = connect(&addr, &dial).await?;
        let mut chunks: Vec<SnapshotChunk> = data
            .chunks(CHUNK)
            .map(|c| SnapshotChunk {
                message: None,
                data: c.to_vec(),
            })
            .collect();
        if chunks.is_empty() {
            chunks.push(SnapshotChunk::default());
        }
        chunks[0].message = Some(msg);
        client
            .snapshot(futures::stream::iter(chunks))
            .await
            .map_err(|s| s.to_string())?;
        Ok::<(), String>(())
    }
    .await;
    if let Err(e) = &result {
        tracing::info!(region_id, store_id, error = %e, "snapshot not delivered");
    } else {
        tracing::info!(region_id, store_id, bytes = size, "snapshot sent");
    }
    store.send_blocking(Msg::SnapshotSent {
        region_id,
        to_peer,
        ok: result.is_ok(),
    });
}
