//! Forgetting a namespace's connections: every conntrack entry that involves one of its
//! addresses is deleted over ctnetlink when the namespace goes, so that the next namespace to
//! get that address does not inherit stale NAT state (docs/kernel.md#conntrack-after-deletion).
//!
//! The kernel's flush cannot filter by address, so this dumps the table once per batch and
//! deletes the matching entries by their original tuple, pipelined on one socket.

use super::Conns;
use crate::netlink::{attributes as attrs, NetlinkError};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const NLA_F_NESTED: u16 = 0x8000;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const HEADER: usize = 16 + 4; // nlmsghdr + nfgenmsg

/// One entry to delete: its original tuple and zone, as the kernel gave them.
struct Entry {
    family: u8,
    orig: Vec<u8>,
    zone: Option<Vec<u8>>,
}

pub struct Conntrack {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

fn io_err(e: io::Error) -> NetlinkError {
    match e.raw_os_error() {
        Some(n) => NetlinkError::errno(n),
        None => NetlinkError::Io(std::sync::Arc::new(e)),
    }
}

impl Conntrack {
    pub fn open() -> Result<Self, NetlinkError> {
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(io_err)?;
        sock.bind_auto().map_err(io_err)?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(io_err)?;
        sock.set_rx_buf_sz(4 << 20).map_err(io_err)?;
        Ok(Conntrack {
            sock,
            seq: 0,
            buf: vec![0; 1 << 16],
        })
    }

    /// Deletes every entry that matches one of `conns`: [`Conns::Of`] an address in its
    /// original or reply tuple, as source or destination; [`Conns::To`] a service, as the
    /// source of its reply tuple. Returns how many were deleted.
    pub fn forget(&mut self, conns: &[Conns]) -> Result<usize, NetlinkError> {
        if conns.is_empty() {
            return Ok(0);
        }
        // One dump of every family (AF_UNSPEC): the cost of a dump is its walk of the
        // kernel's whole hash table, ~5 ms here even when it is empty
        // (docs/kernel.md#a-conntrack-dump-walks-every-bucket).
        let doomed = self.dump(libc::AF_UNSPEC as u8, conns)?;
        self.delete(&doomed)
    }

    fn message(&mut self, msg: u16, flags: u16, family: u8, attrs: &[u8]) -> (Vec<u8>, u32) {
        self.seq = self.seq.wrapping_add(1).max(1);
        let len = HEADER + attrs.len();
        let mut m = Vec::with_capacity(len);
        m.extend((len as u32).to_ne_bytes());
        m.extend((NFNL_SUBSYS_CTNETLINK << 8 | msg).to_ne_bytes());
        m.extend(flags.to_ne_bytes());
        m.extend(self.seq.to_ne_bytes());
        m.extend(0u32.to_ne_bytes());
        m.extend([family, 0, 0, 0]); // nfgenmsg: family, NFNETLINK_V0, res_id
        m.extend_from_slice(attrs);
        (m, self.seq)
    }

    fn dump(&mut self, family: u8, wanted: &[Conns]) -> Result<Vec<Entry>, NetlinkError> {
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
        let (req, seq) = self.message(IPCTNL_MSG_CT_GET, flags, family, &[]);
        self.sock.send(&req, 0).map_err(io_err)?;
        let mut out = vec![];
        loop {
            let len = self.sock.recv(&mut &mut self.buf[..], 0).map_err(io_err)?;
            for (ty, mseq, body) in messages(&self.buf[..len]) {
                if mseq != seq {
                    continue;
                }
                match ty {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let errno = error_of(body);
                        if errno != 0 {
                            return Err(NetlinkError::errno(errno));
                        }
                        return Ok(out);
                    }
                    _ => {
                        if let Some(e) = entry(body, wanted) {
                            out.push(e);
                        }
                    }
                }
            }
        }
    }

    fn delete(&mut self, doomed: &[Entry]) -> Result<usize, NetlinkError> {
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
        let mut pending = HashSet::new();
        let mut batch = vec![];
        for e in doomed {
            let mut attrs = attr(CTA_TUPLE_ORIG | NLA_F_NESTED, &e.orig);
            if let Some(z) = &e.zone {
                attrs.extend(attr(CTA_ZONE, z));
            }
            let (m, seq) = self.message(IPCTNL_MSG_CT_DELETE, flags, e.family, &attrs);
            pending.insert(seq);
            batch.extend(m);
            if batch.len() > 32 << 10 {
                self.sock.send(&batch, 0).map_err(io_err)?;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            self.sock.send(&batch, 0).map_err(io_err)?;
        }
        let mut deleted = 0;
        while !pending.is_empty() {
            let len = self.sock.recv(&mut &mut self.buf[..], 0).map_err(io_err)?;
            for (ty, seq, body) in messages(&self.buf[..len]) {
                if ty == NLMSG_ERROR && pending.remove(&seq) {
                    match error_of(body) {
                        0 => deleted += 1,
                        // Gone already (timed out, or deleted with another entry).
                        libc::ENOENT => {}
                        errno => tracing::debug!(errno, "conntrack delete"),
                    }
                }
            }
        }
        Ok(deleted)
    }
}

/// An attribute: length, type, value, padded to 4 bytes.
fn attr(ty: u16, value: &[u8]) -> Vec<u8> {
    let len = 4 + value.len();
    let mut a = Vec::with_capacity((len + 3) & !3);
    a.extend((len as u16).to_ne_bytes());
    a.extend(ty.to_ne_bytes());
    a.extend_from_slice(value);
    a.resize((len + 3) & !3, 0);
    a
}

/// (message type, sequence number, payload after nlmsghdr) of each message in a datagram.
fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let ty = u16::from_ne_bytes([buf[4], buf[5]]);
        let seq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
        if len < 16 || len > buf.len() {
            return None;
        }
        let body = &buf[16..len];
        buf = &buf[((len + 3) & !3).min(buf.len())..];
        Some((ty, seq, body))
    })
}

