//! Building nft batches and committing them as one atomic transaction each.
//!
//! Kernel facts this code is built around (measured: docs/kernel.md#batch-acks and
//! docs/kernel.md#batches-larger-than-a-page):
//! - every message of a batch is acked, even when the batch as a whole is rolled back;
//! - on kernels >= 6.10 the end-of-batch message is acked only when the batch committed;
//! - a failing reply carries the sequence number of the message that failed, so giving each
//!   caller-defined *group* (one command's changes) its own messages tells which group was guilty;
//! - a batch split over several datagrams fails, so each batch is sent as one datagram.

use crate::spec::{ChainName, Elem, Match, SetName, TableSpec, Verdict};
use nftnl::expr::{Bitwise, Cmp, CmpOp, Conntrack, Counter, Lookup, Masquerade, Meta};
use nftnl::nftnl_sys as sys;
use nftnl::set::{Set, SetKey};
use nftnl::{Batch, Chain, ChainType, Hook, MsgType, Policy, ProtoFamily, Rule, Table};
use std::ffi::{c_void, CStr, CString};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// One element change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ElemOp {
    Add(Elem),
    Del(Elem),
}

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("netfilter socket: {0}")]
    Socket(#[source] io::Error),
    #[error("invalid name {0:?} (contains NUL)")]
    BadName(String),
    #[error("nft transaction rejected: {errno_text} (errno {errno})")]
    Rejected { errno: i32, errno_text: String },
    #[error("nft transaction: no answer from the kernel within {0:?}")]
    Timeout(Duration),
    #[error("nft transaction: malformed reply from the kernel")]
    BadReply,
}

/// Why one group of a multi-group transaction was not committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The kernel rejected one of this group's own messages.
    #[error("nft rejected the change: {errno_text} (errno {errno})")]
    Rejected { errno: i32, errno_text: String },
    /// The transaction failed for a reason that cannot be pinned on one group.
    #[error("nft transaction failed: {0}")]
    Transaction(String),
}

fn errno_text(errno: i32) -> String {
    io::Error::from_raw_os_error(errno).to_string()
}

fn cstring(s: &str) -> Result<CString, NftError> {
    CString::new(s).map_err(|_| NftError::BadName(s.to_string()))
}

/// nft's `ifname` datatype (TYPE_IFNAME = 41), 16 bytes NUL-padded.
type IfNameKey = RawKey<41, { crate::spec::IFNAMSIZ as u32 }>;

/// A key type for sets whose elements are built raw: nft's datatype number (concatenations:
/// each type shifted in by 6 bits, as nft writes them) and the key's length.
struct RawKey<const TYPE: u32, const LEN: u32>;

impl<const TYPE: u32, const LEN: u32> SetKey for RawKey<TYPE, LEN> {
    const TYPE: u32 = TYPE;
    const LEN: u32 = LEN;
    fn data(&self) -> Box<[u8]> {
        Box::new([])
    }
}

// nft datatypes (TYPE_IPADDR, TYPE_IP6ADDR, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE) and their
// concatenation.
const T_IPV4: u32 = 7;
const T_IPV6: u32 = 8;
const T_PROTO: u32 = 12;
const T_SERVICE: u32 = 13;
const fn concat(a: u32, b: u32) -> u32 {
    a << 6 | b
}
/// `ipv4_addr . inet_proto . inet_service`
type ForwardKey = RawKey<{ concat(concat(T_IPV4, T_PROTO), T_SERVICE) }, 12>;
/// `inet_proto . inet_service`
type ForwardAnyKey = RawKey<{ concat(T_PROTO, T_SERVICE) }, 8>;
/// `ipv4_addr`
type AddrKey = RawKey<T_IPV4, 4>;
/// The data of both forward maps: `ipv4_addr . inet_service`.
const FORWARD_DATA: (u32, u32) = (concat(T_IPV4, T_SERVICE), 8);
const EGRESS_DATA: (u32, u32) = (T_IPV4, 4);
/// `ipv6_addr . inet_proto . inet_service`
type Forward6Key = RawKey<{ concat(concat(T_IPV6, T_PROTO), T_SERVICE) }, 24>;
/// `ipv6_addr`
type Addr6Key = RawKey<T_IPV6, 16>;
const FORWARD6_DATA: (u32, u32) = (concat(T_IPV6, T_SERVICE), 20);
const EGRESS6_DATA: (u32, u32) = (T_IPV6, 16);

/// Makes a named set a map with data of `(type, len)`.
fn make_map<K>(set: &Set<'_, K>, data: (u32, u32)) {
    // SAFETY: the set pointer is valid for the life of `set`.
    unsafe {
        let s = set.as_ptr().as_ptr();
        sys::nftnl_set_set_u32(s, sys::NFTNL_SET_FLAGS as u16, libc::NFT_SET_MAP as u32);
        sys::nftnl_set_set_u32(s, sys::NFTNL_SET_DATA_TYPE as u16, data.0);
        sys::nftnl_set_set_u32(s, sys::NFTNL_SET_DATA_LEN as u16, data.1);
    }
}

