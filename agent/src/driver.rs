//! "Make the kernel look like that": the side of the executor that touches the kernel, behind a
//! trait so the executor's planning, rollback and failure isolation can be tested with a fake.

use crate::model::Namespace;
use crate::netlink::{LinkEvent, LinkEvents, NetlinkError, Request, Rtnl};
use crate::netns::{NetnsDir, NetnsError, NewNetns};
use crate::protocol::{ApiError, ErrorCode};
use metrics::Metrics;
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoKind, InfoVeth, LinkAttribute,
    LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nft::{ElemOp, GroupError, NftSocket};
use rtnetlink::{
    AddressMessageBuilder, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

/// A create that failed. `link_created`: a host veth was made and dies asynchronously with the
/// namespace, so its name, index and subnet stay reserved until the kernel reports it gone.
#[derive(Debug, Clone)]
pub struct CreateFailure {
    pub error: ApiError,
    pub link_created: bool,
}

/// What became of the host links the executor waits for.
pub enum Gone {
    Links(Vec<u32>),
    /// Notifications were lost: the caller must ask [`Driver::link_exists`] for each.
    Resync,
}

/// What start-up recovery found.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Whole namespaces, adopted as they are.
    pub adopted: Vec<Namespace>,
    /// Names of half-built ones that were removed.
    pub removed: Vec<String>,
}

pub trait Driver {
    /// The netlink phase for a batch of creates. A failed item has been undone by the driver
    /// (its netns file removed) before this returns.
    fn create(&mut self, items: &[Namespace]) -> Vec<Result<(), CreateFailure>>;
    /// Removes a namespace's file; the kernel destroys the namespace and its veth pair.
    fn remove(&mut self, ns: &Namespace);
    /// One nft transaction with one group of element changes per command.
    fn nft(&mut self, groups: &[Vec<ElemOp>]) -> Vec<Result<(), GroupError>>;
    /// Host links that disappeared since the last call.
    fn gone_links(&mut self) -> Gone;
    fn link_exists(&mut self, ifindex: u32) -> bool;
    /// Deletes a host link outright (slow: the kernel waits for RCU). Only for links whose
    /// namespace cannot take them down, e.g. one a process still holds open.
    fn delete_link(&mut self, ifindex: u32);
    /// Names whose netns file disappeared (someone ran `ip netns del`) since the last call.
    fn gone_netns(&mut self) -> Vec<String>;
    /// Removes the agent's table (shutdown with --cleanup-on-exit).
    fn delete_table(&mut self);
}

/// The peer's ifindex inside its fresh namespace, where loopback is always 1.
const PEER_IFINDEX: u32 = 2;
const LO_IFINDEX: u32 = 1;

pub struct KernelDriver {
    netns: NetnsDir,
    host: Rtnl,
    events: LinkEvents,
    nft: NftSocket,
    table: String,
    metrics: Arc<Metrics>,
    /// Leave IPv6 address generation on (kernel default). Only the benchmark's naive floor
    /// sets this, to measure what the cheaper configuration saves.
    pub keep_ipv6_autoconf: bool,
}

fn kernel_error(step: &str, e: &NetlinkError) -> ApiError {
    let code = match e {
        NetlinkError::Errno { errno, .. } if *errno == libc::EEXIST => ErrorCode::Exists,
        _ => ErrorCode::Kernel,
    };
    ApiError::new(code, format!("{step}: {e}"))
}

fn netns_error(e: &NetnsError) -> ApiError {
    match e {
        NetnsError::Exists(p) => {
            ApiError::new(ErrorCode::Exists, format!("{} already exists", p.display()))
        }
        other => ApiError::new(ErrorCode::Kernel, other.to_string()),
    }
}

/// No IPv6 link-local address and no DAD on our veth ends: the agent configures IPv4 only, and
/// address generation on thousands of veths is an O(N) cost in the kernel (NOTES.md).
fn no_ipv6_autoconf() -> LinkAttribute {
    LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
        In6AddrGenMode::None,
    )])])
}

