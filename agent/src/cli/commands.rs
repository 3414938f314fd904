//! The client subcommands: `add`, `del`, `list`, `show`, `status` and `exec` talk to a running
//! agent over its socket only (never to the kernel; `exec` joins a namespace with setns).

use super::client::Client;
use super::error::{AgentError, CliError};
use super::render;
use super::{out, print_json, warn};
use crate::cmd::{Check, Create, Delete, Get, GetStatus, List, Op, Update, Watch};
use crate::model::{labels, Bandwidth, Dns, Labels, PortForward, Proto};
use anyhow::Context;
use clap::builder::NonEmptyStringValueParser;
use clap::{ArgGroup, Args};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Most per-request failures a bulk operation prints before summarising the rest.
const MAX_REPORTED_FAILURES: usize = 10;

/// Where the agent listens.
#[derive(Args, Debug)]
pub struct Target {
    /// Unix socket of the agent.
    #[arg(
        long,
        env = "NSAGENT_SOCKET",
        default_value = crate::config::DEFAULT_SOCKET,
        value_name = "PATH"
    )]
    pub socket: PathBuf,
}

/// Options of every client subcommand that prints a result.
#[derive(Args, Debug)]
pub struct ClientOpts {
    #[command(flatten)]
    pub target: Target,
    /// Print the protocol's result object(s) as one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("what").required(true).args(["name", "count"])))]
pub struct AddArgs {
    /// Name of the namespace.
    #[arg(conflicts_with_all = ["count", "prefix"])]
    pub name: Option<String>,
    /// Create N namespaces named PREFIX0 .. PREFIX<N-1>, pipelined on one connection.
    #[arg(long, value_name = "N", requires = "prefix",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub count: Option<u32>,
    /// Name prefix of the namespaces --count creates.
    #[arg(long, requires = "count")]
    pub prefix: Option<String>,
    /// Subnet a.b.c.d/len (default: allocated from the agent's pool).
    #[arg(long, value_name = "CIDR", conflicts_with = "count")]
    pub subnet: Option<String>,
    /// Do not masquerade the namespace's traffic.
    #[arg(long)]
    pub no_nat: bool,
    /// IPv6 subnet addr/len (default: allocated from the agent's IPv6 pool, if it has one).
    #[arg(long, value_name = "CIDR", conflicts_with_all = ["count", "no_ipv6"])]
    pub subnet6: Option<String>,
    /// IPv4 only, even when the agent has an IPv6 pool.
    #[arg(long)]
    pub no_ipv6: bool,
    /// MTU of the veth pair (68-65535).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(68..=65535))]
    pub mtu: Option<u32>,
    #[command(flatten)]
    pub conf: ConfArgs,
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(Args, Debug)]
pub struct SetArgs {
    /// Name of the namespace.
    pub name: String,
    /// Masquerade the namespace's traffic.
    #[arg(long, conflicts_with = "no_nat")]
    pub nat: bool,
    /// Do not masquerade the namespace's traffic.
    #[arg(long)]
    pub no_nat: bool,
    /// Remove every published port.
    #[arg(long, conflicts_with = "ports")]
    pub no_ports: bool,
    /// Masquerade outbound traffic again instead of SNATing it to an egress address.
    #[arg(long, conflicts_with_all = ["egress_addr", "egress_addr6"])]
    pub no_egress: bool,
    /// Remove the rate limits.
    #[arg(long, conflicts_with = "rate")]
    pub no_rate: bool,
    /// Remove the resolv.conf.
    #[arg(long, conflicts_with = "nameservers")]
    pub no_dns: bool,
    /// Remove every label.
    #[arg(long, conflicts_with = "labels")]
    pub no_labels: bool,
    /// New values; each replaces the old one whole (several -p: the new list of ports).
    #[command(flatten)]
    pub conf: ConfArgs,
    #[command(flatten)]
    pub opts: ClientOpts,
}

/// A namespace's configuration beyond its addresses.
#[derive(Args, Debug)]
pub struct ConfArgs {
    /// Nameserver for the namespace's resolv.conf (up to 3; repeat the flag).
    #[arg(long = "dns", value_name = "ADDR")]
    pub nameservers: Vec<std::net::IpAddr>,
    /// Search domain for the namespace's resolv.conf (repeat the flag).
    #[arg(long, value_name = "DOMAIN", requires = "nameservers")]
    pub dns_search: Vec<String>,
    /// resolv.conf option, e.g. ndots:2 (repeat the flag).
    #[arg(long, value_name = "OPTION", requires = "nameservers")]
    pub dns_option: Vec<String>,
    /// Rate limit, tc-style (10mbit, 500kbit, 1gbit, or bits/s): `RATE` both ways, `in:RATE`
    /// into the namespace, `out:RATE` out of it (repeat the flag).
    #[arg(long, value_name = "[in:|out:]RATE", value_parser = parse_rate)]
    pub rate: Vec<(Direction, u64)>,
    /// Publish a port: `[tcp/|udp/][HOST_ADDR:]HOST_PORT:PORT` (repeat the flag), e.g. 8080:80,
    /// udp/5353:53, 198.18.0.1:8443:443.
    #[arg(short = 'p', long = "port", value_name = "SPEC", value_parser = parse_port)]
    pub ports: Vec<PortForward>,
    /// Address (one of the host's) the namespace's outbound traffic leaves from.
    #[arg(long = "egress", value_name = "ADDR")]
    pub egress_addr: Option<std::net::Ipv4Addr>,
    /// The same for its IPv6 traffic (a dual-stack namespace).
    #[arg(long = "egress6", value_name = "ADDR")]
    pub egress_addr6: Option<std::net::Ipv6Addr>,
    /// A label, KEY=VALUE (repeat the flag; `set` replaces every label with those given).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = labels::parse_pair)]
    pub labels: Vec<(String, String)>,
}

/// Labels given as `-l KEY=VALUE` flags, if any.
fn labels_of(pairs: &[(String, String)]) -> Option<Labels> {
    (!pairs.is_empty()).then(|| pairs.iter().cloned().collect())
}

fn parse_port(s: &str) -> Result<PortForward, String> {
    let (proto, rest) = match s.split_once('/') {
        Some(("tcp", r)) => (Proto::Tcp, r),
        Some(("udp", r)) => (Proto::Udp, r),
        Some((p, _)) => return Err(format!("{p:?}: expected tcp or udp")),
        None => (Proto::Tcp, s),
    };
    // An IPv6 host address is bracketed: [2001:db8::1]:8080:80.
    let (host6, rest) = match rest.strip_prefix('[').and_then(|r| r.split_once("]:")) {
        Some((a, r)) => {
            let a: std::net::Ipv6Addr = a
                .parse()
                .map_err(|_| format!("{a:?}: not an IPv6 address"))?;
            (Some(std::net::IpAddr::V6(a)), r)
        }
        None => (None, rest),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (host_addr, host_port, port) = match (host6, &parts[..]) {
        (h6, [h, p]) => (h6, *h, *p),
        (None, [a, h, p]) => {
            let a: std::net::Ipv4Addr = a
                .parse()
                .map_err(|_| format!("{a:?}: not an IPv4 address"))?;
            (Some(a.into()), *h, *p)
        }
        _ => {
            return Err(format!(
                "{s:?}: expected [tcp/|udp/][HOST_ADDR:]HOST_PORT:PORT"
            ))
        }
    };
    let port_of = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{p:?}: not a port (1-65535)"))
    };
    Ok(PortForward {
        proto,
        host_port: port_of(host_port)?,
        port: port_of(port)?,
        host_addr,
    })
}

/// Which way a rate limit applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Both,
    In,
    Out,
}

