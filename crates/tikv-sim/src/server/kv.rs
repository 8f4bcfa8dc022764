//! `tikvpb.Tikv` on the store's address: RawKV for clients (unary and the `BatchCommands`
//! stream client-go uses), and raft traffic from other stores (`BatchRaft`, `Raft`,
//! `Snapshot`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status, Streaming};

use crate::proto::kvrpcpb::{self, KvPair};
use crate::proto::raft_serverpb::{Done, RaftMessage, SnapshotChunk};
use crate::proto::tikvpb::batch_commands_request::request::Cmd as ReqCmd;
use crate::proto::tikvpb::batch_commands_response::response::Cmd as RespCmd;
use crate::proto::tikvpb::tikv_server::Tikv;
use crate::proto::tikvpb::{
    BatchCommandsEmptyResponse, BatchCommandsRequest, BatchCommandsResponse, BatchRaftMessage,
    batch_commands_response,
};
use crate::proto::{errorpb, tikvpb};
use crate::raftstore::cmd::{KvRequest, KvResult, Op, OpKind, Output, ReadOp, WriteOp};
use crate::raftstore::store::{Handle, Msg};
use crate::server::metrics::GrpcMetrics;

/// Most responses one BatchCommands response carries (client-go's MaxBatchSize).
const MAX_BATCH: usize = 128;

/// The service; cheap to clone.
#[derive(Clone)]
pub struct KvService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Handle,
    cluster_id: u64,
    metrics: Arc<GrpcMetrics>,
}

/// A RawKV request decoded: TiKV's metric name, the context and the operation, or an answer
/// that needs no raftstore (a request the store refuses outright).
struct Decoded {
    ty: &'static str,
    ctx: kvrpcpb::Context,
    op: Result<Op, String>,
}

fn cf_ok(cf: &str) -> Result<(), String> {
    if cf.is_empty() || cf == "default" {
        Ok(())
    } else {
        Err(format!(
            "column family {cf:?} is not supported (RawKV uses the default one)"
        ))
    }
}

fn no_ttl(ttl: u64) -> Result<(), String> {
    if ttl == 0 {
        Ok(())
    } else {
        Err("TTL is not supported: the store runs API V1 without TTL".into())
    }
}

fn decode_get(r: kvrpcpb::RawGetRequest) -> Decoded {
    Decoded {
        ty: "raw_get",
        op: cf_ok(&r.cf).map(|()| Op::Read(ReadOp::Get(r.key))),
        ctx: r.context.unwrap_or_default(),
    }
}

fn decode_batch_get(r: kvrpcpb::RawBatchGetRequest) -> Decoded {
    Decoded {
        ty: "raw_batch_get",
        op: cf_ok(&r.cf).map(|()| Op::Read(ReadOp::BatchGet(r.keys))),
        ctx: r.context.unwrap_or_default(),
    }
}

fn decode_put(r: kvrpcpb::RawPutRequest) -> Decoded {
    Decoded {
        ty: "raw_put",
        op: cf_ok(&r.cf)
            .and_then(|()| no_ttl(r.ttl))
            .map(|()| Op::Write(vec![WriteOp::put(r.key, r.value)])),
        ctx: r.context.unwrap_or_default(),
    }
}

fn decode_batch_put(r: kvrpcpb::RawBatchPutRequest) -> Decoded {
    let ttl = r.ttl.max(r.ttls.iter().copied().max().unwrap_or(0));
    Decoded {
        ty: "raw_batch_put",
        op: cf_ok(&r.cf).and_then(|()| no_ttl(ttl)).map(|()| {
            Op::Write(
                r.pairs
                    .into_iter()
                    .map(|p| WriteOp::put(p.key, p.value))
                    .collect(),
            )
        }),
        ctx: r.context.unwrap_or_default(),
    }
}

fn decode_delete(r: kvrpcpb::RawDeleteRequest) -> Decoded {
    Decoded {
        ty: "raw_delete",
        op: cf_ok(&r.cf).map(|()| Op::Write(vec![WriteOp::delete(r.key)])),
        ctx: r.context.unwrap_or_default(),
    }
}

fn decode_batch_delete(r: kvrpcpb::RawBatchDeleteRequest) -> Decoded {
    Decoded {
        ty: "raw_batch_delete",
        op: cf_ok(&r.cf).map(|()| Op::Write(r.keys.into_iter().map(WriteOp::delete).collect())),
        ctx: r.context.unwrap_or_default(),
    }
}

