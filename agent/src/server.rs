//! The Unix-socket front: one task per connection turns request lines into commands, pushes
//! them into the bounded queue and writes each response line when it comes back. Responses may
//! come back in any order; each echoes its request's id.

use crate::executor::{Command, Reply};
use crate::protocol::{self, ApiError, ErrorCode, Limits, MAX_LINE};
use crossbeam_channel::{Sender, TrySendError};
use metrics::Metrics;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

#[derive(Clone)]
pub struct Front {
    pub metrics: Arc<Metrics>,
    pub queue: Sender<Command>,
    pub limits: Limits,
    /// How long a request may wait for room in a full queue before it is answered `busy`.
    pub queue_wait: Duration,
    /// Requests one connection may have in flight; past it, the connection is not read.
    pub max_in_flight: usize,
    /// A connection that sends no complete line for this long is closed (after its answers).
    pub idle: Duration,
}

/// Who may talk to the agent, besides root (always allowed).
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
}

impl Access {
    fn allows(&self, uid: u32, gid: u32) -> bool {
        uid == 0 || self.uids.contains(&uid) || self.gids.contains(&gid)
    }
}

/// Serves until `stop` fires; then stops accepting, lets every connection finish what it has
/// already sent (each request still gets its answer), and returns once they are all done (or
/// after `drain` at most).
pub async fn serve(
    listener: UnixListener,
    front: Front,
    access: Access,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let cred = stream.peer_cred().ok();
                    let allowed = cred.is_some_and(|c| access.allows(c.uid(), c.gid()));
                    if !allowed {
                        front.metrics.socket_rejected_total.with_label_values(&["peer_credentials"]).inc();
                        tracing::warn!(uid = ?cred.map(|c| c.uid()), "connection refused: peer not allowed");
                        tokio::spawn(refuse(stream));
                        continue;
                    }
                    let front = front.clone();
                    let stop = stop.clone();
                    conns.spawn(async move { connection(stream, front, stop).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        // Reap finished connection tasks as we go.
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} }).await;
}

async fn refuse(mut stream: UnixStream) {
    let err = Err(ApiError::new(
        ErrorCode::Forbidden,
        "peer credentials not allowed (see --allow-uid / --allow-gid)",
    ));
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        stream.write_all(&line(&Value::Null, &err)),
    )
    .await;
}

enum Line {
    Some,
    Eof,
    TooLong,
}

/// Reads one line into `buf` (without the newline), refusing lines longer than MAX_LINE
/// without buffering them.
async fn read_line(
    rd: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    buf: &mut Vec<u8>,
) -> std::io::Result<Line> {
    buf.clear();
    loop {
        let chunk = rd.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(if buf.is_empty() {
                Line::Eof
            } else {
                Line::Some
            });
        }
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if buf.len() + take > MAX_LINE + 1 {
            return Ok(Line::TooLong);
        }
        buf.extend_from_slice(&chunk[..take]);
        rd.consume(take);
        if done {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Line::Some);
        }
    }
}

/// Counts a connection while it is open.
struct Open(Arc<Metrics>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.socket_connections.dec();
    }
}

/// Counts an answered command.
fn observe(m: &Metrics, op: &str, r: &Reply, since: Instant) {
    let outcome = r.as_ref().err().map_or("ok", |e| e.code.as_str());
    m.commands_total.with_label_values(&[op, outcome]).inc();
    m.command_duration_seconds
        .with_label_values(&[op])
        .observe(since.elapsed().as_secs_f64());
}

async fn connection(stream: UnixStream, front: Front, mut stop: watch::Receiver<bool>) {
    front.metrics.socket_connections.inc();
    let _open = Open(front.metrics.clone());
    let (rd, wr) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(1024);
    let writer = tokio::spawn(async move {
        let mut wr = BufWriter::new(wr);
        while let Some(line) = out_rx.recv().await {
            if wr.write_all(&line).await.is_err() {
                return;
            }
            if out_rx.is_empty() && wr.flush().await.is_err() {
                return;
            }
        }
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
    });
    let in_flight = Arc::new(Semaphore::new(front.max_in_flight));
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let mut buf = Vec::with_capacity(1024);
    loop {
        let next = tokio::select! {
            _ = stop.changed() => break,
            next = tokio::time::timeout(front.idle, read_line(&mut rd, &mut buf)) => match next {
                Ok(next) => next,
                Err(_) => {
                    front.metrics.socket_rejected_total.with_label_values(&["idle"]).inc();
                    break;
                }
            },
        };
        match next {
            Ok(Line::Eof) | Err(_) => break,
            Ok(Line::TooLong) => {
                front
                    .metrics
                    .socket_rejected_total
                    .with_label_values(&["line_too_long"])
                    .inc();
                let err = Err(ApiError::new(
                    ErrorCode::BadRequest,
                    format!("request line longer than {MAX_LINE} bytes; closing the connection"),
                ));
                let _ = out_tx.send(line(&Value::Null, &err)).await;
                break;
            }
            Ok(Line::Some) => {}
        }
        if buf.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let arrived = Instant::now();
        let protocol::Decoded { id, op_name, op } = protocol::decode(&buf, front.limits);
        let op = match op {
            Ok(op) => op,
            Err(e) => {
                let r = Err(e);
                observe(&front.metrics, op_name, &r, arrived);
                if out_tx.send(line(&id, &r)).await.is_err() {
                    break;
                }
                continue;
            }
        };
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let out = out_tx.clone();
        let m = front.metrics.clone();
        let queued = enqueue(
            &front,
            Command {
                op,
                reply: reply_tx,
            },
        )
        .await;
        tokio::spawn(async move {
            let r: Reply = match queued {
                Err(e) => Err(e),
                Ok(()) => reply_rx.await.unwrap_or_else(|_| {
                    Err(ApiError::new(
                        ErrorCode::Internal,
                        "executor dropped the command",
                    ))
                }),
            };
            let _ = out.send(line(&id, &r)).await;
            drop(permit);
            observe(&m, op_name, &r, arrived);
            tracing::debug!(
                id = %id,
                op = op_name,
                outcome = r.as_ref().err().map_or("ok", |e| e.code.as_str()),
                micros = arrived.elapsed().as_micros() as u64,
                "command"
            );
        });
    }
    drop(out_tx);
    let _ = writer.await;
}

/// Pushes into the bounded queue; when it is full, waits (bounded) instead of dropping.
async fn enqueue(front: &Front, mut cmd: Command) -> Result<(), ApiError> {
    let deadline = Instant::now() + front.queue_wait;
    let mut pause = Duration::from_micros(200);
    loop {
        match front.queue.try_send(cmd) {
            Ok(()) => {
                front.metrics.queue_depth.set(front.queue.len() as i64);
                return Ok(());
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError::new(ErrorCode::Internal, "executor is gone"))
            }
            Err(TrySendError::Full(c)) => {
                if Instant::now() >= deadline {
                    return Err(ApiError::new(
                        ErrorCode::Busy,
                        "command queue full; retry later",
                    ));
                }
                cmd = c;
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(20));
            }
        }
    }
}

fn line(id: &Value, r: &Reply) -> Vec<u8> {
    let mut v = protocol::encode(id, r);
    v.push(b'\n');
    v
}