fn parse_rate(s: &str) -> Result<(Direction, u64), String> {
    let (dir, rate) = match s.split_once(':') {
        Some(("in", r)) => (Direction::In, r),
        Some(("out", r)) => (Direction::Out, r),
        Some((d, _)) => return Err(format!("{d:?}: expected in or out")),
        None => (Direction::Both, s),
    };
    let lower = rate.to_ascii_lowercase();
    let (digits, unit) = lower.split_at(
        lower
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(lower.len()),
    );
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{rate:?}: expected a number and a unit like 10mbit"))?;
    let scale = match unit {
        "" | "bit" | "bps" => 1,
        "kbit" => 1_000,
        "mbit" => 1_000_000,
        "gbit" => 1_000_000_000,
        _ => return Err(format!("{unit:?}: expected bit, kbit, mbit or gbit")),
    };
    n.checked_mul(scale)
        .map(|bps| (dir, bps))
        .ok_or_else(|| format!("{rate:?} is too large"))
}

impl ConfArgs {
    fn dns(&self) -> Option<Dns> {
        (!self.nameservers.is_empty()).then(|| Dns {
            nameservers: self.nameservers.clone(),
            search: self.dns_search.clone(),
            options: self.dns_option.clone(),
        })
    }

    fn bandwidth(&self) -> Option<Bandwidth> {
        let mut b = Bandwidth {
            ingress_bps: None,
            egress_bps: None,
        };
        for (dir, bps) in &self.rate {
            if *dir != Direction::Out {
                b.ingress_bps = Some(*bps);
            }
            if *dir != Direction::In {
                b.egress_bps = Some(*bps);
            }
        }
        (!self.rate.is_empty()).then_some(b)
    }
}