fn decode_scan(r: kvrpcpb::RawScanRequest) -> Decoded {
    Decoded {
        ty: "raw_scan",
        op: cf_ok(&r.cf).map(|()| {
            Op::Read(ReadOp::Scan {
                start: r.start_key,
                end: r.end_key,
                limit: r.limit as usize,
                key_only: r.key_only,
                reverse: r.reverse,
            })
        }),
        ctx: r.context.unwrap_or_default(),
    }
}

fn decode_delete_range(r: kvrpcpb::RawDeleteRangeRequest) -> Decoded {
    Decoded {
        ty: "raw_delete_range",
        op: cf_ok(&r.cf).map(|()| {
            Op::Write(vec![WriteOp {
                kind: OpKind::DeleteRange as i32,
                key: r.start_key,
                end_key: r.end_key,
                ..Default::default()
            }])
        }),
        ctx: r.context.unwrap_or_default(),
    }
}

fn decode_cas(r: kvrpcpb::RawCasRequest) -> Decoded {
    Decoded {
        ty: "raw_compare_and_swap",
        op: cf_ok(&r.cf).and_then(|()| no_ttl(r.ttl)).map(|()| {
            Op::Write(vec![WriteOp {
                kind: OpKind::CompareAndSwap as i32,
                key: r.key,
                value: r.value,
                prev_not_exist: r.previous_not_exist,
                prev_value: r.previous_value,
                ..Default::default()
            }])
        }),
        ctx: r.context.unwrap_or_default(),
    }
}

/// A raftstore answer split into the parts every Raw* response has.
struct Answer {
    region_error: Option<errorpb::Error>,
    error: String,
    output: Option<Output>,
}

impl Answer {
    fn from(r: Result<KvResult, String>) -> Answer {
        match r {
            Ok(Ok(output)) => Answer {
                region_error: None,
                error: String::new(),
                output: Some(output),
            },
            Ok(Err(region_error)) => Answer {
                region_error: Some(*region_error),
                error: String::new(),
                output: None,
            },
            Err(error) => Answer {
                region_error: None,
                error,
                output: None,
            },
        }
    }

    fn value(&mut self) -> Option<Vec<u8>> {
        match self.output.take() {
            Some(Output::Value(v)) => v,
            _ => None,
        }
    }

