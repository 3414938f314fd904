//! Start-up recovery: the kernel is the source of truth. The agent's view is rebuilt from a
//! link dump, an address dump and the netns directory; the only file read beside them is each
//! namespace's labels, which the kernel has no place for (driver::labels).
//! Whole namespaces are adopted, half-built ones (a crash mid-create) removed, and the table is
//! rewritten in one transaction holding the adopted namespaces' elements.
//!
//! What is ours is told by the ownership marks ([`Mark`]) on host veths and on `lo` inside.

use super::kernel::OrphanDump;
use super::{elems, Attachment, DriverError, KernelDriver};
use crate::model::{
    self, Bandwidth, Conf, Dirs, Mark, Namespace, PortForward, Proto, Subnet, Subnet6, LO_IFINDEX,
    PEER_IFINDEX, V6,
};
use crate::netlink::{LinkInfo, NetlinkError, Rtnl};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// The host's dumps recovery reads each namespace's state from.
#[derive(Clone, Copy)]
struct HostState<'a> {
    addrs: &'a HashMap<u32, Vec<(Ipv4Addr, u8)>>,
    routes6: &'a HostRoutes6,
    rates: &'a HashMap<u32, u64>,
}

/// What start-up recovery found.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Whole namespaces, adopted as they are.
    pub adopted: Vec<Namespace>,
    /// Names of half-built ones that were removed.
    pub removed: Vec<String>,
    /// Whole namespaces of the warm pool, adopted back into it.
    pub warm: Vec<Namespace>,
}

impl KernelDriver {
    /// Rebuilds the view from the kernel, then replaces the agent's table with one holding the
    /// adopted namespaces' elements (warm ones' too) and the uplink's, in a single transaction.
    pub fn recover(
        &mut self,
        spec: &nft::TableSpec,
        uplink: Option<&str>,
    ) -> Result<Recovery, DriverError> {
        // The map elements are the state of port forwards and egress addresses: read them
        // before the table is replaced.
        let mut maps = Maps::default();
        for map in nft::SetName::MAPS {
            for e in self.nft.elements(&spec.name, map)? {
                maps.add(e);
            }
        }
        let found = self.adopt_or_remove(&spec.name, &mut maps)?;
        let mut all: Vec<nft::Elem> = uplink
            .map(|u| nft::Elem::Uplink(u.to_string()))
            .into_iter()
            .collect();
        // Warm ones are in the table as a default create is (executor::warm_elements).
        for ns in found.adopted.iter().chain(&found.warm) {
            all.extend(elems(ns));
        }
        let tx = nft::Transaction::replace_table(spec, &all)?;
        self.nft.run_all_or_nothing(tx)?;
        Ok(found)
    }

