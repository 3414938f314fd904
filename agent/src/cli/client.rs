//! The protocol client: the same request and result types as the server ([`crate::cmd`]),
//! one call at a time or pipelined.

use super::error::{AgentError, CliError, Unreachable};
use crate::cmd::Op;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the client waits for the next response before giving up on the agent. The agent
/// answers `busy` after at most 10 s, so this only trips when it hangs.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// A request line: `{"id":…,"op":…,…fields}`.
#[derive(Serialize)]
struct Envelope<'a, O> {
    id: u64,
    op: &'static str,
    #[serde(flatten)]
    fields: &'a O,
}

/// A response line.
#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    id: Value,
    ok: bool,
    #[serde(default)]
    result: Value,
    error: Option<AgentError>,
}

impl Answer {
    fn outcome<T: serde::de::DeserializeOwned>(self) -> Result<Result<T, AgentError>, CliError> {
        if !self.ok {
            return Ok(Err(self.error.unwrap_or_else(|| AgentError {
                code: "unknown".into(),
                message: "the agent refused without saying why".into(),
            })));
        }
        serde_json::from_value(self.result)
            .map(Ok)
            .map_err(|e| CliError::Protocol(format!("the agent's result does not parse: {e}")))
    }
}

pub struct Client {
    socket: PathBuf,
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
}

impl Client {
    pub fn connect(socket: &Path) -> Result<Client, CliError> {
        let unreachable = |error| {
            CliError::Unreachable(Unreachable {
                socket: socket.to_path_buf(),
                error,
                lost: false,
            })
        };
        let stream = UnixStream::connect(socket).map_err(unreachable)?;
        stream
            .set_read_timeout(Some(RESPONSE_TIMEOUT))
            .map_err(unreachable)?;
        let reader = BufReader::new(stream.try_clone().map_err(unreachable)?);
        Ok(Client {
            socket: socket.to_path_buf(),
            stream,
            reader,
            next_id: 1,
        })
    }

    fn lost(&self, error: io::Error) -> CliError {
        CliError::Unreachable(Unreachable {
            socket: self.socket.clone(),
            error,
            lost: true,
        })
    }

    /// Reads one response line.
    fn recv(&mut self) -> Result<Answer, CliError> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(self.lost(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the agent closed the connection",
            ))),
            Ok(_) => serde_json::from_str(&line).map_err(|_| {
                CliError::Protocol(format!(
                    "the agent sent a line that is not a response: {:?}",
                    line.trim_end()
                ))
            }),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(self.lost(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no response within {} s", RESPONSE_TIMEOUT.as_secs()),
                )))
            }
            Err(e) => Err(self.lost(e)),
        }
    }

    /// One request, one response: the result, or the agent's error.
    pub fn call<O: Op>(&mut self, op: &O) -> Result<O::Output, CliError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = serde_json::to_vec(&Envelope {
            id,
            op: O::NAME,
            fields: op,
        })
        .map_err(|e| CliError::Local(e.into()))?;
        line.push(b'\n');
        if let Err(e) = self.stream.write_all(&line) {
            return Err(self.lost(e));
        }
        let answer = self.recv()?;
        if answer.id != id {
            // A response to nothing we sent: the connection was refused (peer credentials) or
            // the agent misbehaves.
            let got = answer.id.clone();
            answer.outcome::<Value>()??;
            return Err(CliError::Protocol(format!(
                "the agent answered id {got} to request {id}"
            )));
        }
        Ok(answer.outcome()??)
    }

    /// After a `watch` was answered: the next event line, as it came (`None`: the agent closed
    /// the connection). Waits as long as it takes.
    pub fn next_event(&mut self) -> Result<Option<String>, CliError> {
        self.stream
            .set_read_timeout(None)
            .map_err(|e| self.lost(e))?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(line)),
            Err(e) => Err(self.lost(e)),
        }
    }

    /// Sends every request at once (from a writer thread) while reading the responses as they
    /// come, in any order; returns the outcomes in request order.
    pub fn pipeline<O: Op + Send + 'static>(
        &mut self,
        ops: Vec<O>,
        progress: &ProgressBar,
    ) -> Result<Vec<Result<O::Output, AgentError>>, CliError> {
        let n = ops.len();
        let first = self.next_id;
        self.next_id += n as u64;
        let stream = self.stream.try_clone().map_err(|e| self.lost(e))?;
        let writer = std::thread::Builder::new()
            .name("requests".into())
            .spawn(move || -> io::Result<()> {
                let mut w = BufWriter::new(stream);
                for (id, op) in (first..).zip(&ops) {
                    let envelope = Envelope {
                        id,
                        op: O::NAME,
                        fields: op,
                    };
                    serde_json::to_writer(&mut w, &envelope)?;
                    w.write_all(b"\n")?;
                }
                w.flush()
            })
            .map_err(|e| {
                CliError::Local(anyhow::Error::new(e).context("spawn the request writer"))
            })?;
        let mut outcomes: Vec<Option<Result<O::Output, AgentError>>> =
            (0..n).map(|_| None).collect();
        for _ in 0..n {
            // On failure the writer thread is left behind: the process is about to exit.
            let answer = self.recv()?;
            let slot = answer
                .id
                .as_u64()
                .and_then(|id| id.checked_sub(first))
                .and_then(|i| usize::try_from(i).ok())
                .filter(|i| *i < n);
            let Some(i) = slot else {
                let id = answer.id.clone();
                answer.outcome::<Value>()??;
                return Err(CliError::Protocol(format!(
                    "the agent answered id {id} that was never sent"
                )));
            };
            if outcomes[i].is_some() {
                return Err(CliError::Protocol(format!(
                    "the agent answered id {} twice",
                    answer.id
                )));
            }
            outcomes[i] = Some(answer.outcome()?);
            progress.inc(1);
        }
        match writer.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.lost(e)),
            Err(_) => return Err(CliError::Protocol("the request writer panicked".into())),
        }
        outcomes
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| CliError::Protocol("a request got no response".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_carry_the_agents_error() {
        let a: Answer = serde_json::from_value(
            json!({"id":1,"ok":false,"error":{"code":"exists","message":"m"}}),
        )
        .unwrap();
        let e = a.outcome::<Value>().unwrap().unwrap_err();
        assert_eq!(e.to_string(), "exists: m");
        let a: Answer = serde_json::from_value(json!({"id":1,"ok":true,"result":{"x":1}})).unwrap();
        assert_eq!(a.outcome::<Value>().unwrap().unwrap(), json!({"x":1}));
    }
}
