//! A synchronous, pipelined rtnetlink socket.
//!
//! The messages are built with rtnetlink's builders; sending is done here, synchronously, on the
//! executor thread, because (a) the socket must be created while the thread sits inside a new
//! network namespace and nothing may be awaited while it does, and (b) a batch wants many requests
//! in flight on one socket and their acks matched back by sequence number, which is a few lines
//! of code with a plain socket.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
pub enum NetlinkError {
    #[error("{text} (errno {errno})")]
    Errno { errno: i32, text: String },
    /// An I/O error without an errno (shared: one failed send fails every request it carried).
    #[error("netlink socket: {0}")]
    Io(#[source] Arc<io::Error>),
    #[error("malformed netlink reply")]
    Decode,
    #[error("dump kept being interrupted")]
    DumpInterrupted,
}

impl NetlinkError {
    pub fn errno(errno: i32) -> Self {
        NetlinkError::Errno {
            errno,
            text: io::Error::from_raw_os_error(errno).to_string(),
        }
    }
    fn io(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(n) => NetlinkError::errno(n),
            None => NetlinkError::Io(Arc::new(e)),
        }
    }
}

/// What a request asks the kernel to do: decides its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Create, failing if it exists.
    Create,
    /// Change something that exists.
    Change,
    /// Create, or replace what exists.
    Replace,
}

pub struct Request {
    pub kind: Kind,
    pub msg: RouteNetlinkMessage,
}

impl Request {
    pub fn create(msg: RouteNetlinkMessage) -> Self {
        Request {
            kind: Kind::Create,
            msg,
        }
    }
    pub fn change(msg: RouteNetlinkMessage) -> Self {
        Request {
            kind: Kind::Change,
            msg,
        }
    }
    pub fn replace(msg: RouteNetlinkMessage) -> Self {
        Request {
            kind: Kind::Replace,
            msg,
        }
    }
}

pub struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// Receive buffers: the kernel sizes dump datagrams to what the reader has been taking (up to
/// 32 KiB), so a smaller buffer costs more datagrams, never truncated ones.
const HOST_BUFFER: usize = 64 << 10;
const NAMESPACE_BUFFER: usize = 16 << 10;
/// A link dump holds RTNL while it fills each datagram, and with thousands of namespaces each
/// link costs the kernel a walk (docs/kernel.md#the-host-veth-seen-from-inside): page-sized
/// datagrams of a few links each let every other RTNL user in between.
const BACKGROUND_BUFFER: usize = 4 << 10;

/// Largest datagram we send: several requests share one datagram, the kernel handles them in order.
const SEND_CHUNK: usize = 32 * 1024;

impl Rtnl {
    /// Opens a socket in the calling thread's current network namespace.
    pub fn open() -> Result<Self, NetlinkError> {
        Self::open_with(HOST_BUFFER)
    }

    /// A socket inside a namespace: its replies are acks and small dumps, and a batch opens
    /// one per namespace (128 of 64 KiB buffers were 8 MiB of the agent's peak memory).
    pub fn open_small() -> Result<Self, NetlinkError> {
        Self::open_with(NAMESPACE_BUFFER)
    }

    /// A socket for a dump that runs beside the agent's work (start-up's orphan sweep).
    pub fn open_background() -> Result<Self, NetlinkError> {
        Self::open_with(BACKGROUND_BUFFER)
    }

