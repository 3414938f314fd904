//! One connection's requests: decode each line, queue it for the executor, write its answer
//! when it comes back (in any order; each echoes its id).

use super::connection::{self, Closed, Connection, Line, Writer};
use super::Front;
use crate::cmd::{Request, Response, Watching};
use crate::events::{Subscription, OVERFLOW_LINE};
use crate::executor::{Answer, Job};
use crate::model::Labels;
use crate::protocol::{self, ApiError, ErrorCode, Reply, MAX_LINE};
use crossbeam_channel::TrySendError;
use metrics::Metrics;
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UnixStream;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

/// Counts a connection while it is open.
struct Open(Arc<Metrics>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.socket_connections.dec();
    }
}

/// One connection's reading side, and the writer its answers share.
struct Handler {
    front: Front,
    out: Writer,
    /// Requests in flight on this connection; past `front.max_in_flight` it is not read.
    in_flight: Arc<Semaphore>,
    /// The task that forwards the connection's events, once it watches (once is enough).
    forwarder: Option<tokio::task::JoinHandle<()>>,
    /// Told when the connection's watch fell too far behind: the connection closes.
    cut: Arc<Notify>,
}

/// How long a watcher that fell behind gets to take what was queued for it and the
/// `overflow` line, and then the rest of its answers, before its connection is closed under
/// it (each; a reader that takes nothing is gone within twice this).
pub const OVERFLOW_DRAIN: Duration = Duration::from_secs(30);
/// A watching connection is not closed for sending nothing (within reason: a year).
const WATCH_IDLE: Duration = Duration::from_secs(365 * 86_400);

/// Serves one connection until the client closes it, it idles out, or `stop` fires; then
/// answers everything already received before returning.
pub async fn run(stream: UnixStream, front: Front, mut stop: watch::Receiver<bool>) {
    front.metrics.socket_connections.inc();
    let _open = Open(front.metrics.clone());
    let (rd, wr) = stream.into_split();
    let (out, writer) = connection::writer(wr);
    let mut conn = Connection::new(rd);
    let mut handler = Handler {
        in_flight: Arc::new(Semaphore::new(front.max_in_flight)),
        front,
        out,
        forwarder: None,
        cut: Arc::new(Notify::new()),
    };
    let cut = handler.cut.clone();
    loop {
        let next = tokio::select! {
            _ = stop.changed() => break,
            _ = cut.notified() => break,
            next = tokio::time::timeout(handler.idle(), conn.read_line()) => match next {
                Ok(next) => next,
                Err(_) => {
                    handler.front.metrics.socket_rejected_total.with_label_values(&["idle"]).inc();
                    break;
                }
            },
        };
        match next {
            Ok(Line::Eof) => {
                if let Some(f) = handler.forwarder.as_mut() {
                    // A watcher that only shut its sending side still listens: keep
                    // forwarding until a write fails (it is gone) or the agent stops.
                    tokio::select! {
                        _ = f => {}
                        _ = stop.changed() => {}
                    }
                }
                break;
            }
            Err(_) => break,
            Ok(Line::TooLong) => {
                handler.too_long().await;
                break;
            }
            Ok(Line::Some) => {}
        }
        if handler.request(conn.line()).await.is_err() {
            break;
        }
        // A client that does not read its answers is not read either (until the agent stops).
        let room = tokio::select! {
            r = handler.out.room() => r,
            _ = stop.changed() => break,
        };
        if room.is_err() {
            break;
        }
    }
    let watched = handler.forwarder.is_some();
    if let Some(f) = handler.forwarder.take() {
        // Its events end with the connection (they would hold the writer open).
        f.abort();
    }
    drop(handler);
    if watched {
        // A watcher that fell behind may never read again: do not wait on it for ever.
        let abort = writer.abort_handle();
        if tokio::time::timeout(OVERFLOW_DRAIN, writer).await.is_err() {
            abort.abort();
        }
    } else {
        let _ = writer.await;
    }
}

impl Handler {
    /// How long the connection may send nothing: a watcher only listens.
    fn idle(&self) -> Duration {
        if self.forwarder.is_some() {
            WATCH_IDLE
        } else {
            self.front.idle
        }
    }

    /// Nothing of this connection's but the request at hand is in flight, and nobody's is
    /// queued: it may be run at once ([`crate::executor::Executor::direct`]). It passes none of
    /// its connection's requests; at most one the executor's thread has just taken from the
    /// queue and not yet begun, which was in flight with it (no order to keep).
    fn alone(&self) -> bool {
        self.in_flight.available_permits() + 1 == self.front.max_in_flight
            && self.front.queue.is_empty()
    }

