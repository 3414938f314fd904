//! Line framing, and nothing else: one JSON object per line each way (docs/protocol.md).

use crate::protocol::MAX_LINE;
use std::io;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Read buffer of one connection: room for many pipelined requests per read.
const READ_BUFFER: usize = 64 * 1024;
/// Answers queued for writing, per connection, before the handler waits for the socket.
const WRITE_QUEUE: usize = 1024;

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

/// The writing half: a task that writes whole lines in the order they are queued, flushing
/// when nothing else is waiting. Ends (and shuts the socket's write side) once every sender is
/// gone.
pub fn writer(wr: OwnedWriteHalf) -> (mpsc::Sender<Vec<u8>>, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let task = tokio::spawn(async move {
        let mut wr = BufWriter::new(wr);
        while let Some(line) = rx.recv().await {
            if wr.write_all(&line).await.is_err() {
                return;
            }
            if rx.is_empty() && wr.flush().await.is_err() {
                return;
            }
        }
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
    });
    (tx, task)
}