    fn open_with(buffer: usize) -> Result<Self, NetlinkError> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::io)?;
        sock.bind_auto().map_err(NetlinkError::io)?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::io)?;
        // Acks need not echo our requests back.
        sock.set_cap_ack(true).map_err(NetlinkError::io)?;
        // Room for the acks of a whole pipelined batch.
        sock.set_rx_buf_sz(4 << 20).map_err(NetlinkError::io)?;
        Ok(Rtnl {
            sock,
            seq: 0,
            buf: vec![0; buffer],
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Sends every request, pipelined, then reads every ack. One result per request, in order.
    /// Requests are independent as far as the kernel is concerned; a caller that groups several
    /// requests for one object sees later ones fail once an earlier one did.
    pub fn pipeline(&mut self, reqs: Vec<Request>) -> Vec<Result<(), NetlinkError>> {
        let n = reqs.len();
        let mut results: Vec<Option<Result<(), NetlinkError>>> = vec![None; n];
        if n == 0 {
            return vec![];
        }
        let first = self.seq.wrapping_add(1).max(1);
        let mut out = Vec::with_capacity(SEND_CHUNK);
        let mut seqs = Vec::with_capacity(n);
        for req in reqs {
            let mut header = NetlinkHeader::default();
            header.flags = NLM_F_REQUEST | NLM_F_ACK;
            match req.kind {
                Kind::Create => header.flags |= NLM_F_CREATE | NLM_F_EXCL,
                Kind::Replace => header.flags |= NLM_F_CREATE | NLM_F_REPLACE,
                Kind::Change => {}
            }
            let seq = self.next_seq();
            header.sequence_number = seq;
            seqs.push(seq);
            let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(req.msg));
            msg.finalize();
            let len = msg.buffer_len();
            if out.len() + len > SEND_CHUNK && !out.is_empty() {
                if let Err(e) = self.sock.send(&out, 0) {
                    return vec![Err(NetlinkError::io(e)); n];
                }
                out.clear();
            }
            let at = out.len();
            out.resize(at + len, 0);
            msg.serialize(&mut out[at..]);
        }
        if !out.is_empty() {
            if let Err(e) = self.sock.send(&out, 0) {
                return vec![Err(NetlinkError::io(e)); n];
            }
        }
        let mut remaining = n;
        let index_of = |seq: u32| -> Option<usize> {
            let i = seq.wrapping_sub(first) as usize;
            (i < n && seqs[i] == seq).then_some(i)
        };
        while remaining > 0 {
            let len = match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(l) => l,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let err = NetlinkError::io(e);
                    return results
                        .into_iter()
                        .map(|r| r.unwrap_or_else(|| Err(err.clone())))
                        .collect();
                }
            };
            for msg in messages(&self.buf[..len]).map_while(Result::ok) {
                if let NetlinkPayload::Error(e) = &msg.payload {
                    if let Some(i) = index_of(msg.header.sequence_number) {
                        if results[i].is_none() {
                            remaining -= 1;
                            results[i] = Some(match e.code {
                                None => Ok(()),
                                Some(code) => Err(NetlinkError::errno(-code.get())),
                            });
                        }
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(NetlinkError::Decode)))
            .collect()
    }

    /// A dump (links, addresses, routes). Interrupted dumps (the set changed while it was being
    /// read, NLM_F_DUMP_INTR) are retried, never trusted.
    pub fn dump(
        &mut self,
        req: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.dump_map(req, Some)
    }

    /// Sends one request with these flags; returns its sequence number.
    fn send_one(&mut self, req: RouteNetlinkMessage, flags: u16) -> Result<u32, NetlinkError> {
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        let seq = self.next_seq();
        header.sequence_number = seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(req));
        msg.finalize();
        let mut out = vec![0; msg.buffer_len()];
        msg.serialize(&mut out);
        self.sock.send(&out, 0).map_err(NetlinkError::io)?;
        Ok(seq)
    }

    /// A dump whose messages are turned into what the caller keeps as they arrive: a dump of
    /// 30,000 links never exists as 30,000 parsed messages at once.
    pub fn dump_map<T>(
        &mut self,
        req: RouteNetlinkMessage,
        keep: impl FnMut(RouteNetlinkMessage) -> Option<T>,
    ) -> Result<Vec<T>, NetlinkError> {
        self.dump_tries(req, keep, true)
    }

    fn dump_tries<T>(
        &mut self,
        req: RouteNetlinkMessage,
        mut keep: impl FnMut(RouteNetlinkMessage) -> Option<T>,
        settled: bool,
    ) -> Result<Vec<T>, NetlinkError> {
        for _ in 0..10 {
            let seq = self.send_one(req.clone(), NLM_F_REQUEST | NLM_F_DUMP)?;
            let mut items = vec![];
            let mut interrupted = false;
            'recv: loop {
                let len = self
                    .sock
                    .recv(&mut &mut self.buf[..], 0)
                    .map_err(NetlinkError::io)?;
                for msg in messages(&self.buf[..len]) {
                    let msg = msg?;
                    if msg.header.sequence_number != seq {
                        continue;
                    }
                    if msg.header.flags & NLM_F_DUMP_INTR != 0 {
                        interrupted = true;
                    }
                    match msg.payload {
                        NetlinkPayload::Done(_) => break 'recv,
                        NetlinkPayload::Error(e) => {
                            if let Some(code) = e.code {
                                return Err(NetlinkError::errno(-code.get()));
                            }
                            break 'recv;
                        }
                        NetlinkPayload::InnerMessage(m) => items.extend(keep(m)),
                        _ => {}
                    }
                }
            }
            if !interrupted || !settled {
                return Ok(items);
            }
        }
        Err(NetlinkError::DumpInterrupted)
    }

    /// Whether `addr` is one of the namespace's own addresses: the kernel's route lookup for it
    /// (`ip route get`) says `local`. One request, whatever the number of addresses.
    pub fn is_local(&mut self, addr: IpAddr) -> Result<bool, NetlinkError> {
        let mut req = RouteMessage::default();
        let (family, len, dst) = match addr {
            IpAddr::V4(a) => (AddressFamily::Inet, 32, RouteAddress::Inet(a)),
            IpAddr::V6(a) => (AddressFamily::Inet6, 128, RouteAddress::Inet6(a)),
        };
        req.header.address_family = family;
        req.header.destination_prefix_length = len;
        req.attributes.push(RouteAttribute::Destination(dst));
        Ok(match self.get(RouteNetlinkMessage::GetRoute(req)) {
            Ok(RouteNetlinkMessage::NewRoute(r)) => r.header.kind == RouteType::Local,
            // No route at all (e.g. an unreachable IPv6 address): not local.
            Err(NetlinkError::Errno { .. }) => false,
            Ok(_) => return Err(NetlinkError::Decode),
            Err(e) => return Err(e),
        })
    }

    /// One request answered by one message (a `get` without `NLM_F_DUMP`); the kernel's error
    /// as `NetlinkError::Errno`.
    fn get(&mut self, req: RouteNetlinkMessage) -> Result<RouteNetlinkMessage, NetlinkError> {
        let seq = self.send_one(req, NLM_F_REQUEST)?;
        loop {
            let len = self
                .sock
                .recv(&mut &mut self.buf[..], 0)
                .map_err(NetlinkError::io)?;
            for msg in messages(&self.buf[..len]) {
                let msg = msg?;
                if msg.header.sequence_number != seq {
                    continue;
                }
                return match msg.payload {
                    NetlinkPayload::InnerMessage(m) => Ok(m),
                    NetlinkPayload::Error(e) => match e.code {
                        Some(code) => Err(NetlinkError::errno(-code.get())),
                        None => Err(NetlinkError::Decode),
                    },
                    _ => Err(NetlinkError::Decode),
                };
            }
        }
    }

    /// One link by ifindex; `None` if there is none. One request, not a dump: dumping the host's
    /// links costs the kernel O(N²) with N namespaces (docs/kernel.md#the-host-veth-seen-from-inside).
    pub fn link(&mut self, index: u32) -> Result<Option<LinkInfo>, NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.get_link(msg)
    }

    /// One link of the namespace that has id `nsid` here (`IFLA_TARGET_NETNSID`), by ifindex.
    /// Asked from inside a namespace about its own host veth, the kernel finds the veth's peer
    /// namespace id in that namespace's own short id table, not in the host's
    /// (docs/kernel.md#the-host-veth-seen-from-inside).
    pub fn link_in(&mut self, nsid: i32, index: u32) -> Result<Option<LinkInfo>, NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::IfNetnsId(nsid));
        self.get_link(msg)
    }

    fn get_link(&mut self, msg: LinkMessage) -> Result<Option<LinkInfo>, NetlinkError> {
        match self.get(RouteNetlinkMessage::GetLink(msg)) {
            Ok(RouteNetlinkMessage::NewLink(l)) => Ok(Some(LinkInfo::from(l))),
            Ok(_) => Err(NetlinkError::Decode),
            Err(NetlinkError::Errno { errno, .. }) if errno == libc::ENODEV => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link of the socket's namespace.
    pub fn links(&mut self) -> Result<Vec<LinkInfo>, NetlinkError> {
        self.dump_map(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            |m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(LinkInfo::from(l)),
                _ => None,
            },
        )
    }

    /// Every link, in one pass even if links changed meanwhile (then some may be missing or
    /// stale): for a caller that checks what it acts on, and whose dump would otherwise be
    /// interrupted again and again by the agent's own creates.
    pub fn links_unsettled(&mut self) -> Result<Vec<LinkInfo>, NetlinkError> {
        self.dump_tries(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            |m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(LinkInfo::from(l)),
                _ => None,
            },
            false,
        )
    }

    /// Addresses of one family by ifindex: (address, prefix length).
    fn addresses_of<A>(
        &mut self,
        family: AddressFamily,
        pick: impl Fn(&AddressAttribute) -> Option<A>,
    ) -> Result<HashMap<u32, Vec<(A, u8)>>, NetlinkError> {
        let mut req = AddressMessage::default();
        req.header.family = family;
        let found = self.dump_map(RouteNetlinkMessage::GetAddress(req), |m| match m {
            RouteNetlinkMessage::NewAddress(a) => {
                let ip = a.attributes.iter().find_map(&pick)?;
                Some((a.header.index, ip, a.header.prefix_len))
            }
            _ => None,
        })?;
        let mut out: HashMap<u32, Vec<(A, u8)>> = HashMap::new();
        for (index, ip, len) in found {
            out.entry(index).or_default().push((ip, len));
        }
        Ok(out)
    }

    /// IPv4 addresses by ifindex: (address, prefix length).
    pub fn addresses(&mut self) -> Result<HashMap<u32, Vec<(Ipv4Addr, u8)>>, NetlinkError> {
        self.addresses_of(AddressFamily::Inet, |a| match a {
            AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        })
    }

    /// IPv6 addresses by ifindex: (address, prefix length).
    pub fn addresses6(&mut self) -> Result<HashMap<u32, Vec<(Ipv6Addr, u8)>>, NetlinkError> {
        self.addresses_of(AddressFamily::Inet6, |a| match a {
            AddressAttribute::Address(IpAddr::V6(ip)) => Some(*ip),
            _ => None,
        })
    }

    /// The main table's routes of one family, each turned into what the caller keeps.
    fn main_routes<T>(
        &mut self,
        family: AddressFamily,
        keep: impl Fn(&RouteMessage) -> Option<T>,
    ) -> Result<Vec<T>, NetlinkError> {
        let mut req = RouteMessage::default();
        req.header.address_family = family;
        self.dump_map(RouteNetlinkMessage::GetRoute(req), |m| match m {
            RouteNetlinkMessage::NewRoute(r) if r.header.table == MAIN_TABLE => keep(&r),
            _ => None,
        })
    }

    /// The main table's IPv6 routes that are not the default route, by output interface:
    /// (destination, prefix length).
    pub fn routes6(&mut self) -> Result<HashMap<u32, Vec<(Ipv6Addr, u8)>>, NetlinkError> {
        let found = self.main_routes(AddressFamily::Inet6, |r| {
            let len = r.header.destination_prefix_length;
            let mut dst = None;
            let mut oif = None;
            for a in &r.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet6(d)) => dst = Some(*d),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    _ => {}
                }
            }
            (len > 0).then_some((oif?, dst?, len))
        })?;
        let mut out: HashMap<u32, Vec<(Ipv6Addr, u8)>> = HashMap::new();
        for (oif, dst, len) in found {
            out.entry(oif).or_default().push((dst, len));
        }
        Ok(out)
    }

    /// The ids this namespace has given other namespaces (`ip netns list-id`).
    pub fn nsids(&mut self) -> Result<Vec<i32>, NetlinkError> {
        self.dump_map(
            RouteNetlinkMessage::GetNsId(NsidMessage::default()),
            |m| match m {
                RouteNetlinkMessage::NewNsId(n) => n.attributes.iter().find_map(|a| match a {
                    NsidAttribute::Id(id) => Some(*id),
                    _ => None,
                }),
                _ => None,
            },
        )
    }

    /// The gateway of the main table's IPv6 default route, if any.
    pub fn default_gateway6(&mut self) -> Result<Option<Ipv6Addr>, NetlinkError> {
        let found = self.main_routes(AddressFamily::Inet6, |r| {
            (r.header.destination_prefix_length == 0).then_some(())?;
            r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet6(g)) => Some(*g),
                _ => None,
            })
        })?;
        Ok(found.into_iter().next())
    }

    /// The main table's IPv4 default route, if any.
    pub fn default_route(&mut self) -> Result<Option<DefaultRoute>, NetlinkError> {
        let found = self.main_routes(AddressFamily::Inet, |r| {
            (r.header.destination_prefix_length == 0).then_some(())?;
            let mut route = DefaultRoute::default();
            for a in &r.attributes {
                match a {
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => route.gateway = Some(*g),
                    RouteAttribute::Oif(i) => route.oif = Some(*i),
                    _ => {}
                }
            }
            Some(route)
        })?;
        Ok(found.into_iter().next())
    }

    /// The name of the default route's interface, if there is one.
    pub fn default_route_interface(&mut self) -> Result<Option<String>, NetlinkError> {
        let Some(oif) = self.default_route()?.and_then(|r| r.oif) else {
            return Ok(None);
        };
        Ok(self.link(oif)?.map(|l| l.name))
    }
}

