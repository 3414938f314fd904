//! The agent process: [`run`] starts everything (the HTTP endpoint, the executor thread with
//! the kernel driver, the Unix socket) and stops it on SIGTERM/SIGINT. The socket side is
//! [`listener`] (bind, access, accept), [`handler`] (one connection's requests) and
//! [`connection`] (line framing).

mod connection;
mod handler;
mod listener;

use listener::serve;
pub use listener::{bind, Access, BindError};

use crate::config::{Config, Uplink};
use crate::driver::{EtcNetns, KernelDriver, Recovery};
use crate::events::Events;
use crate::executor::{self, Direct, Executor, Job};
use crate::model::Dirs;
use crate::netlink::Rtnl;
use crate::netns::{self, NetnsDir};
use crate::protocol::Limits;
use anyhow::{bail, Context};
use crossbeam_channel::{Receiver, Sender};
use metrics::Metrics;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a request waits for room in a full command queue before it is answered `busy`.
pub const QUEUE_WAIT: Duration = Duration::from_secs(2);
/// Requests one connection may have in flight; past it, the connection is not read until
/// answers drain (a client that never reads stalls only itself).
pub const MAX_IN_FLIGHT: usize = 4096;
/// A connection that sends no complete line for this long is closed (after its answers).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// At shutdown, how long connections get to receive the answers to what they sent.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(30);
/// Runtime threads: the socket side decodes, queues and writes; the kernel work is on the
/// executor's own thread (but for a lone claim on an idle agent, [`Executor::direct`]).
const RUNTIME_THREADS: usize = 2;

/// What every connection shares.
#[derive(Clone)]
pub(crate) struct Front {
    pub metrics: Arc<Metrics>,
    /// Where watching connections subscribe.
    pub events: Events,
    pub queue: Sender<Job>,
    /// The executor itself, for a lone claim while it waits for work.
    pub direct: Arc<dyn Direct>,
    pub limits: Limits,
    /// See [`QUEUE_WAIT`].
    pub queue_wait: Duration,
    /// See [`MAX_IN_FLIGHT`].
    pub max_in_flight: usize,
    /// See [`IDLE_TIMEOUT`].
    pub idle: Duration,
}

