//! CQL servers for tests: no real Cassandra runs on these machines.
//!
//! - [`Kassandra`]: the in-memory CQL v4 server of the `kassandra` crate on a
//!   free loopback port, in its own thread. It speaks the wire protocol,
//!   prepares statements, pages and keeps schemas, but has no Paxos: it parses
//!   `INSERT ... IF NOT EXISTS` and a conditional BATCH as plain writes and
//!   answers them with a `Void` result instead of the `[applied]` row.
//!   It also cannot evaluate a range on a clustering column (`AND version >=
//!   ?`): it would ignore the clause. [`Kassandra`] takes such trailing
//!   `bigint` range clauses off a statement it prepares and applies them to
//!   the rows it answers, page by page; and it runs reads at SERIAL
//!   consistency, which it does not parse, as QUORUM (on one node, holding
//!   one lock per request, every read is linearizable).
//! - [`FaultProxy`]: `scylla-proxy` in front of it. It turns those `Void`
//!   answers into the `[applied] = true` row a Cassandra node sends for a
//!   conditional write that applied (the adapter's only writes with a `Void`
//!   answer are those and the snapshot upserts, whose answer it ignores), and
//!   lets a test forge what kassandra cannot produce: `[applied] = false`,
//!   write timeouts, unavailable replicas.
//!
//! What this leaves unverified: real Paxos (two writers racing for one
//! version) runs only against a real cluster (`SALESTRACK_TEST_CASSANDRA`).