    /// The namespace that `host` (marked `mark`) and what is inside make, if they make a whole
    /// one; its configuration read back from the kernel and the agent's files.
    #[allow(clippy::too_many_arguments)]
    fn rebuild(
        &self,
        name: &str,
        mark: &Mark,
        host: &LinkInfo,
        inside: &Inside,
        h: HostState<'_>,
        maps: &mut Maps,
        dirs: &Dirs,
    ) -> Option<Namespace> {
        let (addrs, routes6, host_rates) = (h.addrs, h.routes6, h.rates);
        let host_addr = addrs.get(&host.index).and_then(|v| v.first().copied());
        let host_route6 = routes6.get(&host.index).and_then(|v| v.first().copied());
        let peer = inside.peer.as_ref();
        let address = peer.and_then(|p| p.addr).map(|a| IpAddr::from(a.0));
        let address6 = peer.and_then(|p| p.addr6).map(|a| IpAddr::from(a.0));
        let (mut ports, egress) = address.map(|a| maps.take(a)).unwrap_or_default();
        let (ports6, egress6) = address6.map(|a| maps.take(a)).unwrap_or_default();
        // A port on every address is in both families' maps.
        for p in ports6 {
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let ports = crate::cmd::sorted(ports);
        let as4 = |a: Option<IpAddr>| match a {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        };
        let as6 = |a: Option<IpAddr>| match a {
            Some(IpAddr::V6(a)) => Some(a),
            _ => None,
        };
        let conf = Conf {
            nat: mark.nat,
            dns: self.etc.read(name),
            bandwidth: bandwidth(host_rates.get(&host.index), inside.egress_bps),
            ports,
            egress_addr: as4(egress).filter(|_| mark.nat),
            egress_addr6: as6(egress6).filter(|_| mark.nat),
            labels: self.labels.labels(name),
        };
        whole(mark, host, (host_addr, host_route6), inside, dirs, conf)
    }

    /// Looks inside every netns file and, from inside, at its host veth: never at the host's
    /// whole link list, whose dump costs the kernel O(N²) with N namespaces
    /// (docs/kernel.md#the-host-veth-seen-from-inside). That dump runs in the background
    /// ([`Driver::sweep_orphans`](super::Driver::sweep_orphans)) for what no namespace file leads to.
    fn adopt_or_remove(&mut self, table: &str, maps: &mut Maps) -> Result<Recovery, DriverError> {
        let dump = |source| DriverError::Netlink {
            step: "dump addresses, routes and qdiscs",
            source,
        };
        let mut out = Recovery::default();
        let started = std::time::Instant::now();
        let addrs = self.host.addresses().map_err(dump)?;
        let routes6 = self.host.routes6().map_err(dump)?;
        let host_rates = super::tc::rates(&mut self.host).map_err(dump)?;
        let files = self.netns.list().map_err(DriverError::Dir)?;
        let dirs = Dirs {
            netns: self.netns.dir().to_path_buf(),
            etc_netns: self.etc.dir().to_path_buf(),
        };
        // Host veths that belong to a namespace file, whole or not.
        let mut claimed = HashSet::new();
        for (name, nsfs) in files {
            if !nsfs {
                // A crash between creating the file (our name lock) and mounting the namespace
                // onto it leaves an empty plain file: not a namespace, but it blocks the name.
                let path = self.netns.path(&name);
                let empty = std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == 0);
                if empty && model::validate_name(&name).is_ok() {
                    tracing::info!(name, "removing an empty netns file left by a crash");
                    let _ = std::fs::remove_file(&path);
                    out.removed.push(name);
                }
                continue;
            }
            let mut inside = match self.netns.inspect(&name, |r| inside(r, &routes6)) {
                Ok(inside) => inside,
                Err(e) => {
                    tracing::warn!(name, error = %e, "cannot look inside namespace");
                    continue;
                }
            };
            if let (None, Some(index)) = (&inside.host, inside.host_index) {
                // Asking from inside failed (not ENODEV): ask the host, one link.
                inside.host = self.host.link(index).ok().flatten();
            }
            let ours_lo = inside
                .lo_alias
                .as_deref()
                .is_some_and(|a| a == Mark::lo(&name) || Mark::is_warm_lo(a));
            let host = inside.host.clone();
            let alias = host.as_ref().and_then(|h| h.alias.as_deref());
            let mut unmarked = false;
            let mark = match alias.map(|a| (a, Mark::parse(a))) {
                Some((_, Some(m))) if m.name == name => Some(m),
                // Claimed from the warm pool, and the agent stopped before it wrote the mark
                // (Driver::mark_claimed): the name of its netns file is the owner's, and the
                // table says whether it has NAT.
                Some((a, None)) if Mark::is_warm_lo(a) && inside.lo_alias.as_deref() == Some(a) => {
                    unmarked = true;
                    let address = inside.peer.as_ref().and_then(|p| p.addr).map(|a| a.0);
                    Some(Mark {
                        name: name.clone(),
                        nat: address.is_some_and(|a| self.has_nat(table, maps, a)),
                    })
                }
                _ => None,
            };
            let (Some(host), Some(mark)) = (host, mark) else {
                if ours_lo {
                    // A netns marked as ours whose veth never came: a crash mid-create.
                    tracing::info!(name, "removing half-built namespace (no veth)");
                    self.netns.remove(&name);
                    out.removed.push(name);
                }
                continue;
            };
            claimed.insert(host.index);
            let host_state = HostState {
                addrs: &addrs,
                routes6: &routes6,
                rates: &host_rates,
            };
            match self.rebuild(&name, &mark, &host, &inside, host_state, maps, &dirs) {
                Some(ns) => {
                    tracing::info!(name, host_ifname = %ns.host_ifname, subnet = %ns.subnet, "adopted namespace");
                    if unmarked {
                        super::Driver::mark_claimed(self, &[&ns]);
                    }
                    out.adopted.push(ns);
                }
                None => {
                    tracing::info!(name, host_ifname = %host.name, "removing half-built namespace");
                    self.netns.remove(&name);
                    super::Driver::delete_link(self, host.index);
                    out.removed.push(name);
                }
            }
        }
        // Attachments: adopted if their file still leads to the namespace attached and it
        // still has its veth, whole; else what is left of them goes (the runtime may have
        // destroyed the namespace while the agent was down).
        for name in self.attached.names() {
            let at = self.attached.read::<Attachment>(&name);
            let same = at.as_ref().is_some_and(|at| {
                nix::sys::stat::stat(Path::new(&at.netns_path))
                    .is_ok_and(|st| st.st_dev == at.dev && st.st_ino == at.ino)
            });
            let seen = match (&at, same) {
                (Some(at), true) => self
                    .netns
                    .inspect_path(Path::new(&at.netns_path), |r| inside(r, &routes6))
                    .ok(),
                _ => None,
            };
            let mut host_index = None;
            let found = seen.and_then(|mut seen| {
                if let (None, Some(index)) = (&seen.host, seen.host_index) {
                    seen.host = self.host.link(index).ok().flatten();
                }
                let host = seen.host.clone()?;
                let mark = host.alias.as_deref().and_then(Mark::parse)?;
                if mark.name != name {
                    return None;
                }
                host_index = Some(host.index);
                claimed.insert(host.index);
                let host_state = HostState {
                    addrs: &addrs,
                    routes6: &routes6,
                    rates: &host_rates,
                };
                self.rebuild(&name, &mark, &host, &seen, host_state, maps, &dirs)
            });
            match (found, at) {
                (Some(mut ns), Some(at)) => {
                    ns.attached = true;
                    ns.netns_path = at.netns_path;
                    tracing::info!(name, netns_path = %ns.netns_path, "adopted attachment");
                    out.adopted.push(ns);
                }
                _ => {
                    tracing::info!(
                        name,
                        "removing an attachment whose namespace is gone or half-wired"
                    );
                    if let Some(index) = host_index {
                        super::Driver::delete_link(self, index);
                    }
                    self.forget_files(&name);
                    out.removed.push(name);
                }
            }
        }
        self.adopt_warm(&addrs, &routes6, &mut claimed, &mut out);
        // A host veth of ours with an address but no namespace file: it holds a subnet of the
        // pool (and the ifindex a create there would choose), so it goes now. Only links with
        // an address are asked about, one by one; the rest waits for the background dump.
        for index in addrs.keys() {
            if claimed.contains(index) {
                continue;
            }
            let Ok(Some(link)) = self.host.link(*index) else {
                continue;
            };
            if let Some(mark) = link.alias.as_deref().and_then(Mark::parse) {
                tracing::info!(name = mark.name, host_ifname = %link.name, "removing a veth whose namespace is gone");
                super::Driver::delete_link(self, link.index);
                out.removed.push(mark.name);
            }
        }
        // resolv.conf files of namespaces that are gone (a crash between the two removals).
        let adopted: HashSet<&str> = out.adopted.iter().map(|n| n.name.as_str()).collect();
        for name in self.etc.names() {
            if !adopted.contains(name.as_str()) {
                tracing::info!(name, "removing the resolv.conf of a namespace that is gone");
                self.etc.remove(&name);
            }
        }
        // The same for labels.
        for name in self.labels.names() {
            if !adopted.contains(name.as_str()) {
                tracing::info!(name, "removing the labels of a namespace that is gone");
                self.forget_labels(&name);
            }
        }
        // Links deleted above die asynchronously; their events are not news.
        let _ = self.events.drain();
        // Not now: the dump and the look-ups inside both need RTNL, and so do the commands of
        // the first seconds after a restart (docs/kernel.md#the-host-veth-seen-from-inside).
        self.orphan_dump = Some(OrphanDump::Pending);
        tracing::info!(
            namespaces = out.adopted.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "looked inside every namespace"
        );
        Ok(out)
    }