/// nft's set user data: a TLV saying the key is host-endian, so that `nft list` prints ifname
/// elements as names (NFTNL_UDATA_SET_KEYBYTEORDER = 0, BYTEORDER_HOST_ENDIAN = 1).
fn set_host_endian_key<K>(set: &Set<'_, K>) {
    let mut udata = vec![0u8, 4];
    udata.extend_from_slice(&1u32.to_ne_bytes());
    // SAFETY: the set pointer is valid for the life of `set`; libnftnl copies the buffer.
    unsafe {
        sys::nftnl_set_set_data(
            set.as_ptr().as_ptr(),
            sys::NFTNL_SET_USERDATA as u16,
            udata.as_ptr() as *const c_void,
            udata.len() as u32,
        );
    }
}

const NETWORK: u32 = libc::NFT_PAYLOAD_NETWORK_HEADER as u32;
const TRANSPORT: u32 = libc::NFT_PAYLOAD_TRANSPORT_HEADER as u32;

fn add_match(rule: &mut Rule, m: Match, set_ref: &dyn Fn(SetName) -> Lookup) {
    use crate::raw::*;
    match m {
        Match::IifnameIn(s) => {
            rule.add_expr(&Meta::IifName);
            rule.add_expr(&set_ref(s));
        }
        Match::OifnameIn(s) => {
            rule.add_expr(&Meta::OifName);
            rule.add_expr(&set_ref(s));
        }
        Match::CtEstablishedRelated => {
            // ct state is a host-endian bitmask: ESTABLISHED = 2, RELATED = 4.
            rule.add_expr(&Conntrack::State);
            rule.add_expr(&Bitwise::new(6u32, 0u32));
            rule.add_expr(&Cmp::new(CmpOp::Neq, 0u32));
        }
        Match::Ipv4SaddrIn(s) => {
            add_match(rule, Match::Ipv4, set_ref);
            rule.add_expr(&nftnl::nft_expr!(payload ipv4 saddr));
            rule.add_expr(&set_ref(s));
        }
        Match::Ipv6SaddrIn(s) => {
            rule.add_expr(&Meta::NfProto);
            rule.add_expr(&Cmp::new(CmpOp::Eq, libc::NFPROTO_IPV6 as u8));
            rule.add_expr(&nftnl::nft_expr!(payload ipv6 saddr));
            rule.add_expr(&set_ref(s));
        }
        Match::Ipv4 => {
            rule.add_expr(&Meta::NfProto);
            rule.add_expr(&Cmp::new(CmpOp::Eq, libc::NFPROTO_IPV4 as u8));
        }
        Match::Ipv6 => {
            rule.add_expr(&Meta::NfProto);
            rule.add_expr(&Cmp::new(CmpOp::Eq, libc::NFPROTO_IPV6 as u8));
        }
        Match::Daddr6NotLoopback => {
            rule.add_expr(&payload(NETWORK, 24, 16, REG32_00));
            let mut lo = [0u8; 16];
            lo[15] = 1;
            rule.add_expr(&cmp(REG32_00, libc::NFT_CMP_NEQ as u32, &lo));
        }
        Match::DaddrLocal => {
            // RTN_LOCAL, host-endian.
            rule.add_expr(&fib_daddr_type(REG32_00));
            rule.add_expr(&cmp(REG32_00, libc::NFT_CMP_EQ as u32, &2u32.to_ne_bytes()));
        }
        Match::DaddrNotLoopback => {
            rule.add_expr(&payload(NETWORK, 16, 4, REG32_00));
            rule.add_expr(&and(REG32_00, &[255, 0, 0, 0]));
            rule.add_expr(&cmp(REG32_00, libc::NFT_CMP_NEQ as u32, &[127, 0, 0, 0]));
        }
        Match::CtDnat => {
            // IPS_DST_NAT, host-endian.
            rule.add_expr(&ct(libc::NFT_CT_STATUS as u32, REG32_00));
            rule.add_expr(&and(REG32_00, &0x20u32.to_ne_bytes()));
            rule.add_expr(&cmp(
                REG32_00,
                libc::NFT_CMP_NEQ as u32,
                &0u32.to_ne_bytes(),
            ));
        }
    }
}

/// `dnat ip[6] to [ip[6] daddr .] meta l4proto . th dport map @set`: the key into consecutive
/// 32-bit registers from the first, the map's data (address . port) back from the first: the
/// port lands in the register after the address.
fn dnat_via(rule: &mut Rule, set: SetName, name: &CStr, id: u32) {
    use crate::raw::*;
    let v6 = set.is_ipv6();
    let addr_regs = if v6 { 4 } else { 1 };
    let mut reg = REG32_00;
    if matches!(set, SetName::Forwards | SetName::Forwards6) {
        let (offset, len) = if v6 { (24, 16) } else { (16, 4) };
        rule.add_expr(&payload(NETWORK, offset, len, reg));
        reg += addr_regs;
    }
    rule.add_expr(&meta(libc::NFT_META_L4PROTO as u32, reg));
    rule.add_expr(&payload(TRANSPORT, 2, 2, reg + 1));
    rule.add_expr(&lookup(name, id, REG32_00, Some(REG32_00)));
    let family = if v6 {
        libc::NFPROTO_IPV6
    } else {
        libc::NFPROTO_IPV4
    } as u32;
    rule.add_expr(&nat(
        libc::NFT_NAT_DNAT as u32,
        family,
        REG32_00,
        Some(REG32_00 + addr_regs),
    ));
}

