//! What namespaces hold — a name, a subnet, a host interface name, a host ifindex — from the
//! moment a create is planned until the kernel has really freed them. A deleted namespace's
//! host veth disappears asynchronously (docs/kernel.md#the-host-veth-disappears-later): until the
//! link-deleted event arrives, nothing it used may be handed out again.

use crate::model::{Listener, Namespace, PortForward, Proto, Subnet, Subnet6};
use crate::pool::{Pool, Pool6};
use crate::protocol::{ApiError, ErrorCode};
use std::collections::{BTreeMap, HashMap, HashSet};

/// A host link that is dying: everything it used stays reserved until the kernel removes it.
#[derive(Debug)]
struct Dying {
    /// The name, if it stays reserved too (a delete; not a rolled-back create).
    name: Option<String>,
    subnet: Subnet,
    subnet6: Option<Subnet6>,
    host_ifname: String,
}

/// Who publishes a (protocol, port): on which host address (`None`: every one), which namespace.
type PortHolder = (Option<std::net::IpAddr>, String);

#[derive(Debug)]
pub struct Reservations {
    pool: Pool,
    pool6: Option<Pool6>,
    /// IPv6 subnets in use, like `subnets`.
    subnets6: BTreeMap<u128, u128>,
    /// Every subnet in use (live, being created, dying): start -> end, for O(log n) overlap
    /// checks.
    subnets: BTreeMap<u32, u32>,
    host_ifnames: HashSet<String>,
    /// Dying host links by ifindex.
    dying: HashMap<u32, Dying>,
    dying_names: HashSet<String>,
    /// Published ports by (protocol, host port): the host address (or every one) and the
    /// namespace. Released with the namespace's map elements, not with its link.
    ports: HashMap<(Proto, u16), Vec<PortHolder>>,
}

