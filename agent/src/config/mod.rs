//! `nsagent run`'s settings: the flags (each with an `NSAGENT_*` twin and a config-file key),
//! checked once into a [`Config`] that start-up trusts.

mod file;

pub use file::apply_file;

use crate::model::{self, Subnet, Subnet6};
use crate::pool::{Pool, Pool6};
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The configuration file read when `--config` is not given (a missing one is fine).
pub const DEFAULT_PATH: &str = "/etc/nsagent/nsagent.toml";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    Text,
    /// One JSON object per line (journald, Loki, ELK).
    Json,
}

/// The flags of `nsagent run`, as given.
#[derive(Parser, Debug, Clone, serde::Serialize)]
pub struct RunArgs {
    /// Configuration file (TOML; keys are these flags' names with `_`). Precedence:
    /// flag > environment > file > default. A missing default file is fine.
    #[arg(long, env = "NSAGENT_CONFIG", default_value = DEFAULT_PATH)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Validate the configuration, print the effective one, and exit.
    #[arg(long)]
    #[serde(skip)]
    pub check_config: bool,
    /// Unix socket to serve the protocol on.
    #[arg(
        long,
        env = "NSAGENT_SOCKET",
        default_value = DEFAULT_SOCKET
    )]
    pub socket: PathBuf,
    /// Directory of named network namespaces (as `ip netns` uses).
    #[arg(long, env = "NSAGENT_NETNS_DIR", default_value = "/run/netns")]
    pub netns_dir: PathBuf,
    /// Directory of per-namespace /etc overrides (as `ip netns exec` uses): a namespace's `dns`
    /// goes to NAME/resolv.conf in it.
    #[arg(long, env = "NSAGENT_ETC_NETNS_DIR", default_value = "/etc/netns")]
    pub etc_netns_dir: PathBuf,
    /// Interface namespace traffic leaves through. Default: the default route's interface;
    /// `none`: any interface that is not a namespace's.
    #[arg(long, env = "NSAGENT_UPLINK")]
    pub uplink: Option<String>,
    /// Address pool that namespace subnets are allocated from.
    #[arg(long, env = "NSAGENT_POOL", default_value = "10.200.0.0/16")]
    pub pool: String,
    /// IPv6 pool namespace subnets are allocated from (every namespace is dual stack unless it
    /// asks not to be); `none`: IPv4 only.
    #[arg(long, env = "NSAGENT_POOL6", default_value = "none")]
    pub pool6: String,
    /// Prefix length of each namespace's IPv6 subnet (64-127; 127 per RFC 6164).
    #[arg(long, env = "NSAGENT_PREFIX_LEN6", default_value_t = 64, value_parser = clap::value_parser!(u8).range(64..=127))]
    pub prefix_len6: u8,
    /// Prefix length of each namespace's subnet (30 or 31).
    #[arg(long, env = "NSAGENT_PREFIX_LEN", default_value_t = 30, value_parser = clap::value_parser!(u8).range(30..=31))]
    pub prefix_len: u8,
    /// Name of the nft table (family inet) the agent owns.
    #[arg(long, env = "NSAGENT_TABLE", default_value = "nsagent")]
    pub table: String,
    /// Most commands the executor takes into one batch.
    #[arg(long, env = "NSAGENT_MAX_BATCH", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_batch: u32,
    /// Capacity of the command queue.
    #[arg(long, env = "NSAGENT_QUEUE_CAPACITY", default_value_t = 4096)]
    pub queue_capacity: usize,
    /// Mode of the socket file (octal).
    #[arg(long, env = "NSAGENT_SOCKET_MODE", default_value = "0660")]
    pub socket_mode: String,
    /// Group owning the socket file (name or number); its members may connect.
    #[arg(long, env = "NSAGENT_SOCKET_GROUP")]
    pub socket_group: Option<String>,
    /// Uids allowed to talk to the agent besides root (comma-separated).
    #[arg(long, env = "NSAGENT_ALLOW_UID", value_delimiter = ',')]
    pub allow_uid: Vec<u32>,
    /// Gids (the peer's primary group) allowed to talk to the agent (comma-separated).
    #[arg(long, env = "NSAGENT_ALLOW_GID", value_delimiter = ',')]
    pub allow_gid: Vec<u32>,
    /// On SIGTERM/SIGINT, remove every namespace the agent made and its table.
    #[arg(long, env = "NSAGENT_CLEANUP_ON_EXIT")]
    pub cleanup_on_exit: bool,
    /// Namespaces to keep built ahead, so that a create they can serve is answered without
    /// waiting for the kernel (0: none).
    #[arg(long, env = "NSAGENT_WARM", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=MAX_WARM))]
    pub warm: u32,
    /// Seconds between the agent's own checks of every namespace against the kernel, which
    /// repair what drifted (0: only `nsagent check`).
    #[arg(long, env = "NSAGENT_CHECK_INTERVAL", value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u32).range(0..=86_400))]
    pub check_interval: u32,
    /// Address of the HTTP endpoint (/metrics, /healthz, /readyz); `off` disables it.
    #[arg(long, env = "NSAGENT_METRICS_ADDR", default_value = "127.0.0.1:9477")]
    pub metrics_addr: String,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `nsagent=debug`.
    #[arg(long, env = "NSAGENT_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log line format.
    #[arg(long, env = "NSAGENT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Where the agent listens unless told otherwise (`--socket`).