/// (type, value) of each netlink attribute in `buf`.
fn nlattrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            return None;
        }
        let value = &buf[4..len];
        buf = &buf[((len + 3) & !3).min(buf.len())..];
        Some((ty, value))
    })
}

/// The map elements of one NEWSETELEM message's attributes.
fn elements_of(map: SetName, attrs: &[u8]) -> Vec<Elem> {
    // NFTA_SET_ELEM_LIST_ELEMENTS { NFTA_LIST_ELEM { NFTA_SET_ELEM_KEY { NFTA_DATA_VALUE },
    // NFTA_SET_ELEM_DATA { NFTA_DATA_VALUE } } … }
    let value = |nested: &[u8]| {
        nlattrs(nested)
            .find(|(t, _)| *t == 1)
            .map(|(_, v)| v.to_vec())
    };
    let mut out = vec![];
    for (_, list) in nlattrs(attrs).filter(|(t, _)| *t == 3) {
        for (_, elem) in nlattrs(list).filter(|(t, _)| *t == 1) {
            let mut key = None;
            let mut data = None;
            for (t, v) in nlattrs(elem) {
                match t {
                    1 => key = value(v),
                    2 => data = value(v),
                    _ => {}
                }
            }
            if let Some(k) = key {
                out.extend(Elem::from_entry(map, &k, data.as_deref()));
            }
        }
    }
    out
}

/// Adds an element with this key (and data, for a map) to a set's in-memory list.
fn add_raw_elem<K>(set: &Set<'_, K>, key: &[u8], data: Option<&[u8]>) {
    // SAFETY: a fresh element handed to the set, which owns and frees it; libnftnl copies the
    // key and data.
    unsafe {
        let e = sys::nftnl_set_elem_alloc();
        if e.is_null() {
            std::process::abort();
        }
        sys::nftnl_set_elem_set(
            e,
            sys::NFTNL_SET_ELEM_KEY as u16,
            key.as_ptr() as *const c_void,
            key.len() as u32,
        );
        if let Some(d) = data {
            sys::nftnl_set_elem_set(
                e,
                sys::NFTNL_SET_ELEM_DATA as u16,
                d.as_ptr() as *const c_void,
                d.len() as u32,
            );
        }
        sys::nftnl_set_elem_add(set.as_ptr().as_ptr(), e);
    }
}

/// A batch under construction. Every message is tagged with the group (if any) it belongs to,
/// so that a failing sequence number can be traced back to its group.
pub struct Transaction {
    batch: Batch,
    table: Table,
    /// owners[i] = group of the i-th message after the batch-begin message.
    owners: Vec<Option<usize>>,
}

impl Transaction {
    fn new(table: &str, expected_msgs: usize) -> Result<Self, NftError> {
        // Size one page to hold the whole batch: the batch must go out as one datagram.
        let want = (expected_msgs as u32 + 16).saturating_mul(512);
        let page = want.max(nftnl::default_batch_page_size());
        Ok(Transaction {
            batch: Batch::with_page_size(page),
            table: Table::new(cstring(table)?, ProtoFamily::Inet),
            owners: Vec::with_capacity(expected_msgs),
        })
    }

    fn push<T: nftnl::NlMsg>(&mut self, msg: &T, ty: MsgType, group: Option<usize>) {
        self.batch.add(msg, ty);
        self.owners.push(group);
    }

    /// Adds one element change as its own message.
    fn elem(&mut self, op: &ElemOp, group: Option<usize>) -> Result<(), NftError> {
        let (elem, ty) = match op {
            ElemOp::Add(e) => (e, MsgType::Add),
            ElemOp::Del(e) => (e, MsgType::Del),
        };
        let name = cstring(elem.set().as_str())?;
        let (key, data) = elem.key_data();
        // A delete names the key only.
        let data = data.filter(|_| ty == MsgType::Add);
        self.elem_msg(&name, &key, data.as_deref(), ty, group);
        Ok(())
    }

    /// Adds elements set by set, many to a message (up to 64 KiB each, libnftnl's limit): what
    /// a whole-table transaction needs, where no single element has to be blamed. Compared
    /// with a message per element this is a third of the bytes and a few acks instead of one
    /// per element, so the start-up transaction stays small at any number of namespaces.
    fn bulk_elems(&mut self, elems: &[Elem]) -> Result<(), NftError> {
        for set in SetName::ALL {
            let mine: Vec<&Elem> = elems.iter().filter(|e| e.set() == set).collect();
            if mine.is_empty() {
                continue;
            }
            let name = cstring(set.as_str())?;
            let s = Set::<AddrKey>::new_named(&name, 0, &self.table, ProtoFamily::Inet);
            for e in mine {
                let (key, data) = e.key_data();
                add_raw_elem(&s, &key, data.as_deref());
            }
            for m in s.elems_iter() {
                self.batch.add(&m, MsgType::Add);
                self.owners.push(None);
            }
        }
        Ok(())
    }

