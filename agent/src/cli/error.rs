//! What can go wrong in a client subcommand, and the exit code each carries.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// The agent answered `ok: false`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AgentError {
    /// The protocol's error code; kept as text so that a newer agent's codes still print.
    pub code: String,
    pub message: String,
}

/// No agent at the socket, or it went away mid-conversation.
#[derive(Debug)]
pub struct Unreachable {
    pub socket: PathBuf,
    pub error: io::Error,
    /// The conversation had started.
    pub lost: bool,
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.socket.display();
        if self.lost {
            return write!(
                f,
                "lost the connection to the agent at {path}: {}",
                self.error
            );
        }
        write!(f, "cannot reach the agent at {path}: {}", self.error)?;
        match self.error.kind() {
            io::ErrorKind::PermissionDenied => write!(
                f,
                " (run as root or as a member of the socket's group, or pass --socket)"
            ),
            _ => write!(
                f,
                " (is it running? start it with `nsagent run`, or pass --socket)"
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("{0}")]
    Unreachable(Unreachable),
    /// Failures already printed (one line each); only the exit code is left to give.
    #[error("failures reported above")]
    Reported,
    /// `exec` could not run its command.
    #[error("cannot run {program}: {error}")]
    Exec { program: String, error: io::Error },
    /// The agent broke the protocol (a line that is not JSON, an unknown id, …).
    #[error("{0}")]
    Protocol(String),
    /// Anything local, with its context chain.
    #[error("{0:#}")]
    Local(#[from] anyhow::Error),
}

impl CliError {
    /// 0 ok; 1 the agent refused, some requests of a bulk operation failed, or a local error;
    /// 2 usage (clap); 3 the agent is not reachable; `exec`: 126/127 when the command cannot
    /// be run, as env(1) and nsenter(1) do.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Unreachable(_) => 3,
            CliError::Exec { error, .. } if error.kind() == io::ErrorKind::NotFound => 127,
            CliError::Exec { .. } => 126,
            CliError::Agent(_)
            | CliError::Reported
            | CliError::Protocol(_)
            | CliError::Local(_) => 1,
        }
    }

    /// Whether the error still needs printing (bulk failures were printed as they were found).
    pub fn printed(&self) -> bool {
        matches!(self, CliError::Reported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        let unreachable = CliError::Unreachable(Unreachable {
            socket: "/x".into(),
            error: io::Error::from(io::ErrorKind::NotFound),
            lost: false,
        });
        assert_eq!(unreachable.exit_code(), 3);
        let exec = |kind| CliError::Exec {
            program: "x".into(),
            error: io::Error::from(kind),
        };
        assert_eq!(exec(io::ErrorKind::NotFound).exit_code(), 127);
        assert_eq!(exec(io::ErrorKind::PermissionDenied).exit_code(), 126);
        let agent = CliError::Agent(AgentError {
            code: "exists".into(),
            message: "m".into(),
        });
        assert_eq!(
            (agent.exit_code(), agent.to_string()),
            (1, "exists: m".into())
        );
        assert!(CliError::Reported.printed());
    }
}
