//! Line framing, and nothing else: one JSON object per line each way (docs/protocol.md), and
//! the order lines go out in.

use crate::protocol::MAX_LINE;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Read buffer of one connection: room for many pipelined requests per read.
const READ_BUFFER: usize = 64 * 1024;

/// What [`Connection::read_line`] found.
pub enum Line {
    /// A line, in [`Connection::line`] (without its `\n` or `\r\n`).
    Some,
    Eof,
    /// Longer than [`MAX_LINE`]: the connection must be closed.
    TooLong,
}

/// The reading half: request lines.
pub struct Connection {
    rd: BufReader<OwnedReadHalf>,
    buf: Vec<u8>,
}

impl Connection {
    pub fn new(rd: OwnedReadHalf) -> Self {
        Connection {
            rd: BufReader::with_capacity(READ_BUFFER, rd),
            buf: Vec::with_capacity(1024),
        }
    }

    /// The line the last [`Connection::read_line`] read.
    pub fn line(&self) -> &[u8] {
        &self.buf
    }

    /// Reads one line, refusing lines longer than [`MAX_LINE`] without buffering them.
    pub async fn read_line(&mut self) -> io::Result<Line> {
        self.buf.clear();
        loop {
            let chunk = self.rd.fill_buf().await?;
            if chunk.is_empty() {
                return Ok(if self.buf.is_empty() {
                    Line::Eof
                } else {
                    Line::Some
                });
            }
            let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if self.buf.len() + take > MAX_LINE + 1 {
                return Ok(Line::TooLong);
            }
            self.buf.extend_from_slice(&chunk[..take]);
            self.rd.consume(take);
            if done {
                self.buf.pop();
                if self.buf.last() == Some(&b'\r') {
                    self.buf.pop();
                }
                return Ok(Line::Some);
            }
        }
    }
}

/// Bytes of answers queued for a client that does not read them, at most, before the
/// connection is not read any more (and its watch, if any, falls behind).
pub const WRITE_QUEUE: usize = 512 * 1024;

/// The connection's writer is gone (the client left, or a write failed).
#[derive(Debug)]
pub struct Closed;

/// The writing half, shared by everything that answers on the connection: the handler, the
/// executor's thread and the watch forwarder. A line is written at once by the thread that has
/// it when nothing is queued before it, so that an answer leaves from the executor's thread
/// without waking the runtime (docs/kernel.md#the-answer-leaves-from-the-executor); otherwise,
/// or when the socket is full, it is queued for the writer task, which waits for the socket.
/// Lines go out whole, in the order they were sent.
pub struct Writer(Arc<Shared>);

struct Shared {
    wr: OwnedWriteHalf,
    state: Mutex<State>,
    /// Wakes the writer task: something was queued for it, or the last writer is gone.
    wake: Notify,
    /// The writer task wrote what it had.
    drained: Notify,
}

#[derive(Default)]
struct State {
    queued: Vec<u8>,
    /// The writer task owns the socket: everything sent goes behind what it has.
    task_writes: bool,
    failed: bool,
    /// Live [`Writer`]s; the task ends (and the write side shuts) after the last.
    writers: usize,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held left nothing half-written that matters more than
        // the connection's remaining answers.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Starts the writer task of a connection's writing half.
pub fn writer(wr: OwnedWriteHalf) -> (Writer, JoinHandle<()>) {
    let shared = Arc::new(Shared {
        wr,
        state: Mutex::new(State {
            writers: 1,
            ..State::default()
        }),
        wake: Notify::new(),
        drained: Notify::new(),
    });
    let task = tokio::spawn(flush(shared.clone()));
    (Writer(shared), task)
}

impl Writer {
    /// Writes one line (newline included), or queues it behind what is queued. Never waits.
    pub fn send(&self, line: &[u8]) -> Result<(), Closed> {
        let mut st = self.0.state();
        if st.failed {
            return Err(Closed);
        }
        if st.task_writes {
            st.queued.extend_from_slice(line);
            return Ok(());
        }
        let mut rest = line;
        while !rest.is_empty() {
            match self.0.wr.try_write(rest) {
                Ok(0) => {
                    st.failed = true;
                    return Err(Closed);
                }
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    st.queued.extend_from_slice(rest);
                    st.task_writes = true;
                    drop(st);
                    self.0.wake.notify_one();
                    return Ok(());
                }
                Err(_) => {
                    st.failed = true;
                    return Err(Closed);
                }
            }
        }
        Ok(())
    }

    /// Waits until fewer than [`WRITE_QUEUE`] bytes are queued: a client that does not read
    /// stalls only itself.
    pub async fn room(&self) -> Result<(), Closed> {
        loop {
            let drained = self.0.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let st = self.0.state();
                if st.failed {
                    return Err(Closed);
                }
                if st.queued.len() < WRITE_QUEUE {
                    return Ok(());
                }
            }
            drained.await;
        }
    }
}

impl Clone for Writer {
    fn clone(&self) -> Self {
        self.0.state().writers += 1;
        Writer(self.0.clone())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let last = {
            let mut st = self.0.state();
            st.writers -= 1;
            st.writers == 0
        };
        if last {
            self.0.wake.notify_one();
        }
    }
}

/// The writer task: writes what was queued while the socket was full, until the last writer
/// is gone and nothing is queued; then the write side shuts (when `Shared` drops).
async fn flush(shared: Arc<Shared>) {
    loop {
        let chunk = {
            let mut st = shared.state();
            if st.queued.is_empty() {
                st.task_writes = false;
                if st.writers == 0 {
                    return;
                }
                None
            } else {
                Some(std::mem::take(&mut st.queued))
            }
        };
        let Some(chunk) = chunk else {
            shared.wake.notified().await;
            continue;
        };
        let written = write_all(&shared.wr, &chunk).await;
        if written.is_err() {
            shared.state().failed = true;
        }
        shared.drained.notify_waiters();
        if written.is_err() {
            return;
        }
    }
}

async fn write_all(wr: &OwnedWriteHalf, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        wr.writable().await?;
        match wr.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
