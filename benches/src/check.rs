//! The connectivity check every method's namespaces must pass: from inside the namespace, a TCP
//! connection to a listener upstream, which answers with the peer address it saw. With
//! masquerade that is the uplink's address.

use anyhow::Context;
use nix::sched::{setns, CloneFlags};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

const PORT: u16 = 7000;

/// Starts the listener on a thread that moves into the upstream namespace for good.
pub fn start_listener() -> anyhow::Result<()> {
    let fd = std::fs::File::open("/run/netns/upstream").context("open upstream netns")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let bound = setns(&fd, CloneFlags::CLONE_NEWNET)
            .map_err(anyhow::Error::from)
            .and_then(|_| Ok(TcpListener::bind((super::sandbox::UPSTREAM_ADDR, PORT))?));
        let listener = match bound {
            Ok(l) => {
                let _ = tx.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        for mut s in listener.incoming().flatten() {
            if let Ok(peer) = s.peer_addr() {
                let _ = s.write_all(peer.ip().to_string().as_bytes());
            }
        }
    });
    rx.recv().context("listener thread")?
}

/// Checks every namespace in `names`; returns how many saw the expected peer address.
pub fn check_all(names: &[String], expect_peer: &str) -> anyhow::Result<usize> {
    let host = std::fs::File::open("/proc/thread-self/ns/net")?;
    let addr: SocketAddr = format!("{}:{PORT}", super::sandbox::UPSTREAM_ADDR).parse()?;
    let mut ok = 0;
    for name in names {
        let fd = std::fs::File::open(format!("/run/netns/{name}"))?;
        setns(&fd, CloneFlags::CLONE_NEWNET)?;
        let seen = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        setns(&host, CloneFlags::CLONE_NEWNET)?;
        if seen.as_deref().ok() == Some(expect_peer) {
            ok += 1;
        }
    }
    Ok(ok)
}