impl Front {
    /// The front with the documented limits.
    pub(crate) fn new(
        metrics: Arc<Metrics>,
        events: Events,
        queue: Sender<Job>,
        direct: Arc<dyn Direct>,
        limits: Limits,
    ) -> Self {
        Front {
            metrics,
            events,
            queue,
            direct,
            limits,
            queue_wait: QUEUE_WAIT,
            max_in_flight: MAX_IN_FLIGHT,
            idle: IDLE_TIMEOUT,
        }
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(config: Config) -> anyhow::Result<()> {
    let started = Instant::now();
    let uplink = match &config.uplink {
        Uplink::Any => None,
        Uplink::Named(u) => Some(u.clone()),
        Uplink::DefaultRoute => Rtnl::open()
            .and_then(|mut r| r.default_route_interface())
            .context("find the default route's interface")?,
    };
    netns::enable_ipv4_forwarding().context("enable IPv4 forwarding")?;
    // IPv6 is forwarded only by the interfaces that need it: each dual-stack namespace's host
    // veth (set when it is made) and the uplink, for the replies.
    if let (Some(_), Some(u)) = (&config.pool6, &uplink) {
        netns::force_ipv6_forwarding(u).with_context(|| format!("IPv6 forwarding on {u}"))?;
    }
    let metrics = Arc::new(
        Metrics::new(env!("CARGO_PKG_VERSION"), env!("NSAGENT_COMMIT"))
            .context("metrics registry")?,
    );
    metrics.queue_capacity.set(config.queue_capacity as i64);
    let ready = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_THREADS)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    // The HTTP endpoint comes up first: /healthz answers during start-up, /readyz says 503.
    if let Some(addr) = config.metrics_addr {
        let l = std::net::TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
        l.set_nonblocking(true)?;
        let (m, r) = (metrics.clone(), ready.clone());
        rt.spawn(async move {
            match tokio::net::TcpListener::from_std(l) {
                Ok(l) => crate::http::serve(l, m, r).await,
                Err(e) => tracing::error!(error = %e, "metrics listener"),
            }
        });
    }
    let limits = Limits {
        min_prefix: config.pool.slot_prefix(),
        min_prefix6: config.pool6.as_ref().map(|_| config.prefix_len6),
    };
    let (queue, jobs) = crossbeam_channel::bounded::<Job>(config.queue_capacity);
    let info = executor::Info {
        version: env!("CARGO_PKG_VERSION"),
        table: config.table.clone(),
        uplink,
        dirs: Dirs {
            netns: config.netns_dir.clone(),
            etc_netns: config.etc_netns_dir.clone(),
        },
        started,
    };
    let socket = config.socket.clone();
    let mut access = Access {
        uids: config.allow_uid.clone(),
        gids: config.allow_gid.clone(),
    };
    access.gids.extend(config.socket_group);
    let (mode, group) = (config.socket_mode, config.socket_group);
    let netns_dir = info.dirs.netns.display().to_string();
    let uplink_name = info.uplink.clone().unwrap_or_else(|| "none".into());
    let (table, pool) = (info.table.clone(), config.pool.base());
    let events = Events::default();
    let (executor, direct) = start_executor(config, info, metrics.clone(), events.clone(), jobs)?;
    let listener = bind(&socket, mode, group)?;
    ready.store(true, Ordering::Release);
    sd_notify("READY=1");
    tracing::info!(
        socket = %socket.display(),
        netns_dir,
        uplink = uplink_name,
        table,
        pool = %pool,
        "nsagent ready"
    );
    let front = Front::new(metrics, events, queue, direct, limits);
    rt.block_on(serve_until_signal(listener, front, access))?;
    let _ = std::fs::remove_file(&socket);
    // Namespaces stay (they are the host's workload) unless --cleanup-on-exit; either way the
    // executor finishes what is queued first.
    if executor.join().is_err() {
        bail!("executor thread panicked");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn serve_until_signal(
    listener: std::os::unix::net::UnixListener,
    front: Front,
    access: Access,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let mut term = signal(SignalKind::terminate())?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(serve(listener, front, access, stop_rx, SHUTDOWN_DRAIN));
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
    }
    // Stop accepting; answer what was sent; then the queue closes and the executor ends.
    sd_notify("STOPPING=1");
    let _ = stop_tx.send(true);
    let _ = serving.await;
    Ok(())
}

/// The executor, shared by its thread and the connections ([`Direct`]).
type Shared = Arc<Mutex<Executor<KernelDriver>>>;

/// Starts the executor thread, which does everything that talks to the kernel, and waits
/// until it has recovered the kernel's state.
fn start_executor(
    config: Config,
    info: executor::Info,
    metrics: Arc<Metrics>,
    events: Events,
    jobs: Receiver<Job>,
) -> anyhow::Result<(std::thread::JoinHandle<()>, Shared)> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<Shared>>();
    let limits = executor::Limits {
        max_batch: config.max_batch,
        max_pending: executor::MAX_PENDING_DELETIONS,
        cleanup_on_exit: config.cleanup_on_exit,
        warm: config.warm,
        check_every: config.check_interval,
    };
    let handle = std::thread::Builder::new()
        .name("executor".into())
        .spawn(move || {
            match open_kernel(&info, &metrics) {
                Ok((driver, recovery)) => {
                    let mut ex =
                        Executor::new(driver, info, limits, config.pool, config.pool6, metrics)
                            .with_events(events);
                    ex.adopt(recovery.adopted);
                    ex.adopt_warm(recovery.warm);
                    let shared = Arc::new(Mutex::new(ex));
                    let _ = ready_tx.send(Ok(shared.clone()));
                    Executor::run(&shared, jobs);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            };
        })
        .context("spawn executor thread")?;
    let shared = ready_rx
        .recv()
        .context("executor thread died during start-up")??;
    Ok((handle, shared))
}

/// Opens the kernel driver and rebuilds the view from the kernel: adopts what is whole,
/// removes what is not, and writes the table with the adopted namespaces' elements.
fn open_kernel(
    info: &executor::Info,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(KernelDriver, Recovery)> {
    let dir = NetnsDir::prepare(&info.dirs.netns).context("prepare the netns directory")?;
    let etc = EtcNetns::new(info.dirs.etc_netns.clone());
    let mut driver = KernelDriver::new(dir, etc, info.table.clone(), metrics.clone())
        .context("open kernel sockets")?;
    let spec = nft::TableSpec::new(&info.table, info.uplink.is_some());
    metrics.nft_rules.set(spec.rules().len() as i64);
    let recovery = driver
        .recover(&spec, info.uplink.as_deref())
        .context("recover state from the kernel")?;
    let count = |what, n: usize| {
        metrics
            .recovery_total
            .with_label_values(&[what])
            .inc_by(n as u64)
    };
    count("adopted", recovery.adopted.len());
    count("removed", recovery.removed.len());
    if !recovery.adopted.is_empty() || !recovery.removed.is_empty() {
        tracing::info!(
            adopted = recovery.adopted.len(),
            removed = recovery.removed.len(),
            "recovered state from the kernel"
        );
    }
    Ok((driver, recovery))
}

/// Tells systemd (Type=notify) about our state, if it is listening.
fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = (|| -> std::io::Result<()> {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::net::{SocketAddr, UnixDatagram};
        let sock = UnixDatagram::unbound()?;
        let addr = match path.as_bytes().strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None => SocketAddr::from_pathname(&path)?,
        };
        sock.send_to_addr(state.as_bytes(), &addr)?;
        Ok(())
    })();
    if let Err(e) = sent {
        tracing::warn!(error = %e, "sd_notify");
    }
}

#[cfg(test)]
mod tests;