    /// The warm pool's namespaces: whole ones go back into the pool, the rest (a crash while
    /// one was built or claimed) are removed.
    fn adopt_warm(
        &mut self,
        addrs: &HashMap<u32, Vec<(Ipv4Addr, u8)>>,
        routes6: &HostRoutes6,
        claimed: &mut HashSet<u32>,
        out: &mut Recovery,
    ) {
        let Some(warm) = self.warm.take() else {
            return;
        };
        let dirs = Dirs {
            netns: warm.dir().to_path_buf(),
            etc_netns: self.etc.dir().to_path_buf(),
        };
        for (name, nsfs) in warm.list().unwrap_or_default() {
            if !nsfs || !model::is_warm_name(&name) {
                // An empty file: a crash before its namespace was mounted, or after it moved.
                let _ = std::fs::remove_file(warm.path(&name));
                continue;
            }
            let inside = match warm.inspect(&name, |r| inside(r, routes6)) {
                Ok(inside) => inside,
                Err(e) => {
                    tracing::warn!(name, error = %e, "cannot look inside a warm namespace");
                    warm.remove(&name);
                    continue;
                }
            };
            let host = inside.host.clone().or_else(|| {
                inside
                    .host_index
                    .and_then(|i| self.host.link(i).ok().flatten())
            });
            let mark = Mark {
                name: name.clone(),
                nat: true,
            };
            let found = host.as_ref().and_then(|h| {
                claimed.insert(h.index);
                let host_addr = addrs.get(&h.index).and_then(|v| v.first().copied());
                let host_route6 = routes6.get(&h.index).and_then(|v| v.first().copied());
                // Still warm: the mark a claim changes first is the one it was built with.
                let conf = Conf {
                    nat: true,
                    ..Conf::default()
                };
                (h.alias.as_deref() == Some(Mark::lo(&name).as_str()))
                    .then(|| whole(&mark, h, (host_addr, host_route6), &inside, &dirs, conf))
                    .flatten()
            });
            match found {
                Some(ns) => out.warm.push(ns),
                None => {
                    tracing::info!(
                        name,
                        "removing a warm namespace left half-built or half-claimed"
                    );
                    warm.remove(&name);
                    if let Some(h) = host {
                        super::Driver::delete_link(self, h.index);
                    }
                }
            }
        }
        if !out.warm.is_empty() {
            tracing::info!(namespaces = out.warm.len(), "adopted the warm pool back");
        }
        self.warm = Some(warm);
    }