fn error_of(body: &[u8]) -> i32 {
    body.get(..4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, |b| -i32::from_ne_bytes(b))
}

/// A tuple (CTA_TUPLE_ORIG or CTA_TUPLE_REPLY): source, destination, protocol, source port.
#[derive(Default)]
struct Tuple {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    proto: Option<u8>,
    src_port: Option<u16>,
}

impl Tuple {
    fn parse(tuple: &[u8]) -> Tuple {
        let mut t = Tuple::default();
        let v4 = |v: &[u8]| {
            <[u8; 4]>::try_from(v)
                .ok()
                .map(|b| IpAddr::V4(Ipv4Addr::from(b)))
        };
        let v6 = |v: &[u8]| {
            <[u8; 16]>::try_from(v)
                .ok()
                .map(|b| IpAddr::V6(Ipv6Addr::from(b)))
        };
        for (ty, nested) in attrs(tuple) {
            for (k, v) in attrs(nested) {
                match (ty, k) {
                    (CTA_TUPLE_IP, CTA_IP_V4_SRC) => t.src = v4(v),
                    (CTA_TUPLE_IP, CTA_IP_V4_DST) => t.dst = v4(v),
                    (CTA_TUPLE_IP, CTA_IP_V6_SRC) => t.src = v6(v),
                    (CTA_TUPLE_IP, CTA_IP_V6_DST) => t.dst = v6(v),
                    (CTA_TUPLE_PROTO, CTA_PROTO_NUM) => t.proto = v.first().copied(),
                    (CTA_TUPLE_PROTO, CTA_PROTO_SRC_PORT) => {
                        t.src_port = <[u8; 2]>::try_from(v).ok().map(u16::from_be_bytes)
                    }
                    _ => {}
                }
            }
        }
        t
    }

    fn has(&self, a: IpAddr) -> bool {
        self.src == Some(a) || self.dst == Some(a)
    }
}

/// The entry in a dumped message, if one of `wanted` matches it.
fn entry(body: &[u8], wanted: &[Conns]) -> Option<Entry> {
    let family = *body.first()?;
    let mut orig = None;
    let mut zone = None;
    let (mut o, mut r) = (Tuple::default(), Tuple::default());
    for (ty, v) in attrs(body.get(4..)?) {
        match ty {
            CTA_TUPLE_ORIG => {
                o = Tuple::parse(v);
                orig = Some(v.to_vec());
            }
            CTA_TUPLE_REPLY => r = Tuple::parse(v),
            CTA_ZONE => zone = Some(v.to_vec()),
            _ => {}
        }
    }
    let hit = wanted.iter().any(|w| match *w {
        Conns::Of(a) => o.has(a) || r.has(a),
        Conns::To { addr, proto, port } => {
            r.src == Some(addr) && r.proto == Some(proto) && r.src_port == Some(port)
        }
    });
    hit.then_some(Entry {
        family,
        orig: orig?,
        zone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut ip = attr(CTA_IP_V4_SRC, &src);
        ip.extend(attr(CTA_IP_V4_DST, &dst));
        attr(CTA_TUPLE_IP | NLA_F_NESTED, &ip)
    }

    fn message(orig: ([u8; 4], [u8; 4]), reply: ([u8; 4], [u8; 4])) -> Vec<u8> {
        let mut body = vec![libc::AF_INET as u8, 0, 0, 0];
        body.extend(attr(CTA_TUPLE_ORIG | NLA_F_NESTED, &tuple(orig.0, orig.1)));
        body.extend(attr(
            CTA_TUPLE_REPLY | NLA_F_NESTED,
            &tuple(reply.0, reply.1),
        ));
        body
    }

    #[test]
    fn entries_match_on_any_address_of_either_tuple() {
        let ns: IpAddr = "100.64.0.2".parse().unwrap();
        let wanted = [Conns::Of(ns)];
        let (a, up, host) = ([100, 64, 0, 2], [198, 18, 0, 2], [198, 18, 0, 1]);
        // Outbound, masqueraded: the namespace is the original source.
        let out = message((a, up), (up, host));
        let e = entry(&out, &wanted).expect("outbound");
        assert_eq!(e.orig, tuple(a, up));
        // Inbound through a port forward: the namespace is the reply source.
        assert!(entry(&message((up, host), (a, up)), &wanted).is_some());
        // Someone else's.
        assert!(entry(&message(([100, 64, 0, 6], up), (up, host)), &wanted).is_none());
    }
}