pub const DEFAULT_SOCKET: &str = "/run/nsagent/nsagent.sock";

/// Most namespaces `--warm` may keep built: each holds ~0.3 MB of kernel memory
/// (docs/kernel.md#past-5000-alive) and a subnet of the pool.
pub const MAX_WARM: i64 = 10_000;

/// Where namespace traffic leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uplink {
    /// The default route's interface, looked up at start.
    DefaultRoute,
    /// Any interface that is not a namespace's.
    Any,
    Named(String),
}

/// The settings, checked: everything that can be checked without touching the kernel was.
#[derive(Debug)]
pub struct Config {
    pub socket: PathBuf,
    pub netns_dir: PathBuf,
    pub etc_netns_dir: PathBuf,
    pub uplink: Uplink,
    /// The address pool, with the size of each namespace's subnet.
    pub pool: Pool,
    /// The IPv6 pool, if any.
    pub pool6: Option<Pool6>,
    /// The size of an explicit IPv6 subnet at most (`--prefix-len6`).
    pub prefix_len6: u8,
    pub table: String,
    pub max_batch: usize,
    pub queue_capacity: usize,
    pub socket_mode: u32,
    pub socket_group: Option<u32>,
    pub allow_uid: Vec<u32>,
    pub allow_gid: Vec<u32>,
    pub cleanup_on_exit: bool,
    /// Namespaces kept built for creates.
    pub warm: usize,
    /// `None`: no periodic check.
    pub check_interval: Option<std::time::Duration>,
    /// `None`: no HTTP endpoint.
    pub metrics_addr: Option<SocketAddr>,
    pub log_level: String,
    pub log_format: LogFormat,
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("invalid --{flag} {value:?}: {why}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub value: String,
    pub why: String,
}

fn invalid(flag: &'static str, value: &str, why: impl ToString) -> ConfigError {
    ConfigError {
        flag,
        value: value.to_string(),
        why: why.to_string(),
    }
}

impl RunArgs {
    /// Checks every setting; the one place they are parsed.
    pub fn validate(&self) -> Result<Config, ConfigError> {
        if !valid_table_name(&self.table) {
            return Err(invalid("table", &self.table, "1-64 of [A-Za-z0-9_-]"));
        }
        let base = Subnet::parse_pool(&self.pool).map_err(|e| invalid("pool", &self.pool, e))?;
        let pool = Pool::new(base, self.prefix_len).ok_or_else(|| {
            let why = format!("cannot hold a /{}", self.prefix_len);
            invalid("pool", &self.pool, why)
        })?;
        let pool6 = match self.pool6.as_str() {
            "none" => None,
            p => {
                let base = Subnet6::parse_pool(p).map_err(|e| invalid("pool6", p, e))?;
                let why = format!(
                    "cannot hold /{} subnets (or would hold more than 2^24 of them)",
                    self.prefix_len6
                );
                Some(Pool6::new(base, self.prefix_len6).ok_or_else(|| invalid("pool6", p, why))?)
            }
        };
        let uplink = match self.uplink.as_deref() {
            None => Uplink::DefaultRoute,
            Some("none") => Uplink::Any,
            Some(u) => {
                model::validate_ifname(u).map_err(|e| invalid("uplink", u, e))?;
                Uplink::Named(u.to_string())
            }
        };
        let socket_mode = u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| invalid("socket-mode", &self.socket_mode, "expected octal like 0660"))?;
        let socket_group = self
            .socket_group
            .as_deref()
            .map(|g| group_id(g).ok_or_else(|| invalid("socket-group", g, "no such group")))
            .transpose()?;
        let metrics_addr = match self.metrics_addr.as_str() {
            "off" => None,
            a => Some(a.parse().map_err(|e| invalid("metrics-addr", a, e))?),
        };
        tracing_subscriber::EnvFilter::try_new(&self.log_level)
            .map_err(|e| invalid("log-level", &self.log_level, e))?;
        Ok(Config {
            socket: self.socket.clone(),
            netns_dir: self.netns_dir.clone(),
            etc_netns_dir: self.etc_netns_dir.clone(),
            uplink,
            pool,
            pool6,
            prefix_len6: self.prefix_len6,
            table: self.table.clone(),
            max_batch: self.max_batch as usize,
            queue_capacity: self.queue_capacity.max(1),
            socket_mode,
            socket_group,
            allow_uid: self.allow_uid.clone(),
            allow_gid: self.allow_gid.clone(),
            cleanup_on_exit: self.cleanup_on_exit,
            warm: self.warm as usize,
            check_interval: (self.check_interval > 0)
                .then(|| std::time::Duration::from_secs(self.check_interval.into())),
            metrics_addr,
            log_level: self.log_level.clone(),
            log_format: self.log_format,
        })
    }
}