/// RT_TABLE_MAIN.
const MAIN_TABLE: u8 = 254;

/// A link as a dump shows it.
#[derive(Debug, Clone, Default)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub alias: Option<String>,
    pub mtu: u32,
    pub up: bool,
    /// The peer's ifindex (IFLA_LINK) of a veth, in the peer's namespace.
    pub link: Option<u32>,
    /// The id of the peer's namespace (IFLA_LINK_NETNSID), if it is another one.
    pub link_netnsid: Option<i32>,
}

impl From<LinkMessage> for LinkInfo {
    fn from(l: LinkMessage) -> Self {
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
                LinkAttribute::Link(i) => info.link = Some(i),
                LinkAttribute::LinkNetNsId(i) => info.link_netnsid = Some(i),
                _ => {}
            }
        }
        info
    }
}

/// The main table's IPv4 default route.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultRoute {
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
}

/// The netlink messages of one datagram, in order; an undecodable one ends the walk.
fn messages(
    buf: &[u8],
) -> impl Iterator<Item = Result<NetlinkMessage<RouteNetlinkMessage>, NetlinkError>> + '_ {
    let mut off = 0;
    std::iter::from_fn(move || {
        if off >= buf.len() {
            return None;
        }
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..]);
        match msg {
            Ok(m) if m.header.length > 0 => {
                off += (m.header.length as usize + 3) & !3;
                Some(Ok(m))
            }
            _ => {
                off = buf.len();
                Some(Err(NetlinkError::Decode))
            }
        }
    })
}

