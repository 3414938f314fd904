//! The socket: binding it safely, who may connect, the accept loop and a graceful stop.

use super::{handler, Front};
use crate::protocol::{ApiError, ErrorCode};
use serde_json::Value;
use std::io;
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

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

/// Why the socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("create {path}: {source}")]
    Dir { path: String, source: io::Error },
    #[error("refusing to serve in {0}: it must be owned by root and writable only by root")]
    UnsafeDir(String),
    #[error("another agent is already listening on {0}")]
    InUse(String),
    #[error("{what} {path}: {source}")]
    Socket {
        what: &'static str,
        path: String,
        source: io::Error,
    },
}

/// Creates the socket's directory (root-only writable) and binds, refusing to steal the socket
/// of an agent that is still alive.
pub fn bind(
    path: &Path,
    mode: u32,
    group: Option<u32>,
) -> Result<std::os::unix::net::UnixListener, BindError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let shown = |p: &Path| p.display().to_string();
    let sock_err = |what| {
        move |source| BindError::Socket {
            what,
            path: shown(path),
            source,
        }
    };
    if let Some(dir) = path.parent() {
        let dir_err = |source| BindError::Dir {
            path: shown(dir),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(dir_err)?;
        // Only root may be able to replace the socket.
        let meta = std::fs::metadata(dir).map_err(dir_err)?;
        if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
            return Err(BindError::UnsafeDir(shown(dir)));
        }
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(BindError::InUse(shown(path)));
        }
        std::fs::remove_file(path).map_err(sock_err("remove stale socket"))?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(sock_err("bind"))?;
    std::os::unix::fs::chown(path, Some(0), group).map_err(sock_err("chown"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(sock_err("chmod"))?;
    listener
        .set_nonblocking(true)
        .map_err(sock_err("set non-blocking"))?;
    Ok(listener)
}

/// Serves until `stop` fires; then stops accepting, lets every connection finish what it has
/// already sent (each request still gets its answer), and returns once they are all done (or
/// after `drain` at most).
pub(crate) async fn serve(
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
                    conns.spawn(handler::run(stream, front.clone(), stop.clone()));
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
        stream.write_all(&handler::line(&Value::Null, &err)),
    )
    .await;
}