fn group_id(g: &str) -> Option<u32> {
    match g.parse::<u32>() {
        Ok(gid) => Some(gid),
        Err(_) => nix::unistd::Group::from_name(g)
            .ok()
            .flatten()
            .map(|gr| gr.gid.as_raw()),
    }
}

fn valid_table_name(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["run"];
        argv.extend(extra);
        RunArgs::try_parse_from(argv).unwrap()
    }

    #[test]
    fn defaults_are_valid() {
        let c = args(&[]).validate().unwrap();
        assert_eq!(c.uplink, Uplink::DefaultRoute);
        assert_eq!(c.socket_mode, 0o660);
        assert_eq!(c.pool.size(), 1 << 14);
        assert!(c.metrics_addr.is_some());
    }

    #[test]
    fn each_bad_setting_names_its_flag() {
        for (argv, flag) in [
            (&["--table", "a b"][..], "--table"),
            (&["--pool", "10.0.0.1/16"], "--pool"),
            (&["--pool", "10.0.0.0/31"], "--pool"),
            (&["--uplink", "a/b"], "--uplink"),
            (&["--socket-mode", "999"], "--socket-mode"),
            (&["--socket-group", "no-such-group-here"], "--socket-group"),
            (&["--metrics-addr", "localhost"], "--metrics-addr"),
            (&["--log-level", "a=b=c"], "--log-level"),
            (&["--pool6", "fd00::/16"], "--pool6"),
            (&["--pool6", "fe80::/64"], "--pool6"),
        ] {
            let e = args(argv).validate().unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid {flag} ")), "{e}");
        }
        let c = args(&["--uplink", "none", "--metrics-addr", "off"])
            .validate()
            .unwrap();
        assert_eq!(c.uplink, Uplink::Any);
        assert_eq!(c.metrics_addr, None);
    }
}