/// (type, value) of each netlink attribute in `buf` (nested ones included: pass their value);
/// a malformed one ends the walk. For the families whose attributes the netlink crates do not
/// parse (ctnetlink, tc options of kinds they do not know).
pub(crate) fn attributes(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        // Without NLA_F_NESTED and NLA_F_NET_BYTEORDER.
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            return None;
        }
        let value = &buf[4..len];
        buf = &buf[((len + 3) & !3).min(buf.len())..];
        Some((ty, value))
    })
}

/// A socket subscribed to link notifications in the host namespace, read without blocking.
pub struct LinkEvents {
    sock: Socket,
    buf: Vec<u8>,
}

pub enum LinkEvent {
    Deleted(u32),
    /// The kernel dropped notifications (socket overrun): the caller must resynchronise.
    Lost,
}

const RTNLGRP_LINK: u32 = 1;

impl LinkEvents {
    pub fn open() -> Result<Self, NetlinkError> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::io)?;
        sock.bind(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::io)?;
        sock.add_membership(RTNLGRP_LINK)
            .map_err(NetlinkError::io)?;
        sock.set_rx_buf_sz(8 << 20).map_err(NetlinkError::io)?;
        sock.set_non_blocking(true).map_err(NetlinkError::io)?;
        Ok(LinkEvents {
            sock,
            buf: vec![0; 1 << 16],
        })
    }

    /// Everything queued so far; never blocks.
    pub fn drain(&mut self) -> Vec<LinkEvent> {
        let mut events = vec![];
        loop {
            let len = match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(l) => l,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // ENOBUFS: notifications were lost. Whatever the error, the caller
                    // resynchronises; reading on could spin on a persistent error.
                    events.push(LinkEvent::Lost);
                    break;
                }
            };
            for msg in messages(&self.buf[..len]).map_while(Result::ok) {
                if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) = msg.payload {
                    events.push(LinkEvent::Deleted(l.header.index));
                }
            }
        }
        events
    }
}