    /// One element of one named set or map as its own message.
    fn elem_msg(
        &mut self,
        map: &CString,
        key: &[u8],
        data: Option<&[u8]>,
        ty: MsgType,
        group: Option<usize>,
    ) {
        let set = Set::<AddrKey>::new_named(map, 0, &self.table, ProtoFamily::Inet);
        add_raw_elem(&set, key, data);
        for m in set.elems_iter() {
            self.batch.add(&m, ty);
            self.owners.push(group);
        }
    }

    /// Element changes against the existing table, one group per caller-defined unit.
    pub fn elements(table: &str, groups: &[(usize, &[ElemOp])]) -> Result<Self, NftError> {
        let n = groups.iter().map(|(_, ops)| ops.len()).sum();
        let mut tx = Transaction::new(table, n)?;
        for (g, ops) in groups {
            for op in *ops {
                tx.elem(op, Some(*g))?;
            }
        }
        Ok(tx)
    }

    /// The whole table, replacing any previous one of that name atomically (add, delete, add:
    /// the first add makes the delete valid when no table exists yet), filled with `elems`.
    pub fn replace_table(spec: &TableSpec, elems: &[Elem]) -> Result<Self, NftError> {
        // Elements go many to a message: room for about 64 bytes each (512 per "message").
        let mut tx = Transaction::new(&spec.name, elems.len() / 8 + 64)?;
        let table = Table::new(cstring(&spec.name)?, ProtoFamily::Inet);
        tx.push(&table, MsgType::Add, None);
        tx.push(&table, MsgType::Del, None);
        tx.push(&table, MsgType::Add, None);

        let names: Vec<CString> = SetName::ALL
            .iter()
            .map(|s| cstring(s.as_str()))
            .collect::<Result<_, _>>()?;
        let name = |s: SetName| &names[SetName::ALL.iter().position(|x| *x == s).unwrap_or(0)];
        let id = |s: SetName| SetName::ALL.iter().position(|x| *x == s).unwrap_or(0) as u32 + 1;
        let inet = ProtoFamily::Inet;
        let ns_set = Set::<IfNameKey>::new_named(
            name(SetName::NsIfaces),
            id(SetName::NsIfaces),
            &table,
            inet,
        );
        let up_set =
            Set::<IfNameKey>::new_named(name(SetName::Uplinks), id(SetName::Uplinks), &table, inet);
        let nat_set = Set::<Ipv4Addr>::new_named(
            name(SetName::NatSaddrs),
            id(SetName::NatSaddrs),
            &table,
            inet,
        );
        let nat6_set = Set::<std::net::Ipv6Addr>::new_named(
            name(SetName::NatSaddrs6),
            id(SetName::NatSaddrs6),
            &table,
            inet,
        );
        let fwd = Set::<ForwardKey>::new_named(
            name(SetName::Forwards),
            id(SetName::Forwards),
            &table,
            inet,
        );
        let fwd_any = Set::<ForwardAnyKey>::new_named(
            name(SetName::ForwardsAny),
            id(SetName::ForwardsAny),
            &table,
            inet,
        );
        let egress =
            Set::<AddrKey>::new_named(name(SetName::Egress), id(SetName::Egress), &table, inet);
        let fwd6 = Set::<Forward6Key>::new_named(
            name(SetName::Forwards6),
            id(SetName::Forwards6),
            &table,
            inet,
        );
        let fwd_any6 = Set::<ForwardAnyKey>::new_named(
            name(SetName::ForwardsAny6),
            id(SetName::ForwardsAny6),
            &table,
            inet,
        );
        let egress6 =
            Set::<Addr6Key>::new_named(name(SetName::Egress6), id(SetName::Egress6), &table, inet);
        set_host_endian_key(&ns_set);
        set_host_endian_key(&up_set);
        make_map(&fwd, FORWARD_DATA);
        make_map(&fwd_any, FORWARD_DATA);
        make_map(&egress, EGRESS_DATA);
        make_map(&fwd6, FORWARD6_DATA);
        make_map(&fwd_any6, FORWARD6_DATA);
        make_map(&egress6, EGRESS6_DATA);
        tx.push(&ns_set, MsgType::Add, None);
        tx.push(&up_set, MsgType::Add, None);
        tx.push(&nat_set, MsgType::Add, None);
        tx.push(&nat6_set, MsgType::Add, None);
        tx.push(&fwd, MsgType::Add, None);
        tx.push(&fwd_any, MsgType::Add, None);
        tx.push(&egress, MsgType::Add, None);
        tx.push(&fwd6, MsgType::Add, None);
        tx.push(&fwd_any6, MsgType::Add, None);
        tx.push(&egress6, MsgType::Add, None);

        let chain = |n: &'static CStr, ty, hook, prio| {
            let mut c = Chain::new(n, &table);
            c.set_type(ty);
            c.set_hook(hook, prio);
            c.set_policy(Policy::Accept);
            c
        };
        // dstnat = -100, filter = 0, srcnat = 100.
        let prerouting = chain(c"prerouting", ChainType::Nat, Hook::PreRouting, -100);
        let output = chain(c"output", ChainType::Nat, Hook::Out, -100);
        let forward = chain(c"forward", ChainType::Filter, Hook::Forward, 0);
        let postrouting = chain(c"postrouting", ChainType::Nat, Hook::PostRouting, 100);
        for c in [&prerouting, &output, &forward, &postrouting] {
            tx.push(c, MsgType::Add, None);
        }