    /// Whether the old table NATs `address`: for a namespace claimed just before a stop, whose
    /// mark (which says it) was not written. An unreadable set reads as the warm default, NAT.
    fn has_nat(&mut self, table: &str, maps: &mut Maps, address: Ipv4Addr) -> bool {
        if maps.nat.is_none() {
            match self.nft.elements(table, nft::SetName::NatSaddrs) {
                Ok(v) => {
                    maps.nat = Some(
                        v.into_iter()
                            .filter_map(|e| match e {
                                nft::Elem::NatSaddr(a) => Some(a),
                                _ => None,
                            })
                            .collect(),
                    )
                }
                Err(e) => {
                    tracing::warn!(error = %e, "read the NAT set");
                    return true;
                }
            }
        }
        maps.nat.as_ref().is_some_and(|s| s.contains(&address))
    }

    /// The background half of recovery: links of ours that no namespace file led to (the veth
    /// of a deleted namespace that a process inside kept alive, a veth whose namespace file
    /// someone removed while the agent was down). Each is asked for again before it goes, and
    /// kept if it is now a live or dying namespace's (`ours`).
    pub(super) fn sweep(&mut self, ours: &dyn Fn(&str, u32) -> bool, idle: bool) -> Vec<String> {
        match &self.orphan_dump {
            Some(OrphanDump::Pending) if idle => {
                self.orphan_dump = Some(OrphanDump::Running(std::thread::spawn(|| {
                    Rtnl::open_background()?.links_unsettled()
                })));
                return vec![];
            }
            Some(OrphanDump::Running(h)) if h.is_finished() => {}
            _ => return vec![],
        }
        let Some(OrphanDump::Running(handle)) = self.orphan_dump.take() else {
            return vec![];
        };
        let links = match handle.join() {
            Ok(Ok(links)) => links,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "background link dump of start-up");
                return vec![];
            }
            Err(_) => return vec![],
        };
        let mut removed = vec![];
        let seen = links.len();
        for l in links {
            let Some(mark) = l.alias.as_deref().and_then(Mark::parse) else {
                continue;
            };
            if ours(&mark.name, l.index) {
                continue;
            }
            // The dump is seconds old: is it still that link, and still nobody's?
            let Ok(Some(now)) = self.host.link(l.index) else {
                continue;
            };
            if now.alias != l.alias || ours(&mark.name, now.index) {
                continue;
            }
            tracing::info!(name = mark.name, host_ifname = %now.name, "removing a veth no namespace file leads to");
            super::Driver::delete_link(self, now.index);
            removed.push(mark.name);
        }
        tracing::info!(
            links = seen,
            removed = removed.len(),
            "start-up's background link sweep is done"
        );
        removed
    }
}

/// Host IPv6 routes by ifindex (the host side of IPv6 is a route).
pub(super) type HostRoutes6 = HashMap<u32, Vec<(Ipv6Addr, u8)>>;

