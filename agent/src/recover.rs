//! Start-up recovery: the kernel is the source of truth. The agent's view is rebuilt from a
//! link dump, an address dump and the netns directory alone; nothing is read from a state file.
//!
//! Ownership marks: the host veth's ifalias `nsagent:<name>` (`nsagent:<name>:nonat` without
//! NAT), and the ifalias of `lo` inside the namespace, set before its netns file exists, so a
//! namespace left half-built by a crash is recognisable too.

use crate::model::{self, Namespace, Subnet};
use crate::netlink::{NetlinkError, Rtnl};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

pub const ALIAS_PREFIX: &str = "nsagent:";

/// Parses an ownership mark: (name, nat).
pub fn parse_alias(alias: &str) -> Option<(String, bool)> {
    let rest = alias.strip_prefix(ALIAS_PREFIX)?;
    let (name, nat) = match rest.strip_suffix(":nonat") {
        Some(n) => (n, false),
        None => (rest, true),
    };
    model::validate_name(name).ok()?;
    Some((name.to_string(), nat))
}

/// A link as the dumps show it.
#[derive(Debug, Clone, Default)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub alias: Option<String>,
    pub mtu: u32,
    pub up: bool,
}

pub fn links(rtnl: &mut Rtnl) -> Result<Vec<LinkInfo>, NetlinkError> {
    let msgs = rtnl.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => {
                let mut info = LinkInfo {
                    index: l.header.index,
                    up: l.header.flags.contains(LinkFlags::Up),
                    ..Default::default()
                };
                for a in l.attributes {
                    match a {
                        LinkAttribute::IfName(n) => info.name = n,
                        LinkAttribute::IfAlias(a) => info.alias = Some(a),
                        LinkAttribute::Mtu(m) => info.mtu = m,
                        _ => {}
                    }
                }
                Some(info)
            }
            _ => None,
        })
        .collect())
}

/// IPv4 addresses by ifindex: (address, prefix length).
pub fn addresses(rtnl: &mut Rtnl) -> Result<HashMap<u32, Vec<(Ipv4Addr, u8)>>, NetlinkError> {
    let mut req = AddressMessage::default();
    req.header.family = AddressFamily::Inet;
    let mut out: HashMap<u32, Vec<(Ipv4Addr, u8)>> = HashMap::new();
    for m in rtnl.dump(RouteNetlinkMessage::GetAddress(req))? {
        if let RouteNetlinkMessage::NewAddress(a) = m {
            for attr in &a.attributes {
                if let AddressAttribute::Local(IpAddr::V4(ip)) = attr {
                    out.entry(a.header.index)
                        .or_default()
                        .push((*ip, a.header.prefix_len));
                }
            }
        }
    }
    Ok(out)
}

/// The main table's IPv4 default route.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultRoute {
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
}

pub fn default_route(rtnl: &mut Rtnl) -> Result<Option<DefaultRoute>, NetlinkError> {
    let mut req = RouteMessage::default();
    req.header.address_family = AddressFamily::Inet;
    for m in rtnl.dump(RouteNetlinkMessage::GetRoute(req))? {
        if let RouteNetlinkMessage::NewRoute(r) = m {
            if r.header.destination_prefix_length == 0 && r.header.table == 254 {
                let mut route = DefaultRoute::default();
                for a in &r.attributes {
                    match a {
                        RouteAttribute::Gateway(RouteAddress::Inet(g)) => route.gateway = Some(*g),
                        RouteAttribute::Oif(i) => route.oif = Some(*i),
                        _ => {}
                    }
                }
                return Ok(Some(route));
            }
        }
    }
    Ok(None)
}

/// The gateway of the main table's IPv4 default route, if any.
pub fn default_gateway(rtnl: &mut Rtnl) -> Result<Option<Ipv4Addr>, NetlinkError> {
    Ok(default_route(rtnl)?.and_then(|r| r.gateway))
}

#[derive(Debug, Clone)]
pub struct Peer {
    pub name: String,
    pub up: bool,
    pub mtu: u32,
    pub addr: Option<(Ipv4Addr, u8)>,
}