impl Reservations {
    pub fn new(pool: Pool, pool6: Option<Pool6>) -> Self {
        Reservations {
            pool,
            pool6,
            subnets6: BTreeMap::new(),
            subnets: BTreeMap::new(),
            host_ifnames: HashSet::new(),
            dying: HashMap::new(),
            dying_names: HashSet::new(),
            ports: HashMap::new(),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn pool6(&self) -> Option<&Pool6> {
        self.pool6.as_ref()
    }

    /// The IPv6 subnet a create gets: the one it asked for if nothing in use overlaps it, else
    /// the IPv6 pool's next free one if it wants one and there is a pool.
    pub fn choose_subnet6(
        &mut self,
        wanted: Option<Subnet6>,
        ipv6: bool,
    ) -> Result<Option<Subnet6>, ApiError> {
        if let Some(s) = wanted {
            if overlaps6(&self.subnets6, s) {
                return Err(ApiError::new(
                    ErrorCode::SubnetInUse,
                    format!("subnet6 {s} overlaps one in use"),
                ));
            }
            return Ok(Some(s));
        }
        let Some(pool) = self.pool6.as_mut().filter(|_| ipv6) else {
            return Ok(None);
        };
        let subnets = &self.subnets6;
        pool.allocate(|s| !overlaps6(subnets, s))
            .map(Some)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::PoolExhausted,
                    format!("no free /{} left in {}", pool.slot_prefix(), pool.base()),
                )
            })
    }

    /// The subnet a create gets: the one it asked for if nothing in use overlaps it, else the
    /// pool's next free one.
    pub fn choose_subnet(&mut self, wanted: Option<Subnet>) -> Result<Subnet, ApiError> {
        if let Some(s) = wanted {
            if overlaps(&self.subnets, s) {
                return Err(ApiError::new(
                    ErrorCode::SubnetInUse,
                    format!("subnet {s} overlaps one in use"),
                ));
            }
            return Ok(s);
        }
        let subnets = &self.subnets;
        self.pool
            .allocate(|s| !overlaps(subnets, s))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::PoolExhausted,
                    format!(
                        "no free /{} left in {}",
                        self.pool.slot_prefix(),
                        self.pool.base()
                    ),
                )
            })
    }

    /// Returns subnets [`Reservations::choose_subnet`] and [`Reservations::choose_subnet6`]
    /// took from the pools, unused.
    pub fn give_back(&mut self, subnet: Option<Subnet>, subnet6: Option<Subnet6>) {
        if let Some(s) = subnet {
            self.pool.release(s);
        }
        if let (Some(p), Some(s)) = (self.pool6.as_mut(), subnet6) {
            p.release(s);
        }
    }

    pub fn host_ifname_taken(&self, ifname: &str) -> bool {
        self.host_ifnames.contains(ifname)
    }

    /// Holds what `ns` uses.
    pub fn hold(&mut self, ns: &Namespace) {
        self.subnets.insert(ns.subnet.start(), ns.subnet.end());
        self.pool.mark(ns.subnet);
        if let Some(v6) = ns.v6 {
            self.subnets6.insert(v6.subnet6.start(), v6.subnet6.end());
            if let Some(p) = self.pool6.as_mut() {
                p.mark(v6.subnet6);
            }
        }
        self.host_ifnames.insert(ns.host_ifname.clone());
        self.hold_ports(ns);
    }

    /// Holds the published ports of `ns` (once more, if it already holds some of them: an
    /// update holds the new ones before it lets go of the old).
    pub fn hold_ports(&mut self, ns: &Namespace) {
        for p in &ns.conf.ports {
            self.ports
                .entry((p.proto, p.host_port))
                .or_default()
                .push((p.host_addr, ns.name.clone()));
        }
    }

    /// A published port of `ports` that another namespace than `name` already publishes (on the
    /// same address, or one of them on every address), and that namespace.
    pub fn port_conflict(&self, name: &str, ports: &[PortForward]) -> Option<(Listener, String)> {
        ports.iter().find_map(|p| {
            let taken = self.ports.get(&(p.proto, p.host_port))?;
            taken
                .iter()
                .find(|(addr, owner)| {
                    owner != name
                        && (addr.is_none() || p.host_addr.is_none() || *addr == p.host_addr)
                })
                .map(|(_, owner)| (p.listener(), owner.clone()))
        })
    }

    /// Frees the published ports of `ns` (its map elements are gone).
    pub fn release_ports(&mut self, ns: &Namespace) {
        for p in &ns.conf.ports {
            if let Some(v) = self.ports.get_mut(&(p.proto, p.host_port)) {
                if let Some(i) = v
                    .iter()
                    .position(|(addr, owner)| owner == &ns.name && *addr == p.host_addr)
                {
                    v.swap_remove(i);
                }
                if v.is_empty() {
                    self.ports.remove(&(p.proto, p.host_port));
                }
            }
        }
    }

    /// Frees a subnet and a host interface name (nothing in the kernel holds them any more).
    pub fn release(&mut self, subnet: Subnet, subnet6: Option<Subnet6>, host_ifname: &str) {
        self.subnets.remove(&subnet.start());
        self.pool.release(subnet);
        if let Some(s) = subnet6 {
            self.subnets6.remove(&s.start());
            if let Some(p) = self.pool6.as_mut() {
                p.release(s);
            }
        }
        self.host_ifnames.remove(host_ifname);
    }

    /// Keeps what `ns` used until the kernel reports its host link gone; its name too if
    /// `keep_name` (a create of that name then waits).
    pub fn start_dying(&mut self, ns: &Namespace, keep_name: bool) {
        if keep_name {
            self.dying_names.insert(ns.name.clone());
        }
        self.dying.insert(
            ns.host_ifindex,
            Dying {
                name: keep_name.then(|| ns.name.clone()),
                subnet: ns.subnet,
                subnet6: ns.v6.map(|v| v.subnet6),
                host_ifname: ns.host_ifname.clone(),
            },
        );
    }

    /// After a create that failed: what it used is free at once if it made no host link, else
    /// once the kernel has removed that link.
    pub fn failed(&mut self, ns: &Namespace, link_created: bool) {
        if link_created {
            self.start_dying(ns, false);
        } else {
            self.release(ns.subnet, ns.v6.map(|v| v.subnet6), &ns.host_ifname);
        }
    }

    /// Keeps what a discarded warm namespace used until the kernel reports its host link
    /// gone, and `name` with it: the create of `name` that needs its subnet waits for that.
    pub fn start_dying_for(&mut self, ns: &Namespace, name: &str) {
        self.start_dying(ns, false);
        self.dying_names.insert(name.to_string());
        if let Some(d) = self.dying.get_mut(&ns.host_ifindex) {
            d.name = Some(name.to_string());
        }
    }

    /// The kernel removed the link `ifindex`: frees what it held. Returns whether it was a
    /// dying one, and the name freed with it, if any.
    pub fn finish_dying(&mut self, ifindex: u32) -> Option<Option<String>> {
        let d = self.dying.remove(&ifindex)?;
        if let Some(n) = &d.name {
            self.dying_names.remove(n);
        }
        self.release(d.subnet, d.subnet6, &d.host_ifname);
        Some(d.name)
    }

    pub fn is_dying(&self, ifindex: u32) -> bool {
        self.dying.contains_key(&ifindex)
    }

    pub fn name_is_dying(&self, name: &str) -> bool {
        self.dying_names.contains(name)
    }

    /// Host links the kernel has not freed yet.
    pub fn dying(&self) -> usize {
        self.dying.len()
    }

    pub fn dying_ifindexes(&self) -> Vec<u32> {
        self.dying.keys().copied().collect()
    }
}

/// Whether `s` overlaps a subnet in use (start -> end, non-overlapping): only the one with the
/// greatest start at or below `s`'s end can, so this is O(log n).
fn overlaps(subnets: &BTreeMap<u32, u32>, s: Subnet) -> bool {
    subnets
        .range(..=s.end())
        .next_back()
        .is_some_and(|(_, end)| *end >= s.start())
}

fn overlaps6(subnets: &BTreeMap<u128, u128>, s: Subnet6) -> bool {
    subnets
        .range(..=s.end())
        .next_back()
        .is_some_and(|(_, end)| *end >= s.start())
}