        for spec_rule in spec.rules() {
            let chain = match spec_rule.chain {
                ChainName::Prerouting => &prerouting,
                ChainName::Output => &output,
                ChainName::Forward => &forward,
                ChainName::Postrouting => &postrouting,
            };
            let mut rule = Rule::new(chain);
            for m in &spec_rule.matches {
                let set_ref = |s: SetName| match s {
                    SetName::NsIfaces => Lookup::new(&ns_set),
                    SetName::Uplinks => Lookup::new(&up_set),
                    SetName::NatSaddrs6 => Lookup::new(&nat6_set),
                    _ => Lookup::new(&nat_set),
                };
                add_match(&mut rule, *m, &set_ref);
            }
            rule.add_expr(&Counter);
            match spec_rule.verdict {
                Verdict::Accept => rule.add_expr(&nftnl::expr::Verdict::Accept),
                Verdict::Drop => rule.add_expr(&nftnl::expr::Verdict::Drop),
                Verdict::Return => rule.add_expr(&nftnl::expr::Verdict::Return),
                Verdict::Masquerade => rule.add_expr(&Masquerade),
                Verdict::DnatVia(s) => dnat_via(&mut rule, s, name(s), id(s)),
                Verdict::SnatVia(s) => {
                    use crate::raw::*;
                    let (offset, len, family) = match s.is_ipv6() {
                        true => (8, 16, libc::NFPROTO_IPV6),
                        false => (12, 4, libc::NFPROTO_IPV4),
                    };
                    rule.add_expr(&payload(NETWORK, offset, len, REG32_00));
                    rule.add_expr(&lookup(name(s), id(s), REG32_00, Some(REG32_00)));
                    rule.add_expr(&nat(
                        libc::NFT_NAT_SNAT as u32,
                        family as u32,
                        REG32_00,
                        None,
                    ));
                }
            }
            tx.push(&rule, MsgType::Add, None);
        }
        drop((prerouting, output, forward, postrouting));

        tx.bulk_elems(elems)?;
        drop((ns_set, up_set, nat_set, nat6_set, fwd, fwd_any, egress));
        drop((fwd6, fwd_any6, egress6));
        tx.table = table;
        Ok(tx)
    }

    /// Deletes the table (add first, so that deleting a missing table is not an error).
    pub fn delete_table(name: &str) -> Result<Self, NftError> {
        let mut tx = Transaction::new(name, 2)?;
        let table = Table::new(cstring(name)?, ProtoFamily::Inet);
        tx.push(&table, MsgType::Add, None);
        tx.push(&table, MsgType::Del, None);
        Ok(tx)
    }

    /// Number of messages, batch delimiters excluded.
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// The finished batch as one datagram plus what is needed to read its replies.
    fn finish(self) -> Finished {
        let n = self.owners.len() as u32;
        let finalized = self.batch.finalize();
        let seqs = finalized.sequence_numbers();
        // With end-of-batch acks (kernel >= 6.10), begin = 1, messages 2..=n+1, end = n+2.
        // Without, begin and end carry seq 0 and messages are 1..=n.
        let (first, end_seq) = if seqs.end == n + 3 {
            (2, Some(n + 2))
        } else {
            (1, None)
        };
        let bytes: Vec<u8> = finalized.iter().flat_map(|p| p.iter().copied()).collect();
        Finished {
            bytes,
            first,
            end_seq,
            owners: self.owners,
        }
    }
}

struct Finished {
    bytes: Vec<u8>,
    first: u32,
    end_seq: Option<u32>,
    owners: Vec<Option<usize>>,
}

/// How a committed-or-not batch went, message by message.
#[derive(Debug, Default)]
pub struct Outcome {
    /// (group of the failing message, errno). Group is None for messages outside any group.
    pub failures: Vec<(Option<usize>, i32)>,
}

/// The netfilter socket. Used through `&mut` only: one thread at a time.
pub struct NftSocket {
    sock: mnl::Socket,
    timeout: Duration,
    /// The send buffer asked for (bytes).
    sndbuf: usize,
    /// Where replies are read, kept: a fresh 1 MiB buffer per transaction cost ~0.25 ms of
    /// zeroing and page faults, most of a lone create's nft time.
    buf: Vec<u8>,
}

