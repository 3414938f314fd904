//! The `nsagent` binary: configuration and start-up; the agent itself lives in the library.
//! The client subcommands live in [`cli`].

mod cli;
mod config;

use nsagent::{driver, executor, http, model, netlink, netns, pool, protocol, recover, server};

use anyhow::{bail, Context};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "nsagent",
    version,
    about = "Network namespaces at kernel speed"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent.
    Run(RunArgs),
    /// Create a namespace, or --count of them.
    Add(cli::AddArgs),
    /// Delete namespaces by name, or every one whose name has a --prefix.
    Del(cli::DelArgs),
    /// List the namespaces.
    List(cli::ListArgs),
    /// Show one namespace.
    Show(cli::ShowArgs),
    /// Show the agent's status.
    Status(cli::StatusArgs),
    /// Run a command inside a namespace's network namespace.
    Exec(cli::ExecArgs),
    /// Print a shell completion script.
    Completions(cli::CompletionsArgs),
    /// Print the man page (roff).
    Man,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    Text,
    /// One JSON object per line (journald, Loki, ELK).
    Json,
}

#[derive(Parser, Debug, Clone, serde::Serialize)]
struct RunArgs {
    /// Configuration file (TOML; keys are these flags' names with `_`). Precedence:
    /// flag > environment > file > default. A missing default file is fine.
    #[arg(long, env = "NSAGENT_CONFIG", default_value = config::DEFAULT_PATH)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Validate the configuration, print the effective one, and exit.
    #[arg(long)]
    #[serde(skip)]
    check_config: bool,
    /// Unix socket to serve the protocol on.
    #[arg(
        long,
        env = "NSAGENT_SOCKET",
        default_value = "/run/nsagent/nsagent.sock"
    )]
    socket: PathBuf,
    /// Directory of named network namespaces (as `ip netns` uses).
    #[arg(long, env = "NSAGENT_NETNS_DIR", default_value = "/run/netns")]
    netns_dir: PathBuf,
    /// Interface namespace traffic leaves through. Default: the default route's interface;
    /// `none`: any interface that is not a namespace's.
    #[arg(long, env = "NSAGENT_UPLINK")]
    uplink: Option<String>,
    /// Address pool that namespace subnets are allocated from.
    #[arg(long, env = "NSAGENT_POOL", default_value = "10.200.0.0/16")]
    pool: String,
    /// Prefix length of each namespace's subnet (30 or 31).
    #[arg(long, env = "NSAGENT_PREFIX_LEN", default_value_t = 30, value_parser = clap::value_parser!(u8).range(30..=31))]
    prefix_len: u8,
    /// Name of the nft table (family inet) the agent owns.
    #[arg(long, env = "NSAGENT_TABLE", default_value = "nsagent")]
    table: String,
    /// Most commands the executor takes into one batch.
    #[arg(long, env = "NSAGENT_MAX_BATCH", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_batch: u32,
    /// Capacity of the command queue.
    #[arg(long, env = "NSAGENT_QUEUE_CAPACITY", default_value_t = 4096)]
    queue_capacity: usize,
    /// Mode of the socket file (octal).
    #[arg(long, env = "NSAGENT_SOCKET_MODE", default_value = "0660")]
    socket_mode: String,
    /// Group owning the socket file (name or number); its members may connect.
    #[arg(long, env = "NSAGENT_SOCKET_GROUP")]
    socket_group: Option<String>,
    /// Uids allowed to talk to the agent besides root (comma-separated).
    #[arg(long, env = "NSAGENT_ALLOW_UID", value_delimiter = ',')]
    allow_uid: Vec<u32>,
    /// Gids (the peer's primary group) allowed to talk to the agent (comma-separated).
    #[arg(long, env = "NSAGENT_ALLOW_GID", value_delimiter = ',')]
    allow_gid: Vec<u32>,
    /// On SIGTERM/SIGINT, remove every namespace the agent made and its table.
    #[arg(long, env = "NSAGENT_CLEANUP_ON_EXIT")]
    cleanup_on_exit: bool,
    /// Address of the HTTP endpoint (/metrics, /healthz, /readyz); `off` disables it.
    #[arg(long, env = "NSAGENT_METRICS_ADDR", default_value = "127.0.0.1:9477")]
    metrics_addr: String,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `nsagent=debug`.
    #[arg(long, env = "NSAGENT_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Log line format.
    #[arg(long, env = "NSAGENT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// Parses the command line; for `run`, the config file fills in what flags and environment