/// Port forwards and egress addresses found in the old table, by namespace address.
#[derive(Default)]
struct Maps {
    ports: HashMap<IpAddr, Vec<PortForward>>,
    egress: HashMap<IpAddr, IpAddr>,
    /// The NAT set, read only if a namespace's mark does not say (see [`KernelDriver::has_nat`]).
    nat: Option<HashSet<Ipv4Addr>>,
}

impl Maps {
    fn add(&mut self, e: nft::Elem) {
        match e {
            nft::Elem::Forward(f) => {
                if let Some(proto) = Proto::from_number(f.proto) {
                    self.ports.entry(f.to).or_default().push(PortForward {
                        proto,
                        host_port: f.dport,
                        port: f.to_port,
                        host_addr: f.daddr,
                    });
                }
            }
            nft::Elem::Egress { saddr, to } => {
                self.egress.insert(saddr, to);
            }
            _ => {}
        }
    }

    /// What belongs to the namespace address `address`.
    fn take(&mut self, address: IpAddr) -> (Vec<PortForward>, Option<IpAddr>) {
        let ports = self.ports.remove(&address).unwrap_or_default();
        (ports, self.egress.remove(&address))
    }
}

/// The veth peer as seen from inside.
#[derive(Debug, Clone)]
pub(super) struct Peer {
    pub name: String,
    pub up: bool,
    pub mtu: u32,
    pub addr: Option<(Ipv4Addr, u8)>,
    pub addr6: Option<(Ipv6Addr, u8)>,
}

/// What a managed namespace looks like from inside.
pub(super) struct Inside {
    /// The host veth (the peer's peer), asked for from inside; `None` with a `host_index`:
    /// the kernel would not answer that way.
    pub host: Option<LinkInfo>,
    pub host_index: Option<u32>,
    pub lo_alias: Option<String>,
    pub lo_up: bool,
    pub peer: Option<Peer>,
    pub gateway: Option<Ipv4Addr>,
    pub gateway6: Option<Ipv6Addr>,
    /// The rate of the peer's root tbf qdisc, if it has one.
    pub egress_bps: Option<u64>,
}

fn bandwidth(ingress_bps: Option<&u64>, egress_bps: Option<u64>) -> Option<Bandwidth> {
    let b = Bandwidth {
        ingress_bps: ingress_bps.copied(),
        egress_bps,
    };
    (b.ingress_bps.is_some() || b.egress_bps.is_some()).then_some(b)
}