use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use kassandra::cql::column::ColumnType;
use kassandra::cql::value::CqlValue;
use kassandra::error::DbError;
use kassandra::frame::request::execute::Execute;
use kassandra::frame::request::{Request, RequestOpcode as KassandraOpcode};
use kassandra::frame::response::result::{ColumnSpec, QueryResult};
use kassandra::frame::response::{error::Error, Response};
use kassandra::frame::value::FrameValue;
use kassandra::frame::{request_stream, response_sink};
use kassandra::KassandraSession;
use scylla_proxy::{
    Condition, Node, Proxy, Reaction, RequestFrame, RequestOpcode, RequestReaction, RequestRule,
    ResponseFrame, ResponseOpcode, ResponseReaction, ResponseRule, RunningProxy, ShardAwareness,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// An in-memory CQL server on a free loopback port, stopped on drop.
pub struct Kassandra {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Kassandra {
    pub fn start() -> std::io::Result<Kassandra> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("kassandra".into())
            .spawn(move || serve(listener, stopped))?;
        Ok(Kassandra {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Kassandra {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The server's state: kassandra's session and the range clauses it cannot
/// evaluate, by prepared statement id.
struct Server {
    kassandra: KassandraSession,
    ranges: HashMap<u128, RangeClauses>,
}

type Shared = Arc<Mutex<Server>>;

/// Trailing `<column> <op> ?` clauses of a prepared SELECT, bound by its
/// last values, in order.
#[derive(Debug, Clone)]
struct RangeClauses {
    column: String,
    ops: Vec<RangeOp>,
}

#[derive(Debug, Clone, Copy)]
enum RangeOp {
    Ge,
    Gt,
    Le,
    Lt,
}

impl RangeOp {
    fn parse(op: &str) -> Option<RangeOp> {
        Some(match op {
            ">=" => RangeOp::Ge,
            ">" => RangeOp::Gt,
            "<=" => RangeOp::Le,
            "<" => RangeOp::Lt,
            _ => return None,
        })
    }

    fn holds(self, value: i64, bound: i64) -> bool {
        match self {
            RangeOp::Ge => value >= bound,
            RangeOp::Gt => value > bound,
            RangeOp::Le => value <= bound,
            RangeOp::Lt => value < bound,
        }
    }
}

/// Splits `... WHERE a = ? AND v >= ? AND v <= ?` into the statement
/// without its range clauses and the clauses.
fn take_ranges(cql: &str) -> Result<(String, Option<RangeClauses>), String> {
    let Some((head, conditions)) = cql.split_once(" WHERE ") else {
        return Ok((cql.to_owned(), None));
    };
    let mut kept = Vec::new();
    let mut ranges: Option<RangeClauses> = None;
    for condition in conditions.split(" AND ") {
        let parts: Vec<&str> = condition.split_whitespace().collect();
        match parts.as_slice() {
            [column, op, "?"] if RangeOp::parse(op).is_some() => {
                let op = RangeOp::parse(op).ok_or("unreachable")?;
                let clauses = ranges.get_or_insert_with(|| RangeClauses {
                    column: (*column).to_owned(),
                    ops: Vec::new(),
                });
                if clauses.column != *column {
                    return Err(format!("ranges on two columns: {cql}"));
                }
                clauses.ops.push(op);
            }
            _ if ranges.is_some() => {
                return Err(format!("a condition after a range clause: {cql}"));
            }
            _ => kept.push(condition),
        }
    }
    Ok((format!("{head} WHERE {}", kept.join(" AND ")), ranges))
}

fn serve(listener: std::net::TcpListener, stopped: oneshot::Receiver<()>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let Ok(listener) = TcpListener::from_std(listener) else {
            return;
        };
        let session: Shared = Arc::new(Mutex::new(Server {
            kassandra: KassandraSession::new(),
            ranges: HashMap::new(),
        }));
        let accept = async {
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    tokio::task::spawn_local(connection(stream, Arc::clone(&session)));
                }
            }
        };
        tokio::select! {
            _ = accept => {}
            _ = stopped => {}
        }
    });
}

async fn connection(mut stream: TcpStream, session: Shared) {
    let (mut read, mut write) = stream.split();
    let mut requests = request_stream(&mut read);
    let mut responses = response_sink(&mut write);
    while let Some(Ok((frame, opcode, data))) = requests.next().await {
        let data = if opcode == KassandraOpcode::Execute {
            serial_read_as_quorum(data)
        } else {
            data
        };
        let response = if opcode == KassandraOpcode::Prepare {
            prepare(&session, &data)
        } else {
            match Request::deserialize(opcode, &data, frame.flags) {
                Ok(request) => answer(&session, request),
                Err(e) => Response::Error(Error::new(
                    DbError::ProtocolError,
                    format!("kassandra could not parse the request: {e:?}"),
                )),
            }
        };
        if responses.send((response, frame.stream)).await.is_err() {
            break;
        }
    }
}

/// kassandra does not parse the SERIAL and LOCAL_SERIAL consistencies of a
/// read (how a reader settles a Paxos round). On one node that holds one
/// lock per request every read is already linearizable, so an EXECUTE at
/// (LOCAL_)SERIAL runs as QUORUM. The consistency is the `[short]` after the
/// statement id's `[short bytes]` (protocol v4, 4.1.6).
fn serial_read_as_quorum(body: Bytes) -> Bytes {
    let Some(id_len) = body
        .get(..2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    else {
        return body;
    };
    let at = 2 + id_len;
    match body.get(at..at + 2) {
        Some([0x00, 0x08 | 0x09]) => {
            let mut patched = BytesMut::from(body.as_ref());
            patched[at..at + 2].copy_from_slice(&[0x00, 0x04]);
            patched.freeze()
        }
        _ => body,
    }
}

fn poisoned() -> Response {
    Response::Error(Error::new(DbError::ServerError, "session poisoned"))
}

/// PREPARE: the body is a long string (protocol v4, 4.1.5).
fn prepare(session: &Shared, body: &[u8]) -> Response {
    let invalid = |message: String| Response::Error(Error::new(DbError::Invalid, message));
    let Some(cql) = body
        .get(4..)
        .and_then(|text| std::str::from_utf8(text).ok())
    else {
        return Response::Error(Error::new(DbError::ProtocolError, "PREPARE body"));
    };
    let (cql, ranges) = match take_ranges(cql.trim()) {
        Ok(split) => split,
        Err(e) => return invalid(format!("test server: {e}")),
    };
    let query = match kassandra::cql::parser::query(&cql) {
        Ok(query) => query,
        Err(e) => return Response::Error(e),
    };
    let Ok(mut server) = session.lock() else {
        return poisoned();
    };
    match server.kassandra.prepare(query) {
        Ok(QueryResult::Prepared(mut prepared)) => {
            if let Some(ranges) = ranges {
                let table_spec = prepared
                    .prepared_metadata
                    .col_specs
                    .first()
                    .and_then(|c| c.table_spec.clone());
                for _ in &ranges.ops {
                    prepared.prepared_metadata.col_specs.push(ColumnSpec {
                        table_spec: table_spec.clone(),
                        name: ranges.column.clone(),
                        typ: ColumnType::BigInt,
                    });
                }
                server.ranges.insert(prepared.id, ranges);
            }
            Response::Result(QueryResult::Prepared(prepared))
        }
        Ok(other) => Response::Result(other),
        Err(e) => Response::Error(e),
    }
}

/// EXECUTE of a statement with range clauses: the last values are their
/// bounds; the rows kassandra answers are filtered by them.
fn execute(server: &mut Server, mut execute: Execute<'_>) -> Result<QueryResult, Error> {
    let id = <[u8; 16]>::try_from(execute.id).map(u128::from_be_bytes);
    let Some(ranges) = id.ok().and_then(|id| server.ranges.get(&id)).cloned() else {
        return server.kassandra.execute(execute);
    };
    let values = &mut execute.parameters.data;
    let split = values
        .len()
        .checked_sub(ranges.ops.len())
        .ok_or_else(|| Error::new(DbError::Invalid, "too few values for the range clauses"))?;
    let bounds = values
        .split_off(split)
        .into_iter()
        .map(|v| match v {
            FrameValue::Some(bytes) => <[u8; 8]>::try_from(bytes)
                .map(i64::from_be_bytes)
                .map_err(|_| Error::new(DbError::Invalid, "a range bound is not a bigint")),
            _ => Err(Error::new(DbError::Invalid, "a range bound is null")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut result = server.kassandra.execute(execute)?;
    if let QueryResult::Rows(rows) = &mut result {
        let index = rows
            .metadata
            .col_specs
            .iter()
            .position(|c| c.name == ranges.column)
            .ok_or_else(|| {
                Error::new(
                    DbError::Invalid,
                    format!("test server: select {} to range on it", ranges.column),
                )
            })?;
        rows.rows.retain(|row| match row.columns.get(index) {
            Some(Some(CqlValue::BigInt(value))) => ranges
                .ops
                .iter()
                .zip(&bounds)
                .all(|(op, bound)| op.holds(*value, *bound)),
            _ => false,
        });
    }
    Ok(result)
}

fn answer(session: &Shared, request: Request<'_>) -> Response {
    let Ok(mut server) = session.lock() else {
        return poisoned();
    };
    let result = match request {
        Request::StartUp(_) | Request::Register { .. } => return Response::Ready,
        Request::Options => return Response::options(),
        Request::Query(query) => server.kassandra.process(query),
        Request::Prepare(query) => server.kassandra.prepare(query),
        Request::Execute(e) => execute(&mut server, e),
        Request::Batch(batch) => server.kassandra.process_batch(batch),
        Request::AuthResponse => Err(Error::new(
            DbError::ProtocolError,
            "kassandra has no authentication",
        )),
    };
    match result {
        Ok(result) => Response::Result(result),
        Err(error) => Response::Error(error),
    }
}

// ------------------------------------------------------------------ proxy

/// `scylla-proxy` between the driver and a [`Kassandra`]; see the module
/// documentation. Connect the driver to [`FaultProxy::addr`].
pub struct FaultProxy {
    addr: SocketAddr,
    running: RunningProxy,
    // Kept alive for as long as the proxy forwards to it.
    _server: Kassandra,
}

impl FaultProxy {
    pub async fn start() -> Result<FaultProxy, String> {
        let server = Kassandra::start().map_err(|e| e.to_string())?;
        let addr = free_loopback_addr().map_err(|e| e.to_string())?;
        let node = Node::builder()
            .real_address(server.addr())
            .proxy_address(addr)
            .shard_awareness(ShardAwareness::Unaware)
            .response_rules(vec![applied_rule()])
            .build();
        let running = Proxy::builder()
            .with_node(node)
            .build()
            .run()
            .await
            .map_err(|e| e.to_string())?;
        Ok(FaultProxy {
            addr,
            running,
            _server: server,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next `times` writes (EXECUTE or BATCH) whose bound values
    /// contain `marker` (a command id's bytes, say) do not reach the server:
    /// the driver gets `fault` instead. Other requests pass.
    pub fn fault_writes_containing(&mut self, marker: &[u8], fault: Fault, times: usize) {
        let condition = Condition::or(
            Condition::RequestOpcode(RequestOpcode::Execute),
            Condition::RequestOpcode(RequestOpcode::Batch),
        )
        .and(Condition::BodyContainsCaseSensitive(marker.into()))
        .and(Condition::TrueForLimitedTimes(times));
        let reaction = match fault {
            Fault::NotApplied => {
                RequestReaction::forge_response(Arc::new(|request: RequestFrame| {
                    let body = applied_rows(false);
                    ResponseFrame {
                        params: request.params.for_response(),
                        opcode: ResponseOpcode::Result,
                        wire_body_len: body.len(),
                        body,
                    }
                }))
            }
            Fault::WriteTimeout => RequestReaction::forge().write_timeout(),
            Fault::Unavailable => RequestReaction::forge().unavailable(),
        };
        self.running.running_nodes[0]
            .change_request_rules(Some(vec![RequestRule(condition, reaction)]));
    }

    pub fn heal(&mut self) {
        self.running.running_nodes[0].change_request_rules(Some(vec![]));
    }
}

/// What [`FaultProxy`] answers instead of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `[applied] = false`: another writer took the row first.
    NotApplied,
    /// The coordinator timed out waiting for the Paxos round: ambiguous.
    WriteTimeout,
    /// Too few replicas alive: nothing was attempted.
    Unavailable,
}

fn free_loopback_addr() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// A `Void` result (kind 0x0001) becomes the `[applied] = true` row.
fn applied_rule() -> ResponseRule {
    ResponseRule(
        Condition::ResponseOpcode(ResponseOpcode::Result),
        ResponseReaction::transform_frame(Arc::new(|mut frame: ResponseFrame| {
            if frame.body.as_ref() == [0, 0, 0, 1] {
                frame.body = applied_rows(true);
                frame.wire_body_len = frame.body.len();
            }
            frame
        })),
    )
}

/// A `Rows` result body (protocol v4, section 4.2.5.2) with one boolean
/// column `[applied]` and one row.
fn applied_rows(applied: bool) -> Bytes {
    fn string(body: &mut BytesMut, s: &str) {
        body.put_u16(s.len() as u16);
        body.put_slice(s.as_bytes());
    }
    let mut body = BytesMut::new();
    body.put_i32(0x0002); // kind: Rows
    body.put_i32(0x0001); // flags: global table spec
    body.put_i32(1); // column count
    string(&mut body, "salestrack");
    string(&mut body, "events");
    string(&mut body, "[applied]");
    body.put_u16(0x0004); // type: boolean
    body.put_i32(1); // row count
    body.put_i32(1); // value length
    body.put_u8(u8::from(applied));
    body.freeze()
}