#[derive(Args, Debug)]
pub struct DelArgs {
    /// Names of the namespaces to delete.
    #[arg(required_unless_present_any = ["prefix", "selector"], conflicts_with_all = ["prefix", "selector"])]
    pub names: Vec<String>,
    /// Delete every namespace whose name starts with PREFIX (listed, then deleted pipelined).
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub prefix: Option<String>,
    /// Delete every namespace that carries the label KEY=VALUE (repeat: every one of them;
    /// with --prefix: both).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = labels::parse_pair)]
    pub selector: Vec<(String, String)>,
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only namespaces that carry the label KEY=VALUE (repeat: every one of them).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = labels::parse_pair)]
    pub selector: Vec<(String, String)>,
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Put back what is missing (and say what was).
    #[arg(long)]
    pub repair: bool,
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Only namespaces that carry the label KEY=VALUE (repeat: every one of them).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = labels::parse_pair)]
    pub selector: Vec<(String, String)>,
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Name of the namespace.
    pub name: String,
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Name of the namespace.
    pub name: String,
    /// The command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: clap_complete::Shell,
}

// ---------------------------------------------------------------------------------------------
// Bulk operations.

fn progress_bar(len: usize, verb: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style =
        ProgressStyle::with_template("{msg} [{wide_bar:.cyan/blue}] {pos}/{len} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    bar.set_style(style);
    bar.set_message(verb.to_string());
    bar
}

/// Runs one request per name, pipelined, and reports: a summary line on stderr, the failures
/// (`nsagent: <code>: <message>`, at most [`MAX_REPORTED_FAILURES`]), the successful results.
/// Fails with [`Reported`] when any request failed.
fn bulk<O: Op + Send + 'static>(
    client: &mut Client,
    names: &[String],
    reqs: Vec<O>,
    verb: &str,
    json_out: bool,
) -> Result<(), CliError>
where
    O::Output: Serialize,
{
    let started = Instant::now();
    let bar = progress_bar(reqs.len(), verb);
    let outcomes = client.pipeline(reqs, &bar);
    bar.finish_and_clear();
    let outcomes = outcomes?;
    let mut done = vec![];
    let mut failed: Vec<(&String, AgentError)> = vec![];
    for (name, o) in names.iter().zip(outcomes) {
        match o {
            Ok(v) => done.push(v),
            Err(e) => failed.push((name, e)),
        }
    }
    if json_out {
        print_json(&done)?;
    }
    for (name, e) in failed.iter().take(MAX_REPORTED_FAILURES) {
        if e.message.contains(name.as_str()) {
            warn(&e.to_string());
        } else {
            warn(&format!("{}: {name}: {}", e.code, e.message));
        }
    }
    if failed.len() > MAX_REPORTED_FAILURES {
        warn(&format!(
            "... and {} more failures",
            failed.len() - MAX_REPORTED_FAILURES
        ));
    }
    let secs = started.elapsed().as_secs_f64();
    let total = names.len();
    let summary = if failed.is_empty() {
        format!("{verb} {total} namespace{} in {secs:.2}s", plural(total))
    } else {
        format!(
            "{verb} {} of {total} namespace{} in {secs:.2}s ({} failed)",
            done.len(),
            plural(total),
            failed.len()
        )
    };
    let _ = writeln!(io::stderr().lock(), "{summary}");
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Reported)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

// ---------------------------------------------------------------------------------------------
// Subcommands.