/// What a managed namespace looks like from inside.
pub struct Inside {
    pub lo_alias: Option<String>,
    pub lo_up: bool,
    /// The veth peer (ifindex 2).
    pub peer: Option<Peer>,
    pub gateway: Option<Ipv4Addr>,
}

pub fn inside(rtnl: &mut Rtnl) -> Result<Inside, NetlinkError> {
    let links = links(rtnl)?;
    let addrs = addresses(rtnl)?;
    let lo = links.iter().find(|l| l.index == 1);
    let peer = links.iter().find(|l| l.index == 2).map(|l| Peer {
        name: l.name.clone(),
        up: l.up,
        mtu: l.mtu,
        addr: addrs.get(&2).and_then(|v| v.first().copied()),
    });
    Ok(Inside {
        lo_alias: lo.and_then(|l| l.alias.clone()),
        lo_up: lo.is_some_and(|l| l.up),
        peer,
        gateway: default_gateway(rtnl)?,
    })
}

/// Decides whether a host veth plus what is inside its namespace make a whole namespace, and
/// rebuilds its `Namespace` if so.
pub fn whole(
    name: &str,
    nat: bool,
    host: &LinkInfo,
    host_addr: Option<(Ipv4Addr, u8)>,
    inside: &Inside,
    netns_dir: &std::path::Path,
) -> Option<Namespace> {
    let (gateway, prefix) = host_addr?;
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
        name: name.to_string(),
        netns_path: netns_dir.join(name).to_string_lossy().into_owned(),
        host_ifname: host.name.clone(),
        ns_ifname: peer.name,
        subnet,
        gateway: gw,
        address: addr,
        nat,
        mtu: (peer.mtu != 1500 && peer.mtu != 0).then_some(peer.mtu),
        host_ifindex: host.index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases() {
        assert_eq!(parse_alias("nsagent:a-1"), Some(("a-1".into(), true)));
        assert_eq!(
            parse_alias("nsagent:a-1:nonat"),
            Some(("a-1".into(), false))
        );
        assert_eq!(parse_alias("nsagent:../x"), None);
        assert_eq!(parse_alias("other:a"), None);
    }

    fn inside_ok() -> Inside {
        Inside {
            lo_alias: Some("nsagent:a".into()),
            lo_up: true,
            peer: Some(Peer {
                name: "eth0".into(),
                up: true,
                mtu: 1500,
                addr: Some(("100.64.0.2".parse().unwrap(), 30)),
            }),
            gateway: Some("100.64.0.1".parse().unwrap()),
        }
    }

    fn host() -> LinkInfo {
        LinkInfo {
            index: 7,
            name: "nsv64400000".into(),
            alias: Some("nsagent:a".into()),
            mtu: 1500,
            up: true,
        }
    }

    #[test]
    fn whole_namespaces_are_rebuilt() {
        let dir = std::path::Path::new("/run/netns");
        let ns = whole(
            "a",
            true,
            &host(),
            Some(("100.64.0.1".parse().unwrap(), 30)),
            &inside_ok(),
            dir,
        )
        .unwrap();
        assert_eq!(ns.subnet.to_string(), "100.64.0.0/30");
        assert_eq!(ns.address.to_string(), "100.64.0.2");
        assert_eq!(ns.host_ifindex, 7);
        assert_eq!(ns.mtu, None);
    }

    #[test]
    fn half_built_ones_are_not() {
        let dir = std::path::Path::new("/run/netns");
        let gw = Some(("100.64.0.1".parse().unwrap(), 30));
        assert!(whole("a", true, &host(), None, &inside_ok(), dir).is_none());
        let mut i = inside_ok();
        i.gateway = None;
        assert!(whole("a", true, &host(), gw, &i, dir).is_none());
        let mut i = inside_ok();
        i.peer = None;
        assert!(whole("a", true, &host(), gw, &i, dir).is_none());
        let mut h = host();
        h.up = false;
        assert!(whole("a", true, &h, gw, &inside_ok(), dir).is_none());
    }
}
