//! [`Driver::check`](super::Driver::check) and [`Driver::repair`](super::Driver::repair) for
//! the kernel: what a live namespace looks like, read with the same dumps as start-up recovery
//! (the host's addresses, IPv6 routes, qdiscs and the table's elements once per call; inside,
//! one look per namespace), compared with what the agent made; and the same requests as a
//! create, sent again where something is missing.

use super::recover::{inside, HostRoutes6};
use super::requests;
use super::{elems, DriverError, KernelDriver};
use crate::model::{Namespace, Problem};
use crate::netlink::NetlinkError;
use nft::{Elem, ElemOp, SetName};
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

/// What the host side holds, as one dump of each found it.
pub(super) struct Host {
    addrs: HashMap<u32, Vec<(Ipv4Addr, u8)>>,
    routes6: HostRoutes6,
    rates: HashMap<u32, u64>,
    pub(super) elements: HashSet<Elem>,
}

impl KernelDriver {
    fn dump_host(&mut self) -> Result<Host, DriverError> {
        let dump = |source| DriverError::Netlink {
            step: "dump addresses, routes and qdiscs",
            source,
        };
        let mut elements = HashSet::new();
        for set in SetName::ALL {
            elements.extend(self.nft.elements(&self.table, set)?);
        }
        Ok(Host {
            addrs: self.host.addresses().map_err(dump)?,
            routes6: self.host.routes6().map_err(dump)?,
            rates: super::tc::rates(&mut self.host).map_err(dump)?,
            elements,
        })
    }

    /// [`Driver::check`](super::Driver::check): the host's dumps taken again only when
    /// `fresh` (or never taken yet).
    pub(super) fn check_all(
        &mut self,
        nss: &[Namespace],
        fresh: bool,
    ) -> Result<Vec<Vec<Problem>>, DriverError> {
        let host = match self.checked_host.take() {
            Some(h) if !fresh => h,
            _ => self.dump_host()?,
        };
        // Look at the IPv6 side inside every dual-stack namespace, even one whose host route
        // is gone (that is what `inside` takes the host route for).
        let mut dual = host.routes6.clone();
        for ns in nss.iter().filter(|ns| ns.v6.is_some()) {
            dual.entry(ns.host_ifindex).or_default();
        }
        let out = nss
            .iter()
            .map(|ns| self.check_one(ns, &host, &dual))
            .collect();
        self.checked_host = Some(host);
        Ok(out)
    }

    /// Where the namespace's file is: ours, or the one it was attached by.
    fn netns_path_of(&self, ns: &Namespace) -> std::path::PathBuf {
        match ns.attached {
            true => std::path::PathBuf::from(&ns.netns_path),
            false => self.netns.path(&ns.name),
        }
    }

    fn check_one(&mut self, ns: &Namespace, host: &Host, dual: &HostRoutes6) -> Vec<Problem> {
        let mut p = vec![];
        let idx = ns.host_ifindex;
        let path = self.netns_path_of(ns);
        if !crate::netns::is_namespace_file(&path) {
            return vec![Problem::NetnsMissing];
        }
        let seen = match self.netns.inspect_path(&path, |r| inside(r, dual)) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(name = %ns.name, error = %e, "check: cannot look inside");
                return vec![Problem::NetnsMissing];
            }
        };
        let host_link = match seen.host {
            Some(l) => Some(l),
            None => self.host.link(idx).ok().flatten(),
        };
        match host_link {
            None => return vec![Problem::HostLinkMissing],
            Some(l) if !l.up => p.push(Problem::HostLinkDown),
            Some(_) => {}
        }
        let gateway = (ns.gateway, ns.subnet.prefix);
        if !host.addrs.get(&idx).is_some_and(|v| v.contains(&gateway)) {
            p.push(Problem::HostAddressMissing);
        }
        if let Some(v6) = ns.v6 {
            let route = (v6.subnet6.network, v6.subnet6.prefix);
            if !host.routes6.get(&idx).is_some_and(|v| v.contains(&route)) {
                p.push(Problem::HostRoute6Missing);
            }
        }
        let rate = |ingress: bool| {
            ns.conf
                .bandwidth
                .and_then(|b| if ingress { b.ingress_bps } else { b.egress_bps })
        };
        if rate(true).is_some() && !host.rates.contains_key(&idx) {
            p.push(Problem::IngressQdiscMissing);
        }
        match &seen.peer {
            None => p.push(Problem::LinkMissing),
            Some(peer) => {
                if !peer.up {
                    p.push(Problem::LinkDown);
                }
                if peer.addr != Some((ns.address, ns.subnet.prefix)) {
                    p.push(Problem::AddressMissing);
                }
                if let Some(v6) = ns.v6 {
                    if peer.addr6 != Some((v6.address6, v6.subnet6.prefix)) {
                        p.push(Problem::Address6Missing);
                    }
                }
            }
        }
        if !seen.lo_up {
            p.push(Problem::LoDown);
        }
        if seen.gateway != Some(ns.gateway) {
            p.push(Problem::RouteMissing);
        }
        if let Some(v6) = ns.v6 {
            if seen.gateway6 != Some(v6.gateway6) {
                p.push(Problem::Route6Missing);
            }
        }
        if rate(false).is_some() && seen.egress_bps.is_none() {
            p.push(Problem::EgressQdiscMissing);
        }
        if elems(ns).iter().any(|e| !host.elements.contains(e)) {
            p.push(Problem::ElementMissing);
        }
        if let Some(dns) = &ns.conf.dns {
            if self.etc.read(&ns.name).as_ref() != Some(dns) {
                p.push(Problem::ResolvConfMissing);
            }
        }
        p
    }

    /// Sends the host veth's and the inside's configuration again (what exists answers
    /// EEXIST, which is what a repair wants), adds the elements the last check did not find
    /// and rewrites the resolv.conf. Runs right after the check of its slice.
    pub(super) fn repair_one(&mut self, ns: &Namespace) -> Result<(), DriverError> {
        let fine = |r: Result<(), DriverError>| match r {
            Err(DriverError::Netlink {
                source: NetlinkError::Errno { errno, .. },
                ..
            }) if errno == libc::EEXIST => Ok(()),
            r => r,
        };
        let steps = requests::host_configuration(ns, self.ipv6);
        for r in super::kernel::send(&self.metrics, &mut self.host, steps) {
            fine(r)?;
        }
        let steps = requests::inside(ns, self.ipv6);
        let metrics = self.metrics.clone();
        let path = self.netns_path_of(ns);
        let results = self
            .netns
            .inspect_path(&path, |rtnl| Ok(super::kernel::send(&metrics, rtnl, steps)))?;
        for r in results {
            fine(r)?;
        }
        // Only those the last check did not find: adding one that is there is EEXIST, and
        // would fail the whole group.
        let seen = self.checked_host.as_ref().map(|h| &h.elements);
        let add: Vec<ElemOp> = elems(ns)
            .into_iter()
            .filter(|e| !seen.is_some_and(|s| s.contains(e)))
            .map(ElemOp::Add)
            .collect();
        if let Some(Err(e)) = super::Driver::nft(self, &[add]).pop() {
            return Err(e.into());
        }
        if let Some(dns) = &ns.conf.dns {
            self.etc.write(&ns.name, dns).map_err(DriverError::Etc)?;
        }
        Ok(())
    }
}
