//! The netlink requests that wire one namespace, as data: built once per create, sent pipelined
//! by [`super::KernelDriver`]. Each carries the step name an error reports.

use crate::model::{Namespace, LO_IFINDEX, PEER_IFINDEX};
use crate::netlink::Request;
use crate::netns::NewNetns;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoKind, InfoVeth, LinkAttribute,
    LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{
    AddressMessageBuilder, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

/// A request and the step it performs (what an error message names).
pub type Step = (Request, &'static str);

/// How the veth ends are configured for IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Links {
    /// No link-local address, no DAD (docs/kernel.md#ipv6-address-generation-off).
    Off,
    /// The kernel's defaults: what the naive floor of the benchmark measures.
    KernelDefault,
}

/// No IPv6 link-local address and no DAD on our veth ends: the agent configures IPv4 only, and
/// address generation on thousands of veths is an O(N) cost in the kernel
/// (docs/kernel.md#ipv6-address-generation-off).
fn no_ipv6_autoconf() -> LinkAttribute {
    LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
        In6AddrGenMode::None,
    )])])
}

/// A permanent neighbour entry. Why: every namespace's traffic otherwise needs an ARP entry on
/// each side, and the kernel's neighbour table is one table for the whole host (gc_thresh3 =
/// 1024 by default): past about a thousand namespaces it overflows and drops packets. Permanent
/// entries are exempt from that limit, and no ARP exchange is needed at all
/// (docs/kernel.md#pinned-neighbours).
fn pinned_neighbour(ifindex: u32, ip: IpAddr, mac: [u8; 6]) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.ifindex = ifindex;
    m.header.state = NeighbourState::Permanent;
    let (family, dest) = match ip {
        IpAddr::V4(a) => (AddressFamily::Inet, NeighbourAddress::Inet(a)),
        IpAddr::V6(a) => (AddressFamily::Inet6, NeighbourAddress::Inet6(a)),
    };
    m.header.family = family;
    m.attributes.push(NeighbourAttribute::Destination(dest));
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    m
}

fn link_set(index: u32) -> LinkMessageBuilder<LinkUnspec> {
    LinkUnspec::new_with_index(index)
}

/// The veth pair, the peer born inside the new namespace (moving a link between namespaces
/// costs an RCU wait: docs/kernel.md#peer-born-in-the-namespace), both ends with the
/// ifindex and MAC the agent chose.
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

/// The host side, in two rounds: `[create the veth pair]`, then its configuration. (Configuring
/// by our chosen ifindex after a failed create could touch somebody else's link.)
pub fn host(ns: &Namespace, made: &NewNetns, ipv6: Ipv6Links) -> [Vec<Step>; 2] {
    let create = vec![(
        Request::create(RouteNetlinkMessage::NewLink(veth(ns, made))),
        "create veth pair",
    )];
    [create, host_configuration(ns, ipv6)]
}

/// The host veth's configuration, once the pair exists (also what a repair sends again).
pub fn host_configuration(ns: &Namespace, ipv6: Ipv6Links) -> Vec<Step> {
    let idx = ns.host_ifindex;
    let mut host_conf = link_set(idx).alias(ns.mark().to_string());
    if ipv6 == Ipv6Links::Off {
        host_conf = host_conf.append_extra_attribute(no_ipv6_autoconf());
    }
    let mut configure = vec![
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
                ns.address.into(),
                ns.macs().1,
            ))),
            "pin namespace neighbour",
        ),
    ];
    if let Some(v6) = ns.v6 {
        // A route, not an address: the host side needs no IPv6 address of its own (the
        // namespace reaches gateway6 through a pinned neighbour entry and the host forwards
        // what arrives), and an address costs four routes, MLD joins and their reports where
        // a route costs one; every IPv6 link event walks all of them
        // (docs/kernel.md#ipv6-on-the-host-veth-of-a-dual-stack-namespace).
        configure.extend([
            (
                Request::create(RouteNetlinkMessage::NewRoute(
                    RouteMessageBuilder::<Ipv6Addr>::new()
                        .destination_prefix(v6.subnet6.network, v6.subnet6.prefix)
                        .output_interface(idx)
                        .build(),
                )),
                "add IPv6 route to the namespace",
            ),
            (
                Request::create(RouteNetlinkMessage::NewNeighbour(pinned_neighbour(
                    idx,
                    v6.address6.into(),
                    ns.macs().1,
                ))),
                "pin IPv6 namespace neighbour",
            ),
        ]);
    }
    if let Some(bps) = ns.conf.bandwidth.and_then(|b| b.ingress_bps) {
        configure.push((super::tc::add(idx, bps), "limit ingress rate"));
    }
    configure
}