    async fn too_long(&self) {
        self.front
            .metrics
            .socket_rejected_total
            .with_label_values(&["line_too_long"])
            .inc();
        let err = Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("request line longer than {MAX_LINE} bytes; closing the connection"),
        ));
        let _ = self.out.send(&line(&Value::Null, &err));
    }

    /// Decodes one line and queues it; its answer is written by a task of its own.
    async fn request(&mut self, bytes: &[u8]) -> Result<(), Closed> {
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(());
        }
        let arrived = Instant::now();
        let protocol::Decoded {
            id,
            op_name,
            request,
        } = protocol::decode(bytes, self.front.limits);
        let request = match request {
            Ok(Request::Watch { selector }) => {
                let r = self.watch(selector, &id);
                observe(&self.front.metrics, op_name, &r, arrived);
                return match r {
                    // Answered by `watch`, before any event.
                    Ok(_) => Ok(()),
                    Err(_) => self.out.send(&line(&id, &r)),
                };
            }
            Ok(r) => r,
            Err(e) => {
                let r = Err(e);
                observe(&self.front.metrics, op_name, &r, arrived);
                return self.out.send(&line(&id, &r));
            }
        };
        let permit = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Closed)?;
        let pending = Box::new(Pending {
            id,
            op_name,
            arrived,
            out: self.out.clone(),
            metrics: self.front.metrics.clone(),
            _permit: permit,
            answered: false,
        });
        let mut job = Job {
            request,
            reply: pending,
        };
        if self.alone() {
            match self.front.direct.try_direct(job) {
                None => {
                    // The pool is short one: the executor's thread refills it. A full queue
                    // has it at work already.
                    let _ = self.front.queue.try_send(Job::wake());
                    return Ok(());
                }
                Some(j) => job = j,
            }
        }
        if let Err((job, e)) = enqueue(&self.front, job).await {
            job.reply.send(Err(e));
        }
        Ok(())
    }
}

impl Handler {
    /// Subscribes the connection to the events and answers; then a task of its own forwards
    /// them. The answer goes out before any event: the subscription holds what is emitted
    /// meanwhile, and the forwarder starts after the answer is written.
    fn watch(&mut self, selector: Labels, id: &Value) -> Reply {
        if self.forwarder.is_some() {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "this connection is watching already",
            ));
        }
        let Subscription { mut rx, overflowed } = self.front.events.subscribe(selector);
        let r = Ok(Response::Watching(Watching { watching: true }));
        // A client that is gone has nothing to forward to: the forwarder's first write fails.
        let _ = self.out.send(&line(id, &r));
        let (out, cut) = (self.out.clone(), self.cut.clone());
        self.forwarder = Some(tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                // A watcher that reads nothing for this long is cut off: its events would
                // otherwise wait on it for ever.
                let room = tokio::time::timeout(OVERFLOW_DRAIN, out.room()).await;
                if !matches!(room, Ok(Ok(()))) || out.send(&event).is_err() {
                    cut.notify_one();
                    return;
                }
            }
            if overflowed.load(Ordering::Acquire) {
                if let Ok(Ok(())) = tokio::time::timeout(OVERFLOW_DRAIN, out.room()).await {
                    let _ = out.send(OVERFLOW_LINE);
                }
                cut.notify_one();
            }
        }));
        r
    }
}

/// A queued request waiting for its answer; the executor's thread writes it (or, if the
/// executor drops the command, an `internal` error).
struct Pending {
    id: Value,
    op_name: &'static str,
    arrived: Instant,
    out: Writer,
    metrics: Arc<Metrics>,
    _permit: OwnedSemaphorePermit,
    answered: bool,
}

impl Answer for Pending {
    fn send(mut self: Box<Self>, r: Reply) {
        self.answer(r);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.answered {
            self.answer(Err(ApiError::new(
                ErrorCode::Internal,
                "executor dropped the command",
            )));
        }
    }
}

impl Pending {
    fn answer(&mut self, r: Reply) {
        self.answered = true;
        observe(&self.metrics, self.op_name, &r, self.arrived);
        tracing::debug!(
            id = %self.id,
            op = self.op_name,
            outcome = r.as_ref().err().map_or("ok", |e| e.code.as_str()),
            micros = self.arrived.elapsed().as_micros() as u64,
            "command"
        );
        let mut out = protocol::encode_owned(&self.id, r);
        out.push(b'\n');
        // A client that left is nothing to answer.
        let _ = self.out.send(&out);
    }
}

/// Pushes into the bounded queue; when it is full, waits (up to `front.queue_wait`) instead of
/// dropping.
async fn enqueue(front: &Front, mut job: Job) -> Result<(), (Job, ApiError)> {
    let deadline = Instant::now() + front.queue_wait;
    let mut pause = Duration::from_micros(200);
    loop {
        match front.queue.try_send(job) {
            Ok(()) => {
                front.metrics.queue_depth.set(front.queue.len() as i64);
                return Ok(());
            }
            Err(TrySendError::Disconnected(j)) => {
                return Err((j, ApiError::new(ErrorCode::Internal, "executor is gone")))
            }
            Err(TrySendError::Full(j)) => {
                if Instant::now() >= deadline {
                    let busy = ApiError::new(ErrorCode::Busy, "command queue full; retry later");
                    return Err((j, busy));
                }
                job = j;
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(20));
            }
        }
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

/// One response line, newline included.
pub fn line(id: &Value, r: &Reply) -> Vec<u8> {
    let mut v = protocol::encode(id, r);
    v.push(b'\n');
    v
}