/// What is inside; the IPv6 side only when the host side says the namespace is dual stack: a
/// route to its IPv6 subnet on the host veth, the peer of the veth inside (two dumps fewer per
/// namespace otherwise).
pub(super) fn inside(rtnl: &mut Rtnl, host_routes6: &HostRoutes6) -> Result<Inside, NetlinkError> {
    let links = rtnl.links()?;
    let peer_link = links.iter().find(|l| l.index == PEER_IFINDEX);
    let host_index = peer_link.and_then(|l| l.link);
    let host = match peer_link.and_then(|l| Some((l.link?, l.link_netnsid?))) {
        Some((index, nsid)) => match rtnl.link_in(nsid, index) {
            Ok(host) => host,
            Err(NetlinkError::Errno { .. }) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    let dual = host_index.is_some_and(|host| host_routes6.contains_key(&host));
    let addrs = rtnl.addresses()?;
    let addrs6 = if dual {
        rtnl.addresses6()?
    } else {
        HashMap::new()
    };
    let lo = links.iter().find(|l| l.index == LO_IFINDEX);
    let peer = links
        .iter()
        .find(|l| l.index == PEER_IFINDEX)
        .map(|l| Peer {
            name: l.name.clone(),
            up: l.up,
            mtu: l.mtu,
            addr: addrs.get(&PEER_IFINDEX).and_then(|v| v.first().copied()),
            addr6: addrs6.get(&PEER_IFINDEX).and_then(|v| v.first().copied()),
        });
    Ok(Inside {
        host,
        host_index,
        lo_alias: lo.and_then(|l| l.alias.clone()),
        lo_up: lo.is_some_and(|l| l.up),
        peer,
        gateway: rtnl.default_route()?.and_then(|r| r.gateway),
        gateway6: if dual { rtnl.default_gateway6()? } else { None },
        egress_bps: super::tc::rates(rtnl)?.get(&PEER_IFINDEX).copied(),
    })
}

/// The host veth's first IPv4 address and IPv6 route (address, prefix length).
type HostAddrs = (Option<(Ipv4Addr, u8)>, Option<(Ipv6Addr, u8)>);

/// Decides whether a host veth plus what is inside its namespace make a whole namespace, and
/// rebuilds its `Namespace` if so.
fn whole(
    mark: &Mark,
    host: &LinkInfo,
    (host_addr, host_route6): HostAddrs,
    inside: &Inside,
    dirs: &Dirs,
    conf: Conf,
) -> Option<Namespace> {
    let (gateway, prefix) = host_addr?;
    // IPv6 on both sides, or on neither.
    // The host side of IPv6 is a route to the subnet (no address): docs/kernel.md.
    let v6 = match (host_route6, inside.peer.as_ref().and_then(|p| p.addr6)) {
        (None, None) => None,
        (Some((net, len)), Some(addr6)) => {
            let v6 = V6::of(Subnet6::new(net, len)?);
            let matches = addr6 == (v6.address6, len) && inside.gateway6 == Some(v6.gateway6);
            Some(matches.then_some(v6)?)
        }
        _ => return None,
    };
    if !host.up || !inside.lo_up || prefix > 31 || prefix == 0 {
        return None;
    }
    let mask = u32::MAX << (32 - prefix);
    let subnet = Subnet::new(Ipv4Addr::from(u32::from(gateway) & mask), prefix)?;
    let (gw, addr) = subnet.gateway_and_address();
    let peer = inside.peer.clone()?;
    if gw != gateway || !peer.up || peer.addr != Some((addr, prefix)) || inside.gateway != Some(gw)
    {
        return None;
    }
    Some(Namespace {
        name: mark.name.clone(),
        netns_path: dirs.netns_path(&mark.name),
        resolv_conf: conf.dns.as_ref().map(|_| dirs.resolv_conf(&mark.name)),
        host_ifname: host.name.clone(),
        ns_ifname: peer.name,
        subnet,
        gateway: gw,
        address: addr,
        v6,
        conf,
        mtu: (peer.mtu != 1500 && peer.mtu != 0).then_some(peer.mtu),
        attached: false,
        host_ifindex: host.index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inside_ok() -> Inside {
        Inside {
            host: None,
            host_index: None,
            lo_alias: Some("nsagent:a".into()),
            lo_up: true,
            peer: Some(Peer {
                name: "eth0".into(),
                up: true,
                mtu: 1500,
                addr: Some(("100.64.0.2".parse().unwrap(), 30)),
                addr6: None,
            }),
            gateway: Some("100.64.0.1".parse().unwrap()),
            gateway6: None,
            egress_bps: None,
        }
    }

    fn host() -> LinkInfo {
        LinkInfo {
            index: 7,
            name: "nsv64400000".into(),
            alias: Some("nsagent:a".into()),
            mtu: 1500,
            up: true,
            ..Default::default()
        }
    }

    fn mark() -> Mark {
        Mark {
            name: "a".into(),
            nat: true,
        }
    }

    #[test]
    fn whole_namespaces_are_rebuilt() {
        let dir = &Dirs {
            netns: "/run/netns".into(),
            etc_netns: "/etc/netns".into(),
        };
        let gw = Some(("100.64.0.1".parse().unwrap(), 30));
        let ns = whole(
            &mark(),
            &host(),
            (gw, None),
            &inside_ok(),
            dir,
            Conf::default(),
        )
        .unwrap();
        assert_eq!(ns.subnet.to_string(), "100.64.0.0/30");
        assert_eq!(ns.address.to_string(), "100.64.0.2");
        assert_eq!(ns.host_ifindex, 7);
        assert_eq!(ns.mtu, None);
    }

    #[test]
    fn half_built_ones_are_not() {
        let dir = &Dirs {
            netns: "/run/netns".into(),
            etc_netns: "/etc/netns".into(),
        };
        let gw = Some(("100.64.0.1".parse().unwrap(), 30));
        assert!(whole(
            &mark(),
            &host(),
            (None, None),
            &inside_ok(),
            dir,
            Conf::default()
        )
        .is_none());
        let mut i = inside_ok();
        i.gateway = None;
        assert!(whole(&mark(), &host(), (gw, None), &i, dir, Conf::default()).is_none());
        let mut i = inside_ok();
        i.peer = None;
        assert!(whole(&mark(), &host(), (gw, None), &i, dir, Conf::default()).is_none());
        let mut h = host();
        h.up = false;
        assert!(whole(&mark(), &h, (gw, None), &inside_ok(), dir, Conf::default()).is_none());
    }
}