/// left at their defaults.
fn parse() -> Cli {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let matches = Cli::command().get_matches_from(argv.clone());
    if let Some(("run", run_matches)) = matches.subcommand() {
        let cmd = Cli::command();
        if let Some(run_cmd) = cmd.find_subcommand("run") {
            match config::apply_file(argv, run_cmd, run_matches) {
                Ok(argv) => return Cli::parse_from(argv),
                Err(e) => {
                    eprintln!("nsagent: {e:#}");
                    std::process::exit(2);
                }
            }
        }
    }
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn main() {
    let cli = parse();
    match cli.cmd {
        Cmd::Run(args) if args.check_config => match validate(&args) {
            Ok(()) => match toml::to_string(&args) {
                Ok(t) => print!("{t}"),
                Err(e) => {
                    eprintln!("nsagent: {e}");
                    std::process::exit(1);
                }
            },
            Err(e) => {
                eprintln!("nsagent: invalid configuration: {e:#}");
                std::process::exit(1);
            }
        },
        Cmd::Run(args) => {
            init_logging(&args.log_level, args.log_format);
            if let Err(e) = run(args) {
                tracing::error!("{e:#}");
                eprintln!("nsagent: {e:#}");
                std::process::exit(1);
            }
        }
        Cmd::Add(a) => cli::exit(cli::add(a)),
        Cmd::Del(a) => cli::exit(cli::del(a)),
        Cmd::List(a) => cli::exit(cli::list(a)),
        Cmd::Show(a) => cli::exit(cli::show(a)),
        Cmd::Status(a) => cli::exit(cli::status(a)),
        Cmd::Exec(a) => cli::exit(cli::exec(a)),
        Cmd::Completions(a) => cli::exit(cli::completions(a, Cli::command())),
        Cmd::Man => cli::exit(cli::man(Cli::command())),
    }
}

fn init_logging(filter: &str, format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => fmt.json().init(),
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// Checks everything that can be checked without touching the kernel.
fn validate(args: &RunArgs) -> anyhow::Result<()> {
    if !valid_table_name(&args.table) {
        bail!("invalid --table {:?}: 1-64 of [A-Za-z0-9_-]", args.table);
    }
    let pool_net = model::Subnet::parse_pool(&args.pool).context("--pool")?;
    pool::Pool::new(pool_net, args.prefix_len)
        .with_context(|| format!("--pool {} cannot hold a /{}", args.pool, args.prefix_len))?;
    if let Some(u) = args.uplink.as_deref().filter(|u| *u != "none") {
        if model::validate_ifname(u).is_err() {
            bail!("invalid --uplink {u:?}");
        }
    }
    socket_mode(&args.socket_mode)?;
    socket_group(args.socket_group.as_deref())?;
    if args.metrics_addr != "off" {
        args.metrics_addr
            .parse::<std::net::SocketAddr>()
            .with_context(|| format!("--metrics-addr {:?}", args.metrics_addr))?;
    }
    tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .with_context(|| format!("--log-level {:?}", args.log_level))?;
    Ok(())
}

fn socket_mode(s: &str) -> anyhow::Result<u32> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .with_context(|| format!("--socket-mode {s:?}: expected octal like 0660"))
}

fn socket_group(g: Option<&str>) -> anyhow::Result<Option<u32>> {
    let Some(g) = g else { return Ok(None) };
    Ok(Some(match g.parse::<u32>() {
        Ok(gid) => gid,
        Err(_) => nix::unistd::Group::from_name(g)
            .ok()
            .flatten()
            .map(|gr| gr.gid.as_raw())
            .with_context(|| format!("--socket-group {g:?}: no such group"))?,
    }))
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

fn valid_table_name(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// The default route's interface, found with a route dump.
fn default_route_interface() -> anyhow::Result<Option<String>> {
    let mut rtnl = netlink::Rtnl::open()?;
    let Some(oif) = recover::default_route(&mut rtnl)?.and_then(|r| r.oif) else {
        return Ok(None);
    };
    Ok(recover::links(&mut rtnl)?
        .into_iter()
        .find(|l| l.index == oif)
        .map(|l| l.name))
}

/// Creates the socket's directory (root-only writable) and binds, refusing to steal the socket
/// of an agent that is still alive.
fn bind_socket(
    path: &Path,
    mode: u32,
    group: Option<u32>,
) -> anyhow::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("create {}", dir.display()))?;
        // Only root may be able to replace the socket.
        let meta = std::fs::metadata(dir)?;
        if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
            bail!(
                "refusing to serve in {}: it must be owned by root and writable only by root",
                dir.display()
            );
        }
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another agent is already listening on {}", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("remove stale socket {}", path.display()))?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("bind {}", path.display()))?;
    std::os::unix::fs::chown(path, Some(0), group)
        .with_context(|| format!("chown {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    validate(&args)?;
    let pool_net = model::Subnet::parse_pool(&args.pool).context("--pool")?;
    let pool = pool::Pool::new(pool_net, args.prefix_len)
        .with_context(|| format!("--pool {} cannot hold a /{}", args.pool, args.prefix_len))?;
    let uplink = match args.uplink.as_deref() {
        Some("none") => None,
        Some(u) => {
            if model::validate_ifname(u).is_err() {
                bail!("invalid --uplink {u:?}");
            }
            Some(u.to_string())
        }
        None => default_route_interface().context("find the default route's interface")?,
    };
    netns::enable_ipv4_forwarding().context("enable IPv4 forwarding")?;
    let metrics = Arc::new(
        metrics::Metrics::new(env!("CARGO_PKG_VERSION"), env!("NSAGENT_COMMIT"))
            .context("metrics registry")?,
    );
    metrics
        .queue_capacity
        .set(args.queue_capacity.max(1) as i64);
    let ready = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    // The HTTP endpoint comes up first: /healthz answers during start-up, /readyz says 503.
    if args.metrics_addr != "off" {
        let addr: std::net::SocketAddr = args
            .metrics_addr
            .parse()
            .with_context(|| format!("--metrics-addr {:?}", args.metrics_addr))?;
        let l = std::net::TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
        l.set_nonblocking(true)?;
        let (m, r) = (metrics.clone(), ready.clone());
        rt.spawn(async move {
            match tokio::net::TcpListener::from_std(l) {
                Ok(l) => http::serve(l, m, r).await,
                Err(e) => tracing::error!(error = %e, "metrics listener"),
            }
        });
    }
    let info = executor::Info {
        version: env!("CARGO_PKG_VERSION"),
        table: args.table.clone(),
        uplink: uplink.clone(),
        netns_dir: args.netns_dir.clone(),
        pool: pool_net,
        started,
    };
    let (tx, rx) = crossbeam_channel::bounded::<executor::Command>(args.queue_capacity.max(1));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    let limits = executor::Limits {
        max_batch: args.max_batch as usize,
        max_pending: 4096,
        cleanup_on_exit: args.cleanup_on_exit,
    };
    let netns_dir = args.netns_dir.clone();
    let table = args.table.clone();
    let exec_metrics = metrics.clone();
    // The executor thread owns everything that talks to the kernel (and is not Send).
    let executor = std::thread::Builder::new()
        .name("executor".into())
        .spawn(move || {
            let start = || -> anyhow::Result<(driver::KernelDriver, Vec<model::Namespace>)> {
                let dir =
                    netns::NetnsDir::prepare(&netns_dir).context("prepare the netns directory")?;
                let mut drv = driver::KernelDriver::new(dir, table.clone(), exec_metrics.clone())
                    .context("open kernel sockets")?;
                let spec = nft::TableSpec::new(&table, uplink.is_some());
                exec_metrics.nft_rules.set(spec.rules().len() as i64);
                // The kernel is the source of truth: adopt what is whole, remove what is not,
                // and put the adopted namespaces' elements into the same single transaction.
                let recovery = drv.recover().context("recover state from the kernel")?;
                exec_metrics
                    .recovery_total
                    .with_label_values(&["adopted"])
                    .inc_by(recovery.adopted.len() as u64);
                exec_metrics
                    .recovery_total
                    .with_label_values(&["removed"])
                    .inc_by(recovery.removed.len() as u64);
                if !recovery.adopted.is_empty() || !recovery.removed.is_empty() {
                    tracing::info!(
                        adopted = recovery.adopted.len(),
                        removed = recovery.removed.len(),
                        "recovered state from the kernel"
                    );
                }
                let mut elems: Vec<nft::Elem> = uplink
                    .iter()
                    .map(|u| nft::Elem::Uplink(u.clone()))
                    .collect();
                for ns in &recovery.adopted {
                    elems.extend(executor::elems(ns));
                }
                let tx = nft::Transaction::replace_table(&spec, &elems)?;
                drv.nft_socket()
                    .run_all_or_nothing(tx)
                    .context("write the nft table")?;
                Ok((drv, recovery.adopted))
            };
            match start() {
                Ok((drv, adopted)) => {
                    let mut ex = executor::Executor::new(drv, info, limits, pool, exec_metrics);
                    ex.adopt(adopted);
                    let _ = ready_tx.send(Ok(()));
                    ex.run(rx);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        })
        .context("spawn executor thread")?;
    ready_rx
        .recv()
        .context("executor thread died during start-up")??;
    let mode = socket_mode(&args.socket_mode)?;
    let group = socket_group(args.socket_group.as_deref())?;
    let listener = bind_socket(&args.socket, mode, group)?;
    let mut access = server::Access {
        uids: args.allow_uid.clone(),
        gids: args.allow_gid.clone(),
    };
    access.gids.extend(group);
    ready.store(true, Ordering::Release);
    sd_notify("READY=1");
    tracing::info!(
        socket = %args.socket.display(),
        netns_dir = %args.netns_dir.display(),
        uplink = args.uplink.as_deref().unwrap_or("auto"),
        table = %args.table,
        pool = %args.pool,
        "nsagent ready"
    );

    let front = server::Front {
        metrics: metrics.clone(),
        queue: tx,
        limits: protocol::Limits {
            min_prefix: args.prefix_len,
        },
        queue_wait: Duration::from_secs(2),
        max_in_flight: 4096,
        idle: Duration::from_secs(300),
    };
    rt.block_on(async {
        let listener = tokio::net::UnixListener::from_std(listener)?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let serving = tokio::spawn(server::serve(
            listener,
            front,
            access,
            stop_rx,
            Duration::from_secs(30),
        ));
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        }
        // Stop accepting; answer what was sent; then the queue closes and the executor ends.
        sd_notify("STOPPING=1");
        let _ = stop_tx.send(true);
        let _ = serving.await;
        anyhow::Ok(())
    })?;
    let _ = std::fs::remove_file(&args.socket);
    // Namespaces stay (they are the host's workload) unless --cleanup-on-exit; either way the
    // executor finishes what is queued first.
    if executor.join().is_err() {
        bail!("executor thread panicked");
    }
    tracing::info!("stopped");
    Ok(())
}
