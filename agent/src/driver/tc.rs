//! Rate limits as tc token-bucket qdiscs (`tbf`), over rtnetlink: a namespace's ingress limit is
//! the root qdisc of its host veth (traffic into the namespace leaves the host through it), its
//! egress limit the root qdisc of its veth inside. The qdiscs are the state: recovery reads the
//! rates back from a qdisc dump.

use crate::netlink::{attributes, NetlinkError, Request, Rtnl};
use netlink_packet_core::{DefaultNla, Nla};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption};
use netlink_packet_route::RouteNetlinkMessage;
use std::collections::HashMap;

const KIND: &str = "tbf";
// TCA_TBF_* (linux/pkt_sched.h).
const TCA_OPTIONS: u16 = 2;
const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_BURST: u16 = 6;
/// TC_LINKLAYER_ETHERNET: the kernel then needs no rate table.
const LINKLAYER_ETHERNET: u8 = 1;
/// sizeof(struct tc_tbf_qopt): two tc_ratespec (12 bytes each), limit, buffer, mtu.
const QOPT_LEN: usize = 36;

/// The token bucket for `bps`: a burst of 20 ms at the rate (at least two full-size frames),
/// enough for TCP to run at the rate rather than well below it; a queue of 100 ms at the rate
/// on top (at least 128 KiB, so that one GSO packet always fits).
pub fn shape(bps: u64) -> (u64, u32, u32) {
    let bytes_per_s = (bps / 8).max(1);
    let burst = (bytes_per_s / 50).clamp(2 * 1514, u32::MAX as u64 / 2) as u32;
    let limit = (bytes_per_s / 10 + burst as u64).clamp(128 << 10, u32::MAX as u64) as u32;
    (bytes_per_s, burst, limit)
}

/// `tc qdisc add dev IFINDEX root tbf rate BPS …`.
pub fn add(ifindex: u32, bps: u64) -> Request {
    Request::create(RouteNetlinkMessage::NewQueueDiscipline(tbf(ifindex, bps)))
}

/// `tc qdisc replace dev IFINDEX root tbf rate BPS …`.
pub fn replace(ifindex: u32, bps: u64) -> Request {
    Request::replace(RouteNetlinkMessage::NewQueueDiscipline(tbf(ifindex, bps)))
}

/// `tc qdisc del dev IFINDEX root`: back to the device's default.
pub fn delete(ifindex: u32) -> Request {
    let mut msg = TcMessage::with_index(ifindex as i32);
    msg.header.parent = TcHandle::ROOT;
    Request::change(RouteNetlinkMessage::DelQueueDiscipline(msg))
}

/// The steps that take a root qdisc from the `old` limit to the `new` one.
pub fn change(ifindex: u32, old: Option<u64>, new: Option<u64>) -> Vec<Request> {
    match (old, new) {
        (a, b) if a == b => vec![],
        (_, Some(bps)) => vec![replace(ifindex, bps)],
        (Some(_), None) => vec![delete(ifindex)],
        (None, None) => vec![],
    }
}

fn tbf(ifindex: u32, bps: u64) -> TcMessage {
    let (rate, burst, limit) = shape(bps);
    let mut qopt = vec![0u8; QOPT_LEN];
    // rate: cell_log 0, linklayer, overhead 0, cell_align 0, mpu 0, rate (u32, saturated).
    qopt[1] = LINKLAYER_ETHERNET;
    qopt[8..12].copy_from_slice(&(rate.min(u32::MAX as u64) as u32).to_ne_bytes());
    // peakrate: none. limit (bytes), buffer (0: TCA_TBF_BURST says it), mtu 0.
    qopt[24..28].copy_from_slice(&limit.to_ne_bytes());
    let mut opts = vec![
        TcOption::Other(DefaultNla::new(TCA_TBF_PARMS, qopt)),
        TcOption::Other(DefaultNla::new(TCA_TBF_BURST, burst.to_ne_bytes().to_vec())),
    ];
    if rate > u32::MAX as u64 {
        opts.push(TcOption::Other(DefaultNla::new(
            TCA_TBF_RATE64,
            rate.to_ne_bytes().to_vec(),
        )));
    }
    let mut msg = TcMessage::with_index(ifindex as i32);
    msg.header.parent = TcHandle::ROOT;
    msg.attributes.push(TcAttribute::Kind(KIND.into()));
    msg.attributes.push(TcAttribute::Options(opts));
    msg
}