/// Inside the namespace, on its own socket.
pub fn inside(ns: &Namespace, ipv6: Ipv6Links) -> Vec<Step> {
    let mut peer_conf = link_set(PEER_IFINDEX);
    if ipv6 == Ipv6Links::Off {
        peer_conf = peer_conf.append_extra_attribute(no_ipv6_autoconf());
    }
    let mut steps = vec![
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
                ns.gateway.into(),
                ns.macs().0,
            ))),
            "pin gateway neighbour",
        ),
    ];
    if let Some(v6) = ns.v6 {
        steps.extend([
            (
                Request::create(RouteNetlinkMessage::NewAddress(address6(
                    PEER_IFINDEX,
                    v6.address6,
                    v6.subnet6.prefix,
                ))),
                "add IPv6 namespace address",
            ),
            (
                Request::create(RouteNetlinkMessage::NewRoute(
                    RouteMessageBuilder::<Ipv6Addr>::new()
                        .gateway(v6.gateway6)
                        .build(),
                )),
                "add IPv6 default route",
            ),
            (
                Request::create(RouteNetlinkMessage::NewNeighbour(pinned_neighbour(
                    PEER_IFINDEX,
                    v6.gateway6.into(),
                    ns.macs().0,
                ))),
                "pin IPv6 gateway neighbour",
            ),
        ]);
    }
    if let Some(bps) = ns.conf.bandwidth.and_then(|b| b.egress_bps) {
        steps.push((super::tc::add(PEER_IFINDEX, bps), "limit egress rate"));
    }
    steps
}

/// An IPv6 address without duplicate address detection: usable the moment it is added (the
/// agent chose it from a subnet only it hands out; a DAD wait made namespace setup take seconds
/// elsewhere: docs/kernel.md#ipv6-address-generation-off).
fn address6(
    ifindex: u32,
    addr: Ipv6Addr,
    prefix: u8,
) -> netlink_packet_route::address::AddressMessage {
    let mut m = AddressMessageBuilder::<Ipv6Addr>::new()
        .index(ifindex)
        .address(addr, prefix)
        .build();
    m.header.flags = AddressHeaderFlags::Nodad;
    m.attributes
        .push(AddressAttribute::Flags(AddressFlags::Nodad));
    m
}

/// Turns IPv6 off on a host-side veth before it comes up. Why: even without addresses, an
/// IPv6-enabled link adds a multicast route to the host's one IPv6 routing table and makes
/// every link state change walk that whole table (fib6_ifup/fib6_ifdown under rtnl_lock, seen
/// with perf): a per-namespace cost that grows with the number of namespaces
/// (docs/kernel.md#ipv6-disabled-on-the-host-veth). The host side only ever carries the namespace's
/// IPv4 gateway address. procfs is the kernel's only switch for this per device (netlink's
/// IFLA_INET6 attributes cannot set it).
pub fn disable_ipv6(ifname: &str) {
    let path = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    if let Err(e) = std::fs::write(&path, b"1") {
        // No IPv6 in this kernel, or the device is already gone: nothing to save.
        tracing::debug!(ifname, error = %e, "disable_ipv6");
    }
}

/// Gives the new namespace the id `id` in the host's table of namespace ids (`ip netns set`),
/// before anything about its veth is built: the kernel finds a namespace's id by walking that
/// table in id order, once for every message about a host veth, so an id below every other
/// one makes those walks short (docs/kernel.md#namespace-ids-handed-out-downwards).
pub fn nsid(made: &NewNetns, id: i32) -> Request {
    let mut m = NsidMessage::default();
    m.attributes
        .push(NsidAttribute::Fd(made.fd.as_raw_fd() as u32));
    m.attributes.push(NsidAttribute::Id(id));
    Request::create(RouteNetlinkMessage::NewNsId(m))
}

/// Sets the host veth's ownership mark (it says whether the namespace has NAT).
pub fn mark(ns: &Namespace) -> Request {
    Request::change(RouteNetlinkMessage::SetLink(
        link_set(ns.host_ifindex)
            .alias(ns.mark().to_string())
            .build(),
    ))
}

/// Deletes the host veth's IPv4 gateway address.
pub fn delete_address(ns: &Namespace) -> Request {
    let msg = AddressMessageBuilder::<Ipv4Addr>::new()
        .index(ns.host_ifindex)
        .address(ns.gateway, ns.subnet.prefix)
        .build();
    Request::change(RouteNetlinkMessage::DelAddress(msg))
}

/// A request to delete a link by index.
pub fn delete_link(ifindex: u32) -> Request {
    let mut msg = LinkMessage::default();
    msg.header.index = ifindex;
    Request::change(RouteNetlinkMessage::DelLink(msg))
}

/// A request that only asks whether a link exists.
pub fn get_link(ifindex: u32) -> Request {
    let mut msg = LinkMessage::default();
    msg.header.index = ifindex;
    Request::change(RouteNetlinkMessage::GetLink(msg))
}