/// A permanent neighbour entry. Why: every namespace's traffic otherwise needs an ARP entry on
/// each side, and the kernel's neighbour table is one table for the whole host (gc_thresh3 =
/// 1024 by default): past about a thousand namespaces it overflows and drops packets. Permanent
/// entries are exempt from that limit, and no ARP exchange is needed at all.
fn pinned_neighbour(ifindex: u32, ip: Ipv4Addr, mac: [u8; 6]) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.ifindex = ifindex;
    m.header.state = NeighbourState::Permanent;
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    m
}

/// The `kind` label of nsagent_netlink_requests_total.
fn kind(msg: &RouteNetlinkMessage) -> &'static str {
    match msg {
        RouteNetlinkMessage::NewLink(_) => "newlink",
        RouteNetlinkMessage::SetLink(_) => "setlink",
        RouteNetlinkMessage::GetLink(_) => "getlink",
        RouteNetlinkMessage::NewAddress(_) => "newaddr",
        RouteNetlinkMessage::NewRoute(_) => "newroute",
        RouteNetlinkMessage::NewNeighbour(_) => "newneigh",
        _ => "other",
    }
}

/// Sends a pipeline and counts it.
fn pipeline(m: &Metrics, rtnl: &mut Rtnl, reqs: Vec<Request>) -> Vec<Result<(), NetlinkError>> {
    for r in &reqs {
        m.netlink_requests_total
            .with_label_values(&[kind(&r.msg)])
            .inc();
    }
    let out = rtnl.pipeline(reqs);
    for r in &out {
        if let Err(NetlinkError::Errno { errno, .. }) = r {
            m.netlink_errors_total
                .with_label_values(&[&errno.to_string()])
                .inc();
        }
    }
    out
}

/// Turns IPv6 off on a host-side veth before it comes up. Why: even without addresses, an
/// IPv6-enabled link adds a multicast route to the host's one IPv6 routing table and makes
/// every link state change walk that whole table (fib6_ifup/fib6_ifdown under rtnl_lock, seen
/// with perf): a per-namespace cost that grows with the number of namespaces. The host side
/// only ever carries the namespace's IPv4 gateway address. procfs is the kernel's only switch
/// for this per device (netlink's IFLA_INET6 attributes cannot set it).
fn disable_ipv6(ifname: &str) {
    let path = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    if let Err(e) = std::fs::write(&path, b"1") {
        // No IPv6 in this kernel, or the device is already gone: nothing to save.
        tracing::debug!(ifname, error = %e, "disable_ipv6");
    }
}

fn link_set(index: u32) -> LinkMessageBuilder<LinkUnspec> {
    LinkUnspec::new_with_index(index)
}