// SAFETY: libmnl's `mnl_socket` is a file descriptor and the address it is bound to, both
// usable from any thread; libmnl keeps no per-thread state. Every use of it goes through
// `&mut self`, so no two threads touch it at once, and its buffer is ours.
unsafe impl Send for NftSocket {}

/// Room for one reply datagram (dumps of big maps come in datagrams of up to this size).
const RECV_BUF: usize = 1 << 20;

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_CAP_ACK: libc::c_int = 10;

fn setsockopt_int(fd: i32, level: i32, opt: i32, val: i32) -> io::Result<()> {
    // SAFETY: plain setsockopt on an fd we own, with a correctly sized int.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            &val as *const i32 as *const c_void,
            std::mem::size_of::<i32>() as u32,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl NftSocket {
    pub fn open() -> Result<Self, NftError> {
        let sock = mnl::Socket::new(mnl::Bus::Netfilter).map_err(NftError::Socket)?;
        let fd = sock.as_raw_fd();
        // Big batches go out as one datagram and thousands of acks come back: make room.
        // The *FORCE variants need CAP_NET_ADMIN, which the agent has; fall back if not.
        for (force, plain) in [
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        ] {
            if setsockopt_int(fd, libc::SOL_SOCKET, force, 8 << 20).is_err() {
                setsockopt_int(fd, libc::SOL_SOCKET, plain, 8 << 20).map_err(NftError::Socket)?;
            }
        }
        // Errors need not echo the whole failed message back.
        setsockopt_int(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1).map_err(NftError::Socket)?;
        let timeout = Duration::from_secs(10);
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: setsockopt with a timeval of the right size.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        if r < 0 {
            return Err(NftError::Socket(io::Error::last_os_error()));
        }
        Ok(NftSocket {
            sock,
            timeout,
            sndbuf: 8 << 20,
            buf: vec![0u8; RECV_BUF],
        })
    }

    /// Grows the send buffer to take a batch of `len` bytes as one datagram (a batch split
    /// over several datagrams fails: docs/kernel.md#batches-larger-than-a-page).
    fn fit(&mut self, len: usize) -> Result<(), NftError> {
        let want = len.saturating_add(1 << 20);
        if want <= self.sndbuf {
            return Ok(());
        }
        let fd = self.sock.as_raw_fd();
        let size = i32::try_from(want).unwrap_or(i32::MAX);
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, size)
            .or_else(|_| setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, size))
            .map_err(NftError::Socket)?;
        self.sndbuf = want;
        Ok(())
    }

    /// Sends one transaction and reads every reply to it.
    pub fn run(&mut self, tx: Transaction) -> Result<Outcome, NftError> {
        let fin = tx.finish();
        let result = self.exchange(&fin);
        if result.is_err() {
            // Replies may still be in flight; sequence numbers restart per batch, so never let
            // them leak into the next batch's reading: start over on a fresh socket.
            if let Ok(fresh) = NftSocket::open() {
                *self = fresh;
            }
        }
        result
    }

    fn exchange(&mut self, fin: &Finished) -> Result<Outcome, NftError> {
        self.fit(fin.bytes.len())?;
        self.sock.send(&fin.bytes).map_err(NftError::Socket)?;
        let n = fin.owners.len() as u32;
        let last = fin.first + n; // one past the last message
        let mut acked = vec![false; n as usize];
        let mut remaining = n;
        let mut end_acked = fin.end_seq.is_none();
        let mut outcome = Outcome::default();
        let mut whole_batch_error: Option<i32> = None;
        let (sock, buf, timeout) = (&self.sock, &mut self.buf, self.timeout);
        while remaining > 0 || (!end_acked && outcome.failures.is_empty()) {
            if whole_batch_error.is_some() {
                break;
            }
            let len = match sock.recv_raw(buf) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(NftError::Timeout(timeout))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(NftError::Socket(e)),
            };
            let mut off = 0usize;
            while off + 16 <= len {
                let h = &buf[off..];
                let mlen = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
                let mtype = u16::from_ne_bytes([h[4], h[5]]);
                let seq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
                if mlen < 16 || off + mlen > len {
                    return Err(NftError::BadReply);
                }
                if mtype == libc::NLMSG_ERROR as u16 {
                    if mlen < 20 {
                        return Err(NftError::BadReply);
                    }
                    let err = i32::from_ne_bytes([h[16], h[17], h[18], h[19]]);
                    if seq >= fin.first && seq < last {
                        let i = (seq - fin.first) as usize;
                        if !acked[i] {
                            acked[i] = true;
                            remaining -= 1;
                        }
                        if err != 0 {
                            outcome.failures.push((fin.owners[i], -err));
                        }
                    } else if Some(seq) == fin.end_seq {
                        if err != 0 {
                            whole_batch_error = Some(-err);
                        }
                        end_acked = true;
                    } else if err != 0 {
                        // The batch-begin message (or something outside the batch) failed.
                        whole_batch_error = Some(-err);
                    }
                }
                off += (mlen + 3) & !3;
            }
        }
        if let Some(errno) = whole_batch_error {
            return Err(NftError::Rejected {
                errno,
                errno_text: errno_text(errno),
            });
        }
        Ok(outcome)
    }

    /// Every element of one of `table`'s sets or maps, read back from the kernel. A table or
    /// set that does not exist has none.
    pub fn elements(&mut self, table: &str, map: SetName) -> Result<Vec<Elem>, NftError> {
        let seq: u32 = 0x6e73_6100; // any: a dump is alone on the socket
        let attr = |ty: u16, v: &[u8]| {
            let len = 4 + v.len();
            let mut a = (len as u16).to_ne_bytes().to_vec();
            a.extend(ty.to_ne_bytes());
            a.extend_from_slice(v);
            a.resize((len + 3) & !3, 0);
            a
        };
        let mut body = vec![libc::NFPROTO_INET as u8, 0, 0, 0];
        body.extend(attr(1, cstring(table)?.as_bytes_with_nul())); // NFTA_SET_ELEM_LIST_TABLE
        body.extend(attr(2, cstring(map.as_str())?.as_bytes_with_nul())); // ..._LIST_SET
        let mut msg = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        let ty = (libc::NFNL_SUBSYS_NFTABLES as u16) << 8 | libc::NFT_MSG_GETSETELEM as u16;
        msg.extend(ty.to_ne_bytes());
        msg.extend(((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
        msg.extend(seq.to_ne_bytes());
        msg.extend(0u32.to_ne_bytes());
        msg.extend(body);
        self.sock.send(&msg).map_err(NftError::Socket)?;
        let mut out = vec![];
        let (sock, buf, timeout) = (&self.sock, &mut self.buf, self.timeout);
        loop {
            let len = match sock.recv_raw(buf) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(NftError::Timeout(timeout))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(NftError::Socket(e)),
            };
            let mut off = 0;
            while off + 16 <= len {
                let h = &buf[off..len];
                let mlen = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
                let mtype = u16::from_ne_bytes([h[4], h[5]]);
                if mlen < 16 || mlen > h.len() {
                    return Err(NftError::BadReply);
                }
                match mtype as i32 {
                    libc::NLMSG_DONE => return Ok(out),
                    libc::NLMSG_ERROR => {
                        let err = h
                            .get(16..20)
                            .map_or(0, |b| -i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        return match err {
                            0 | libc::ENOENT => Ok(out),
                            e => Err(NftError::Rejected {
                                errno: e,
                                errno_text: errno_text(e),
                            }),
                        };
                    }
                    _ => out.extend(elements_of(map, h.get(20..mlen).unwrap_or(&[]))),
                }
                off += (mlen + 3) & !3;
            }
        }
    }

    /// Runs a transaction in which no failure is acceptable (start-up, table deletion).
    pub fn run_all_or_nothing(&mut self, tx: Transaction) -> Result<(), NftError> {
        let outcome = self.run(tx)?;
        match outcome.failures.first() {
            None => Ok(()),
            Some((_, errno)) => Err(NftError::Rejected {
                errno: *errno,
                errno_text: errno_text(*errno),
            }),
        }
    }

    /// Commits each group's changes if it can: one transaction for all groups; if the kernel
    /// rejects some, those groups are answered with their error and the rest is committed again
    /// (the failed batch was rolled back whole). Returns one result per group, in order.
    pub fn apply_groups(
        &mut self,
        table: &str,
        groups: &[Vec<ElemOp>],
    ) -> Vec<Result<(), GroupError>> {
        let mut results: Vec<Option<Result<(), GroupError>>> = vec![None; groups.len()];
        let mut live: Vec<usize> = (0..groups.len())
            .filter(|g| !groups[*g].is_empty())
            .collect();
        for g in 0..groups.len() {
            if groups[g].is_empty() {
                results[g] = Some(Ok(()));
            }
        }
        // Each round either commits or removes at least one guilty group; bound the rounds anyway.
        let mut rounds = 0;
        while !live.is_empty() {
            rounds += 1;
            let input: Vec<(usize, &[ElemOp])> =
                live.iter().map(|g| (*g, groups[*g].as_slice())).collect();
            let outcome = Transaction::elements(table, &input).and_then(|tx| self.run(tx));
            match outcome {
                Ok(o) if o.failures.is_empty() => {
                    for g in &live {
                        results[*g] = Some(Ok(()));
                    }
                    live.clear();
                }
                Ok(o) => {
                    let mut blamed = false;
                    for (owner, errno) in &o.failures {
                        if let Some(g) = owner {
                            if results[*g].is_none() {
                                results[*g] = Some(Err(GroupError::Rejected {
                                    errno: *errno,
                                    errno_text: errno_text(*errno),
                                }));
                            }
                            blamed = true;
                        }
                    }
                    live.retain(|g| results[*g].is_none());
                    if !blamed || rounds >= 4 {
                        let msg = format!("failed {rounds} times");
                        for g in live.drain(..) {
                            results[g] = Some(Err(GroupError::Transaction(msg.clone())));
                        }
                    }
                }
                Err(e) => {
                    for g in live.drain(..) {
                        results[g] = Some(Err(GroupError::Transaction(e.to_string())));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(GroupError::Transaction("not attempted".into()))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks the finished datagram and returns (nfnetlink subsystem msg type, seq) per message.
    fn messages(fin: &Finished) -> Vec<(u16, u32)> {
        let mut out = vec![];
        let b = &fin.bytes;
        let mut off = 0;
        while off + 16 <= b.len() {
            let len = u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]]) as usize;
            let ty = u16::from_ne_bytes([b[off + 4], b[off + 5]]);
            let seq = u32::from_ne_bytes([b[off + 8], b[off + 9], b[off + 10], b[off + 11]]);
            out.push((ty, seq));
            off += (len + 3) & !3;
        }
        out
    }

    const NEWSETELEM: u16 =
        (libc::NFNL_SUBSYS_NFTABLES as u16) << 8 | libc::NFT_MSG_NEWSETELEM as u16;
    const DELSETELEM: u16 =
        (libc::NFNL_SUBSYS_NFTABLES as u16) << 8 | libc::NFT_MSG_DELSETELEM as u16;
    const NEWRULE: u16 = (libc::NFNL_SUBSYS_NFTABLES as u16) << 8 | libc::NFT_MSG_NEWRULE as u16;

    #[test]
    fn each_element_change_is_its_own_message_owned_by_its_group() {
        let a = vec![
            ElemOp::Add(Elem::NsIface("nsv0a000000".into())),
            ElemOp::Add(Elem::NatSaddr(Ipv4Addr::new(10, 0, 0, 2))),
        ];
        let b = vec![ElemOp::Del(Elem::NsIface("nsv0a000004".into()))];
        let tx = Transaction::elements("nsagent", &[(7, &a), (9, &b)]).unwrap();
        let fin = tx.finish();
        assert_eq!(fin.owners, vec![Some(7), Some(7), Some(9)]);
        let msgs = messages(&fin);
        // begin, 3 element messages, end
        assert_eq!(msgs.len(), 5);
        assert_eq!(msgs[1].0, NEWSETELEM);
        assert_eq!(msgs[2].0, NEWSETELEM);
        assert_eq!(msgs[3].0, DELSETELEM);
        // The sequence numbers we will look for are the ones written.
        for (i, (_, seq)) in msgs[1..4].iter().enumerate() {
            assert_eq!(*seq, fin.first + i as u32);
        }
    }

    #[test]
    fn table_has_the_same_rules_whatever_the_elements() {
        let spec = TableSpec::new("nsagent", true);
        let few = Transaction::replace_table(&spec, &[Elem::Uplink("eth0".into())]).unwrap();
        let many_elems: Vec<Elem> = (0..100)
            .map(|i| Elem::NsIface(format!("nsv{i:08x}")))
            .collect();
        let many = Transaction::replace_table(&spec, &many_elems).unwrap();
        let rules = |t: Transaction| {
            messages(&t.finish())
                .iter()
                .filter(|m| m.0 == NEWRULE)
                .count()
        };
        assert_eq!(rules(few), 18);
        assert_eq!(rules(many), 18);
    }

    #[test]
    fn a_table_of_any_size_is_a_few_messages() {
        let spec = TableSpec::new("nsagent", true);
        let elems: Vec<Elem> = (0..100_000u32)
            .flat_map(|i| {
                [
                    Elem::NsIface(format!("nsv{i:08x}")),
                    Elem::NatSaddr(Ipv4Addr::from(0x6440_0000 + 4 * i + 2)),
                ]
            })
            .collect();
        let fin = Transaction::replace_table(&spec, &elems).unwrap().finish();
        let msgs = messages(&fin);
        let elem_msgs = msgs.iter().filter(|m| m.0 == NEWSETELEM).count();
        // 200,000 elements: a few hundred messages, not 200,000; under 16 MB.
        eprintln!("{elem_msgs} element messages, {} bytes", fin.bytes.len());
        assert!(elem_msgs < 500, "{elem_msgs} element messages");
        assert!(fin.bytes.len() < 16 << 20, "{} bytes", fin.bytes.len());
    }

    #[test]
    fn a_big_batch_is_one_datagram() {
        let ops: Vec<Vec<ElemOp>> = (0..5000)
            .map(|i| vec![ElemOp::Add(Elem::NsIface(format!("nsv{i:08x}")))])
            .collect();
        let groups: Vec<(usize, &[ElemOp])> = ops
            .iter()
            .enumerate()
            .map(|(i, o)| (i, o.as_slice()))
            .collect();
        let fin = Transaction::elements("nsagent", &groups).unwrap().finish();
        assert_eq!(messages(&fin).len(), 5002);
    }
}