pub fn add(a: AddArgs) -> Result<(), CliError> {
    let request = |name: &str| Create {
        name: name.to_string(),
        subnet: a.subnet.clone(),
        subnet6: a.subnet6.clone(),
        ipv6: a.no_ipv6.then_some(false),
        nat: a.no_nat.then_some(false),
        mtu: a.mtu,
        dns: a.conf.dns(),
        bandwidth: a.conf.bandwidth(),
        ports: (!a.conf.ports.is_empty()).then(|| a.conf.ports.clone()),
        egress_addr: a.conf.egress_addr,
        egress_addr6: a.conf.egress_addr6,
        labels: labels_of(&a.conf.labels),
        ..Create::default()
    };
    let mut client = Client::connect(&a.opts.target.socket)?;
    match (&a.name, a.count) {
        (Some(name), _) => {
            let ns = client.call(&request(name))?;
            if a.opts.json {
                print_json(&ns)
            } else {
                out(&render::namespace_details(&ns))
            }
        }
        (None, Some(count)) => {
            let prefix = a.prefix.as_deref().unwrap_or("");
            let names: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
            let reqs = names.iter().map(|n| request(n)).collect();
            bulk(&mut client, &names, reqs, "created", a.opts.json)
        }
        // clap's group makes NAME or --count required.
        (None, None) => Err(CliError::Local(anyhow::anyhow!("give a NAME or --count"))),
    }
}

pub fn set(a: SetArgs) -> Result<(), CliError> {
    /// A field to replace, to remove (`remove`) or to leave.
    fn patch<T>(value: Option<T>, remove: bool) -> Option<Option<T>> {
        match (value, remove) {
            (Some(v), _) => Some(Some(v)),
            (None, true) => Some(None),
            (None, false) => None,
        }
    }
    let c = &a.conf;
    let update = Update {
        name: a.name.clone(),
        nat: (a.nat || a.no_nat).then_some(a.nat),
        ports: patch((!c.ports.is_empty()).then(|| c.ports.clone()), a.no_ports),
        egress_addr: patch(c.egress_addr, a.no_egress),
        egress_addr6: patch(c.egress_addr6, a.no_egress),
        bandwidth: patch(c.bandwidth(), a.no_rate),
        dns: patch(c.dns(), a.no_dns),
        labels: patch(labels_of(&c.labels), a.no_labels),
    };
    let ns = Client::connect(&a.opts.target.socket)?.call(&update)?;
    if a.opts.json {
        print_json(&ns)
    } else {
        out(&render::namespace_details(&ns))
    }
}

pub fn del(a: DelArgs) -> Result<(), CliError> {
    let mut client = Client::connect(&a.opts.target.socket)?;
    let by_list = a.prefix.is_some() || !a.selector.is_empty();
    let names: Vec<String> = if by_list {
        let prefix = a.prefix.as_deref().unwrap_or("");
        client
            .call(&List {
                selector: labels_of(&a.selector),
            })?
            .namespaces
            .into_iter()
            .map(|ns| ns.name)
            .filter(|n| n.starts_with(prefix))
            .collect()
    } else {
        a.names.clone()
    };
    if !by_list && names.len() == 1 {
        let r = client.call(&Delete {
            name: names[0].clone(),
        })?;
        return if a.opts.json {
            print_json(&r)
        } else {
            out(&format!("deleted {}\n", r.name))
        };
    }
    let reqs = names.iter().map(|n| Delete { name: n.clone() }).collect();
    bulk(&mut client, &names, reqs, "deleted", a.opts.json)
}

/// Exit 0 when the kernel matches (or, with --repair, was made to match), 1 otherwise.
pub fn check(a: CheckArgs) -> Result<(), CliError> {
    let report = Client::connect(&a.opts.target.socket)?.call(&Check {
        repair: a.repair,
        name: None,
    })?;
    let unrepaired = report.drift.iter().any(|d| !d.repaired);
    if a.opts.json {
        print_json(&report)?;
    } else {
        out(&render::check_report(&report))?;
    }
    if unrepaired {
        Err(CliError::Reported)
    } else {
        Ok(())
    }
}

pub fn watch(a: WatchArgs) -> Result<(), CliError> {
    let mut client = Client::connect(&a.opts.target.socket)?;
    client.call(&Watch {
        selector: labels_of(&a.selector),
    })?;
    let stdout = std::io::stdout();
    while let Some(line) = client.next_event()? {
        let text = if a.opts.json {
            line
        } else {
            render::event_row(&line)
        };
        let mut w = stdout.lock();
        if w.write_all(text.as_bytes())
            .and_then(|()| w.flush())
            .is_err()
        {
            // The reader went away (`| head`): done.
            return Ok(());
        }
    }
    Err(CliError::Protocol(
        "the agent closed the watch (it stopped, or this watcher fell behind)".into(),
    ))
}