impl KernelDriver {
    /// Rebuilds the view from the kernel: adopts whole namespaces, removes half-built ones.
    pub fn recover(&mut self) -> anyhow::Result<Recovery> {
        use crate::recover;
        let mut out = Recovery::default();
        let links = recover::links(&mut self.host)?;
        let addrs = recover::addresses(&mut self.host)?;
        let files: HashMap<String, bool> = self.netns.list()?.into_iter().collect();
        let mut claimed = HashSet::new();
        for l in &links {
            let Some((name, nat)) = l.alias.as_deref().and_then(recover::parse_alias) else {
                continue;
            };
            claimed.insert(name.clone());
            let host_addr = addrs.get(&l.index).and_then(|v| v.first().copied());
            let adopted = if files.get(&name) == Some(&true) {
                match self.netns.inspect(&name, recover::inside) {
                    Ok(inside) => {
                        recover::whole(&name, nat, l, host_addr, &inside, self.netns.dir())
                    }
                    Err(e) => {
                        tracing::warn!(name, error = %e, "cannot look inside namespace");
                        None
                    }
                }
            } else {
                None
            };
            match adopted {
                Some(ns) => {
                    tracing::info!(name, host_ifname = %ns.host_ifname, subnet = %ns.subnet, "adopted namespace");
                    out.adopted.push(ns);
                }
                None => {
                    tracing::info!(name, host_ifname = %l.name, "removing half-built namespace");
                    self.netns.remove(&name);
                    self.delete_link(l.index);
                    out.removed.push(name);
                }
            }
        }
        // A netns marked as ours (lo's alias) whose veth never came: a crash mid-create.
        for (name, nsfs) in files {
            if claimed.contains(&name) {
                continue;
            }
            if !nsfs {
                // A crash between creating the file (our name lock) and mounting the namespace
                // onto it leaves an empty plain file: not a namespace, but it blocks the name.
                let path = self.netns.path(&name);
                let empty = std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == 0);
                if empty && crate::model::validate_name(&name).is_ok() {
                    tracing::info!(name, "removing an empty netns file left by a crash");
                    let _ = std::fs::remove_file(&path);
                    out.removed.push(name);
                }
                continue;
            }
            let mark = format!("{}{name}", recover::ALIAS_PREFIX);
            if let Ok(inside) = self.netns.inspect(&name, recover::inside) {
                if inside.lo_alias.as_deref() == Some(mark.as_str()) {
                    tracing::info!(name, "removing half-built namespace (no veth)");
                    self.netns.remove(&name);
                    out.removed.push(name);
                }
            }
        }
        // Links deleted above die asynchronously; their events are not news.
        let _ = self.events.drain();
        Ok(out)
    }

    pub fn new(
        netns: NetnsDir,
        table: String,
        metrics: Arc<Metrics>,
    ) -> Result<Self, anyhow::Error> {
        // Subscribe before anything is created, so no deletion can be missed.
        let events = LinkEvents::open()?;
        Ok(KernelDriver {
            netns,
            host: Rtnl::open()?,
            events,
            nft: NftSocket::open()?,
            table,
            metrics,
            keep_ipv6_autoconf: false,
        })
    }

    pub fn nft_socket(&mut self) -> &mut NftSocket {
        &mut self.nft
    }

    fn veth(ns: &Namespace, made: &NewNetns) -> LinkMessage {
        let (host_mac, peer_mac) = ns.macs();
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(ns.ns_ifname.clone())
            .address(peer_mac.to_vec())
            .index(PEER_IFINDEX)
            .setns_by_fd(made.fd.as_raw_fd());
        let mut host = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(ns.host_ifname.clone())
            .address(host_mac.to_vec())
            .index(ns.host_ifindex);
        if let Some(mtu) = ns.mtu {
            peer = peer.mtu(mtu);
            host = host.mtu(mtu);
        }
        host.set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .build()
    }

    fn host_requests(ns: &Namespace, made: &NewNetns, ipv6: bool) -> Vec<(Request, &'static str)> {
        let idx = ns.host_ifindex;
        let mut host_conf = link_set(idx).alias(ns.alias());
        if !ipv6 {
            host_conf = host_conf.append_extra_attribute(no_ipv6_autoconf());
        }
        vec![
            (
                Request::create(RouteNetlinkMessage::NewLink(Self::veth(ns, made))),
                "create veth pair",
            ),
            (
                Request::change(RouteNetlinkMessage::SetLink(host_conf.build())),
                "configure host veth",
            ),
            (
                Request::create(RouteNetlinkMessage::NewAddress(
                    AddressMessageBuilder::<Ipv4Addr>::new()
                        .index(idx)
                        .address(ns.gateway, ns.subnet.prefix)
                        .build(),
                )),
                "add gateway address",
            ),
            (
                Request::change(RouteNetlinkMessage::SetLink(link_set(idx).up().build())),
                "set host veth up",
            ),
            (
                Request::create(RouteNetlinkMessage::NewNeighbour(pinned_neighbour(
                    idx,
                    ns.address,
                    ns.macs().1,
                ))),
                "pin namespace neighbour",
            ),
        ]
    }

    fn ns_requests(ns: &Namespace, ipv6: bool) -> Vec<(Request, &'static str)> {
        let mut peer_conf = link_set(PEER_IFINDEX);
        if !ipv6 {
            peer_conf = peer_conf.append_extra_attribute(no_ipv6_autoconf());
        }
        vec![
            (
                Request::change(RouteNetlinkMessage::SetLink(peer_conf.build())),
                "configure namespace veth",
            ),
            (
                Request::create(RouteNetlinkMessage::NewAddress(
                    AddressMessageBuilder::<Ipv4Addr>::new()
                        .index(PEER_IFINDEX)
                        .address(ns.address, ns.subnet.prefix)
                        .build(),
                )),
                "add namespace address",
            ),
            (
                Request::change(RouteNetlinkMessage::SetLink(
                    link_set(PEER_IFINDEX).up().build(),
                )),
                "set namespace veth up",
            ),
            (
                Request::change(RouteNetlinkMessage::SetLink(
                    link_set(LO_IFINDEX).up().build(),
                )),
                "set lo up",
            ),
            (
                Request::create(RouteNetlinkMessage::NewRoute(
                    RouteMessageBuilder::<Ipv4Addr>::new()
                        .gateway(ns.gateway)
                        .build(),
                )),
                "add default route",
            ),
            (
                Request::create(RouteNetlinkMessage::NewNeighbour(pinned_neighbour(
                    PEER_IFINDEX,
                    ns.gateway,
                    ns.macs().0,
                ))),
                "pin gateway neighbour",
            ),
        ]
    }

    /// Pipelines requests on one socket; returns the first failure, named by its step.
    fn run(
        m: &Metrics,
        rtnl: &mut Rtnl,
        reqs: Vec<(Request, &'static str)>,
    ) -> Result<(), (usize, ApiError)> {
        let steps: Vec<&str> = reqs.iter().map(|(_, s)| *s).collect();
        let results = pipeline(m, rtnl, reqs.into_iter().map(|(r, _)| r).collect());
        for (i, r) in results.iter().enumerate() {
            if let Err(e) = r {
                return Err((i, kernel_error(steps[i], e)));
            }
        }
        Ok(())
    }
}