/// The rate (bits/s) of every root tbf qdisc of the socket's namespace, by ifindex.
pub fn rates(rtnl: &mut Rtnl) -> Result<HashMap<u32, u64>, NetlinkError> {
    let found = rtnl.dump_map(
        RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()),
        |m| match m {
            RouteNetlinkMessage::NewQueueDiscipline(q) if q.header.parent == TcHandle::ROOT => {
                Some((q.header.index as u32, rate_of(&q)?))
            }
            _ => None,
        },
    )?;
    Ok(found.into_iter().collect())
}

fn rate_of(q: &TcMessage) -> Option<u64> {
    let is_tbf = q
        .attributes
        .iter()
        .any(|a| matches!(a, TcAttribute::Kind(k) if k == KIND));
    if !is_tbf {
        return None;
    }
    let opts = q.attributes.iter().find_map(|a| match a {
        TcAttribute::Options(o) => Some(o),
        _ => None,
    })?;
    // Options of a kind the netlink crate does not know come back as raw attributes: either
    // TBF's own, or one TCA_OPTIONS blob holding them.
    let mut attrs: Vec<(u16, Vec<u8>)> = vec![];
    for o in opts {
        let mut v = vec![0u8; o.value_len()];
        o.emit_value(&mut v);
        if o.kind() == TCA_OPTIONS {
            attrs.extend(attributes(&v).map(|(k, v)| (k, v.to_vec())));
        } else {
            attrs.push((o.kind(), v));
        }
    }
    let value = |kind: u16| attrs.iter().find(|(k, _)| *k == kind).map(|(_, v)| v);
    let rate64 = value(TCA_TBF_RATE64)
        .and_then(|v| v.get(..8))
        .and_then(|b| b.try_into().ok())
        .map(u64::from_ne_bytes);
    let rate32 = value(TCA_TBF_PARMS)
        .and_then(|v| v.get(8..12))
        .and_then(|b| b.try_into().ok())
        .map(u32::from_ne_bytes);
    let bytes = rate64.or(rate32.map(u64::from))?;
    Some(bytes * 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_qdisc_reads_back_its_rate() {
        for bps in [8_000, 10_000_000, 100_000_000, 40_000_000_000] {
            let Request {
                msg: RouteNetlinkMessage::NewQueueDiscipline(q),
                ..
            } = add(7, bps)
            else {
                panic!()
            };
            assert_eq!(rate_of(&q), Some(bps / 8 * 8), "{bps}");
            assert_eq!(q.header.index, 7);
        }
    }

    #[test]
    fn a_dumped_qdisc_reads_back_its_rate() {
        // What the kernel dumps for `tbf rate 10mbit`: TCA_OPTIONS { TCA_TBF_PARMS }.
        let mut parms = vec![40u8, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        parms.extend(1_250_000u32.to_ne_bytes());
        parms.extend([0u8; 24]);
        let mut q = TcMessage::with_index(3);
        q.header.parent = TcHandle::ROOT;
        q.attributes.push(TcAttribute::Kind(KIND.into()));
        q.attributes.push(TcAttribute::Options(vec![TcOption::Other(
            DefaultNla::new(TCA_OPTIONS, parms),
        )]));
        assert_eq!(rate_of(&q), Some(10_000_000));
    }

    #[test]
    fn buckets_suit_tcp() {
        let (rate, burst, limit) = shape(10_000_000);
        assert_eq!(rate, 1_250_000);
        assert_eq!(burst, 25_000);
        assert!(limit >= 128 << 10);
        let (_, burst, _) = shape(8_000);
        assert_eq!(burst, 3028, "at least two frames");
    }
}