pub fn list(a: ListArgs) -> Result<(), CliError> {
    let list = Client::connect(&a.opts.target.socket)?.call(&List {
        selector: labels_of(&a.selector),
    })?;
    if a.opts.json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list.namespaces.iter().map(render::list_row).collect();
    out(&render::table(&render::LIST_HEADER, &rows))
}

pub fn show(a: ShowArgs) -> Result<(), CliError> {
    let ns = Client::connect(&a.opts.target.socket)?.call(&Get { name: a.name })?;
    if a.opts.json {
        print_json(&ns)
    } else {
        out(&render::namespace_details(&ns))
    }
}

pub fn status(a: StatusArgs) -> Result<(), CliError> {
    let st = Client::connect(&a.opts.target.socket)?.call(&GetStatus {})?;
    if a.opts.json {
        print_json(&st)
    } else {
        out(&render::status_details(&st))
    }
}

pub fn exec(a: ExecArgs) -> Result<(), CliError> {
    use std::os::unix::process::CommandExt;
    let ns = Client::connect(&a.target.socket)?.call(&Get { name: a.name })?;
    let path = &ns.netns_path;
    let file = std::fs::File::open(path).with_context(|| format!("open {path}"))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("setns {path}"))?;
    drop(file);
    if let Some(etc) = ns
        .resolv_conf
        .as_deref()
        .and_then(|f| Path::new(f).parent())
    {
        bind_etc(etc)?;
    }
    let (program, args) = a.command.split_first().context("no command given")?;
    // Only returns on failure; on success the command's exit code is ours.
    let error = std::process::Command::new(program).args(args).exec();
    Err(CliError::Exec {
        program: program.to_string_lossy().into_owned(),
        error,
    })
}

/// What `ip netns exec` does for `/etc/netns/NAME`: in a mount namespace of this process alone
/// (nothing propagates back), every file of `etc` is bind-mounted over its namesake in `/etc`.
/// The process is single-threaded here, as unshare(CLONE_NEWNS) requires.
fn bind_etc(etc: &Path) -> Result<(), CliError> {
    use nix::mount::{mount, MsFlags};
    let entries = match std::fs::read_dir(etc) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("read {}", etc.display()))
                .into())
        }
    };
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).context("unshare(CLONE_NEWNS)")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .context("make / a slave mount")?;
    for entry in entries.flatten() {
        let target = Path::new("/etc").join(entry.file_name());
        let bound = mount(
            Some(&entry.path()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        );
        if let Err(e) = bound {
            warn(&format!(
                "bind {} onto {}: {e}",
                entry.path().display(),
                target.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_like_tc() {
        assert_eq!(parse_rate("10mbit"), Ok((Direction::Both, 10_000_000)));
        assert_eq!(parse_rate("in:500kbit"), Ok((Direction::In, 500_000)));
        assert_eq!(parse_rate("out:1Gbit"), Ok((Direction::Out, 1_000_000_000)));
        assert_eq!(parse_rate("8000"), Ok((Direction::Both, 8_000)));
        for bad in ["", "mbit", "10mb", "up:1mbit", "99999999999999999999gbit"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports_read_like_docker() {
        let p = parse_port("8080:80").unwrap();
        assert_eq!(
            (p.proto, p.host_port, p.port, p.host_addr),
            (Proto::Tcp, 8080, 80, None)
        );
        let p = parse_port("udp/5353:53").unwrap();
        assert_eq!((p.proto, p.host_port, p.port), (Proto::Udp, 5353, 53));
        let p = parse_port("tcp/198.18.0.1:8443:443").unwrap();
        assert_eq!(p.host_addr, Some("198.18.0.1".parse().unwrap()));
        let p = parse_port("udp/[2001:2::1]:53:5353").unwrap();
        assert_eq!(p.host_addr, Some("2001:2::1".parse().unwrap()));
        assert_eq!((p.host_port, p.port), (53, 5353));
        for bad in [
            "80", "sctp/1:2", "0:80", "1:70000", "x:1:2", "1:2:3:4", "[x]:1:2",
        ] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }
}