impl Driver for KernelDriver {
    fn create(&mut self, items: &[Namespace]) -> Vec<Result<(), CreateFailure>> {
        let mut results: Vec<Result<(), CreateFailure>> = Vec::with_capacity(items.len());
        let mut made: Vec<Option<NewNetns>> = Vec::with_capacity(items.len());
        for ns in items {
            match self.netns.create(&ns.name) {
                Ok(m) => {
                    made.push(Some(m));
                    results.push(Ok(()));
                }
                Err(e) => {
                    made.push(None);
                    results.push(Err(CreateFailure {
                        error: netns_error(&e),
                        link_created: false,
                    }));
                }
            }
        }
        // Host side, two pipelined rounds on the host socket: first every veth pair, then the
        // configuration of the pairs that were made. (Configuring by our chosen ifindex after a
        // failed create could touch somebody else's link; two rounds cost one round trip.)
        // Each namespace's host requests, built once: [create] for round 0, the rest for round 1.
        let mut rounds: Vec<[Vec<(Request, &'static str)>; 2]> = items
            .iter()
            .zip(&made)
            .map(|(ns, m)| match m {
                Some(m) => {
                    let mut create = Self::host_requests(ns, m, self.keep_ipv6_autoconf);
                    let rest = create.split_off(1);
                    [create, rest]
                }
                None => [vec![], vec![]],
            })
            .collect();
        for round in 0..2 {
            if round == 1 && !self.keep_ipv6_autoconf {
                for (i, ns) in items.iter().enumerate() {
                    if results[i].is_ok() {
                        disable_ipv6(&ns.host_ifname);
                    }
                }
            }
            let mut reqs = vec![];
            let mut owner = vec![];
            for (i, per_round) in rounds.iter_mut().enumerate() {
                if results[i].is_ok() {
                    for r in std::mem::take(&mut per_round[round]) {
                        owner.push(i);
                        reqs.push(r);
                    }
                }
            }
            let steps: Vec<&str> = reqs.iter().map(|(_, s)| *s).collect();
            let out = pipeline(
                &self.metrics,
                &mut self.host,
                reqs.into_iter().map(|(r, _)| r).collect(),
            );
            for (k, r) in out.into_iter().enumerate() {
                let i = owner[k];
                if let (Err(e), true) = (r, results[i].is_ok()) {
                    results[i] = Err(CreateFailure {
                        error: kernel_error(steps[k], &e),
                        link_created: round == 1,
                    });
                }
            }
        }
        // Namespace side: on each namespace's own socket.
        for (i, ns) in items.iter().enumerate() {
            if results[i].is_err() {
                continue;
            }
            if let Some(m) = made[i].as_mut() {
                if let Err((_, error)) = Self::run(
                    &self.metrics,
                    &mut m.rtnl,
                    Self::ns_requests(ns, self.keep_ipv6_autoconf),
                ) {
                    results[i] = Err(CreateFailure {
                        error,
                        link_created: true,
                    });
                }
            }
        }
        // Close every fd into the new namespaces (else they would outlive their file), and
        // undo the failed ones.
        for (i, m) in made.into_iter().enumerate() {
            if let Some(m) = m {
                drop(m);
                if results[i].is_err() {
                    self.netns.remove(&items[i].name);
                }
            }
        }
        results
    }

    fn remove(&mut self, ns: &Namespace) {
        self.netns.remove(&ns.name);
    }

    fn nft(&mut self, groups: &[Vec<ElemOp>]) -> Vec<Result<(), GroupError>> {
        if groups.iter().all(|g| g.is_empty()) {
            return groups.iter().map(|_| Ok(())).collect();
        }
        let t = Instant::now();
        let out = self.nft.apply_groups(&self.table, groups);
        let m = &self.metrics;
        m.nft_transaction_duration_seconds
            .observe(t.elapsed().as_secs_f64());
        let failed = out.iter().filter(|r| r.is_err()).count();
        let outcome = match failed {
            0 => "ok",
            n if n == out.len() => "failed",
            _ => "partial",
        };
        m.nft_transactions_total.with_label_values(&[outcome]).inc();
        out
    }

    fn gone_links(&mut self) -> Gone {
        let mut gone = vec![];
        for e in self.events.drain() {
            match e {
                LinkEvent::Deleted(i) => gone.push(i),
                LinkEvent::Lost => return Gone::Resync,
            }
        }
        Gone::Links(gone)
    }

    fn delete_link(&mut self, ifindex: u32) {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        let r = pipeline(
            &self.metrics,
            &mut self.host,
            vec![Request::change(RouteNetlinkMessage::DelLink(msg))],
        );
        if let Some(Err(e)) = r.first() {
            tracing::debug!(ifindex, error = %e, "delete link");
        }
    }

    fn gone_netns(&mut self) -> Vec<String> {
        self.netns.deleted()
    }

    fn delete_table(&mut self) {
        let r = nft::Transaction::delete_table(&self.table)
            .and_then(|tx| self.nft.run_all_or_nothing(tx));
        if let Err(e) = r {
            tracing::warn!(table = %self.table, error = %e, "delete table");
        }
    }

    fn link_exists(&mut self, ifindex: u32) -> bool {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        let r = self
            .host
            .pipeline(vec![Request::change(RouteNetlinkMessage::GetLink(msg))]);
        // ENODEV means gone; anything else, assume it is still there and ask again later.
        !matches!(r.first(), Some(Err(NetlinkError::Errno { errno, .. })) if *errno == libc::ENODEV)
    }
}