    fn pairs(&mut self) -> Vec<KvPair> {
        match self.output.take() {
            Some(Output::Pairs(p)) => p
                .into_iter()
                .map(|(key, value)| KvPair {
                    error: None,
                    key,
                    value,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl KvService {
    /// A service over the raftstore of the store in cluster `cluster_id`.
    pub fn new(store: Handle, cluster_id: u64, metrics: Arc<GrpcMetrics>) -> KvService {
        KvService {
            inner: Arc::new(Inner {
                store,
                cluster_id,
                metrics,
            }),
        }
    }

    /// Runs a decoded request: the cluster check (a Status, as TiKV answers it), then the
    /// raftstore.
    async fn exec(&self, d: Decoded) -> Result<(&'static str, Result<KvResult, String>), Status> {
        if d.ctx.cluster_id != 0 && d.ctx.cluster_id != self.inner.cluster_id {
            self.inner.metrics.observe(d.ty, Default::default(), true);
            return Err(Status::invalid_argument(format!(
                "cluster ID mismatch: request for cluster {}, this store is in cluster {}",
                d.ctx.cluster_id, self.inner.cluster_id
            )));
        }
        let started = Instant::now();
        let result = match d.op {
            Err(e) => Err(e),
            Ok(op) => {
                let (tx, rx) = oneshot::channel();
                self.inner.store.request(KvRequest {
                    ctx: d.ctx,
                    op,
                    reply: tx,
                });
                Ok(rx.await.unwrap_or_else(|_| crate::raftstore::store::busy()))
            }
        };
        self.inner.metrics.observe(d.ty, started.elapsed(), false);
        Ok((d.ty, result))
    }

    /// One BatchCommands request, answered as its response variant.
    async fn dispatch(&self, cmd: ReqCmd) -> Result<RespCmd, Status> {
        let d = match cmd {
            ReqCmd::Empty(e) => {
                return Ok(RespCmd::Empty(BatchCommandsEmptyResponse {
                    test_id: e.test_id,
                }));
            }
            ReqCmd::RawGet(r) => decode_get(r),
            ReqCmd::RawBatchGet(r) => decode_batch_get(r),
            ReqCmd::RawPut(r) => decode_put(r),
            ReqCmd::RawBatchPut(r) => decode_batch_put(r),
            ReqCmd::RawDelete(r) => decode_delete(r),
            ReqCmd::RawBatchDelete(r) => decode_batch_delete(r),
            ReqCmd::RawScan(r) => decode_scan(r),
            ReqCmd::RawDeleteRange(r) => decode_delete_range(r),
        };
        let (ty, result) = self.exec(d).await?;
        Ok(respond(ty, Answer::from(result)))
    }

    fn forward_raft(&self, msg: RaftMessage) {
        // A full inbox drops raft messages; raft retries them.
        self.inner.store.send(Msg::Raft(msg, None));
    }
}

/// Builds the response of type `ty`.
fn respond(ty: &'static str, mut a: Answer) -> RespCmd {
    match ty {
        "raw_get" => {
            let value = a.value();
            RespCmd::RawGet(kvrpcpb::RawGetResponse {
                not_found: value.is_none() && a.region_error.is_none() && a.error.is_empty(),
                value: value.unwrap_or_default(),
                region_error: a.region_error,
                error: a.error,
            })
        }
        "raw_batch_get" => RespCmd::RawBatchGet(kvrpcpb::RawBatchGetResponse {
            pairs: a.pairs(),
            region_error: a.region_error,
        }),
        "raw_put" => RespCmd::RawPut(kvrpcpb::RawPutResponse {
            region_error: a.region_error,
            error: a.error,
        }),
        "raw_batch_put" => RespCmd::RawBatchPut(kvrpcpb::RawBatchPutResponse {
            region_error: a.region_error,
            error: a.error,
        }),
        "raw_delete" => RespCmd::RawDelete(kvrpcpb::RawDeleteResponse {
            region_error: a.region_error,
            error: a.error,
        }),
        "raw_batch_delete" => RespCmd::RawBatchDelete(kvrpcpb::RawBatchDeleteResponse {
            region_error: a.region_error,
            error: a.error,
        }),
        "raw_scan" => RespCmd::RawScan(kvrpcpb::RawScanResponse {
            kvs: a.pairs(),
            region_error: a.region_error,
        }),
        _ => RespCmd::RawDeleteRange(kvrpcpb::RawDeleteRangeResponse {
            region_error: a.region_error,
            error: a.error,
        }),
    }
}

fn cas_response(mut a: Answer) -> kvrpcpb::RawCasResponse {
    let (succeed, previous) = match a.output.take() {
        Some(Output::Cas { succeed, previous }) => (succeed, previous),
        _ => (false, None),
    };
    kvrpcpb::RawCasResponse {
        region_error: a.region_error,
        error: a.error,
        succeed,
        previous_not_exist: previous.is_none(),
        previous_value: previous.unwrap_or_default(),
    }
}

macro_rules! unary {
    ($self:ident, $req:ident, $decode:ident, $variant:ident) => {{
        let (ty, result) = $self.exec($decode($req.into_inner())).await?;
        match respond(ty, Answer::from(result)) {
            RespCmd::$variant(r) => Ok(Response::new(r)),
            _ => Err(Status::internal("response of the wrong type")),
        }
    }};
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Tikv for KvService {
    async fn raw_get(
        &self,
        req: Request<kvrpcpb::RawGetRequest>,
    ) -> Result<Response<kvrpcpb::RawGetResponse>, Status> {
        unary!(self, req, decode_get, RawGet)
    }

    async fn raw_batch_get(
        &self,
        req: Request<kvrpcpb::RawBatchGetRequest>,
    ) -> Result<Response<kvrpcpb::RawBatchGetResponse>, Status> {
        unary!(self, req, decode_batch_get, RawBatchGet)
    }

    async fn raw_put(
        &self,
        req: Request<kvrpcpb::RawPutRequest>,
    ) -> Result<Response<kvrpcpb::RawPutResponse>, Status> {
        unary!(self, req, decode_put, RawPut)
    }

    async fn raw_batch_put(
        &self,
        req: Request<kvrpcpb::RawBatchPutRequest>,
    ) -> Result<Response<kvrpcpb::RawBatchPutResponse>, Status> {
        unary!(self, req, decode_batch_put, RawBatchPut)
    }

    async fn raw_delete(
        &self,
        req: Request<kvrpcpb::RawDeleteRequest>,
    ) -> Result<Response<kvrpcpb::RawDeleteResponse>, Status> {
        unary!(self, req, decode_delete, RawDelete)
    }

    async fn raw_batch_delete(
        &self,
        req: Request<kvrpcpb::RawBatchDeleteRequest>,
    ) -> Result<Response<kvrpcpb::RawBatchDeleteResponse>, Status> {
        unary!(self, req, decode_batch_delete, RawBatchDelete)
    }

    async fn raw_scan(
        &self,
        req: Request<kvrpcpb::RawScanRequest>,
    ) -> Result<Response<kvrpcpb::RawScanResponse>, Status> {
        unary!(self, req, decode_scan, RawScan)
    }

    async fn raw_delete_range(
        &self,
        req: Request<kvrpcpb::RawDeleteRangeRequest>,
    ) -> Result<Response<kvrpcpb::RawDeleteRangeResponse>, Status> {
        unary!(self, req, decode_delete_range, RawDeleteRange)
    }

    async fn raw_compare_and_swap(
        &self,
        req: Request<kvrpcpb::RawCasRequest>,
    ) -> Result<Response<kvrpcpb::RawCasResponse>, Status> {
        let (_, result) = self.exec(decode_cas(req.into_inner())).await?;
        Ok(Response::new(cas_response(Answer::from(result))))
    }

    async fn raft(&self, req: Request<Streaming<RaftMessage>>) -> Result<Response<Done>, Status> {
        let mut stream = req.into_inner();
        while let Some(msg) = stream.message().await? {
            self.forward_raft(msg);
        }
        Ok(Response::new(Done {}))
    }

    async fn batch_raft(
        &self,
        req: Request<Streaming<BatchRaftMessage>>,
    ) -> Result<Response<Done>, Status> {
        let mut stream = req.into_inner();
        while let Some(batch) = stream.message().await? {
            // One inbox message per batch: the raftstore wakes once for all of them.
            self.inner.store.send(Msg::RaftBatch(batch.msgs));
        }
        Ok(Response::new(Done {}))
    }

    async fn snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<Done>, Status> {
        let mut stream = req.into_inner();
        let mut message = None;
        let mut data = Vec::new();
        while let Some(chunk) = stream.message().await? {
            if let Some(m) = chunk.message {
                message = Some(m);
            }
            data.extend_from_slice(&chunk.data);
        }
        let message =
            message.ok_or_else(|| Status::invalid_argument("snapshot without a message"))?;
        if self.inner.store.send(Msg::Raft(message, Some(data))) {
            Ok(Response::new(Done {}))
        } else {
            Err(Status::unavailable("raftstore is busy"))
        }
    }

    type BatchCommandsStream = BoxStream<BatchCommandsResponse>;

    async fn batch_commands(
        &self,
        req: Request<Streaming<BatchCommandsRequest>>,
    ) -> Result<Response<Self::BatchCommandsStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel::<Result<(u64, RespCmd), Status>>(4 * MAX_BATCH);
        let svc = self.clone();
        tokio::spawn(async move {
            loop {
                let batch = match inbound.message().await {
                    Ok(Some(b)) => b,
                    Ok(None) => return,
                    Err(status) => {
                        tracing::debug!(%status, "BatchCommands stream ended");
                        return;
                    }
                };
                for (req, id) in batch.requests.into_iter().zip(batch.request_ids) {
                    let Some(cmd) = req.cmd else { continue };
                    let svc = svc.clone();
                    let tx = tx.clone();
                    // Each request on its own: responses go back as they finish, in any order.
                    tokio::spawn(async move {
                        let r = svc.dispatch(cmd).await.map(|resp| (id, resp));
                        let _ = tx.send(r).await;
                    });
                }
            }
        });
        let out = futures::stream::unfold(rx, |mut rx| async move {
            let first = rx.recv().await?;
            let mut resp = BatchCommandsResponse::default();
            let mut next = Some(first);
            while let Some(r) = next.take() {
                match r {
                    Ok((id, cmd)) => {
                        resp.request_ids.push(id);
                        resp.responses
                            .push(batch_commands_response::Response { cmd: Some(cmd) });
                    }
                    // The stream ends with the error (a request for another cluster).
                    Err(status) => return Some((Err(status), rx)),
                }
                if resp.responses.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            Some((Ok(resp), rx))
        });
        Ok(Response::new(Box::pin(out)))
    }
}

/// Generated server wrapper, with messages up to TiKV's gRPC limits (snapshots come in chunks).
pub fn server(svc: KvService) -> tikvpb::tikv_server::TikvServer<KvService> {
    tikvpb::tikv_server::TikvServer::new(svc)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

/// The store's gRPC endpoints on one address: health checks (`grpc.health.v1`) and `Tikv`.
/// (A two-way switch instead of tonic's router, which would pull in axum.)
#[derive(Clone)]
pub struct Endpoints<H> {
    /// The Tikv service.
    pub kv: tikvpb::tikv_server::TikvServer<KvService>,
    /// The health service.
    pub health: H,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

impl<H> tonic::codegen::Service<http::Request<tonic::body::Body>> for Endpoints<H>
where
    H: tonic::codegen::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    H::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path().starts_with("/grpc.health.v1.Health/") {
            Box::pin(self.health.call(req))
        } else {
            Box::pin(self.kv.call(req))
        }
    }
}
