//! nftables expressions the `nftnl` crate does not wrap (map lookups with a data register,
//! NAT from registers, fib, ct status, loads into chosen registers), built straight from
//! libnftnl attributes. One small type, so that each expression reads as its attributes.

use nftnl::expr::Expression;
use nftnl::nftnl_sys as sys;
use nftnl::Rule;
use std::ffi::{c_void, CStr, CString};
use std::ptr::NonNull;

/// The first of the 32-bit registers (NFT_REG32_00) that hold a concatenated key, each field
/// padded to 4 bytes, and where map data lands (an IPv6 address takes four).
pub const REG32_00: u32 = 8;

enum Val {
    U32(u32),
    Str(CString),
    Data(Vec<u8>),
}

pub struct RawExpr {
    name: &'static CStr,
    attrs: Vec<(u16, Val)>,
}

impl Expression for RawExpr {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        // SAFETY: a fresh expression, attributes set by libnftnl's own setters; libnftnl copies
        // strings and data. Allocation failure aborts, as everywhere in the nftnl crate.
        unsafe {
            let expr = sys::nftnl_expr_alloc(self.name.as_ptr());
            let Some(expr) = NonNull::new(expr) else {
                std::process::abort();
            };
            for (attr, v) in &self.attrs {
                match v {
                    Val::U32(x) => sys::nftnl_expr_set_u32(expr.as_ptr(), *attr, *x),
                    Val::Str(s) => {
                        sys::nftnl_expr_set_str(expr.as_ptr(), *attr, s.as_ptr());
                    }
                    Val::Data(d) => {
                        sys::nftnl_expr_set(
                            expr.as_ptr(),
                            *attr,
                            d.as_ptr() as *const c_void,
                            d.len() as u32,
                        );
                    }
                }
            }
            expr
        }
    }
}

fn expr(name: &'static CStr, attrs: Vec<(u32, Val)>) -> RawExpr {
    RawExpr {
        name,
        attrs: attrs.into_iter().map(|(a, v)| (a as u16, v)).collect(),
    }
}

/// Loads `len` bytes at `offset` of the network (`base` 1) or transport (`base` 2) header.
pub fn payload(base: u32, offset: u32, len: u32, dreg: u32) -> RawExpr {
    expr(
        c"payload",
        vec![
            (sys::NFTNL_EXPR_PAYLOAD_DREG, Val::U32(dreg)),
            (sys::NFTNL_EXPR_PAYLOAD_BASE, Val::U32(base)),
            (sys::NFTNL_EXPR_PAYLOAD_OFFSET, Val::U32(offset)),
            (sys::NFTNL_EXPR_PAYLOAD_LEN, Val::U32(len)),
        ],
    )
}

pub fn meta(key: u32, dreg: u32) -> RawExpr {
    expr(
        c"meta",
        vec![
            (sys::NFTNL_EXPR_META_KEY, Val::U32(key)),
            (sys::NFTNL_EXPR_META_DREG, Val::U32(dreg)),
        ],
    )
}

/// Looks the key in `sreg…` up in a set (`dreg` `None`) or a map (its data into `dreg…`).
pub fn lookup(set: &CStr, set_id: u32, sreg: u32, dreg: Option<u32>) -> RawExpr {
    let mut attrs = vec![
        (sys::NFTNL_EXPR_LOOKUP_SREG, Val::U32(sreg)),
        (sys::NFTNL_EXPR_LOOKUP_SET, Val::Str(set.to_owned())),
        (sys::NFTNL_EXPR_LOOKUP_SET_ID, Val::U32(set_id)),
    ];
    if let Some(d) = dreg {
        attrs.push((sys::NFTNL_EXPR_LOOKUP_DREG, Val::U32(d)));
    }
    expr(c"lookup", attrs)
}

/// NAT (`nat_type`: NFT_NAT_SNAT or NFT_NAT_DNAT; `family`: NFPROTO_IPV4 or NFPROTO_IPV6) to
/// the address in `reg_addr…` and, if given, the port in `reg_port`.
pub fn nat(nat_type: u32, family: u32, reg_addr: u32, reg_port: Option<u32>) -> RawExpr {
    let mut attrs = vec![
        (sys::NFTNL_EXPR_NAT_TYPE, Val::U32(nat_type)),
        (sys::NFTNL_EXPR_NAT_FAMILY, Val::U32(family)),
        (sys::NFTNL_EXPR_NAT_REG_ADDR_MIN, Val::U32(reg_addr)),
    ];
    if let Some(p) = reg_port {
        attrs.push((sys::NFTNL_EXPR_NAT_REG_PROTO_MIN, Val::U32(p)));
    }
    expr(c"nat", attrs)
}

/// `fib daddr type` into `dreg` (NFTA_FIB_F_DADDR, NFT_FIB_RESULT_ADDRTYPE).
pub fn fib_daddr_type(dreg: u32) -> RawExpr {
    expr(
        c"fib",
        vec![
            (sys::NFTNL_EXPR_FIB_FLAGS, Val::U32(1 << 1)),
            (sys::NFTNL_EXPR_FIB_RESULT, Val::U32(3)),
            (sys::NFTNL_EXPR_FIB_DREG, Val::U32(dreg)),
        ],
    )
}

pub fn ct(key: u32, dreg: u32) -> RawExpr {
    expr(
        c"ct",
        vec![
            (sys::NFTNL_EXPR_CT_KEY, Val::U32(key)),
            (sys::NFTNL_EXPR_CT_DREG, Val::U32(dreg)),
        ],
    )
}

/// `reg = reg & mask` (xor 0).
pub fn and(reg: u32, mask: &[u8]) -> RawExpr {
    expr(
        c"bitwise",
        vec![
            (sys::NFTNL_EXPR_BITWISE_SREG, Val::U32(reg)),
            (sys::NFTNL_EXPR_BITWISE_DREG, Val::U32(reg)),
            (sys::NFTNL_EXPR_BITWISE_LEN, Val::U32(mask.len() as u32)),
            (sys::NFTNL_EXPR_BITWISE_MASK, Val::Data(mask.to_vec())),
            (sys::NFTNL_EXPR_BITWISE_XOR, Val::Data(vec![0; mask.len()])),
        ],
    )
}

/// Compares `reg` with `data` (`op`: NFT_CMP_EQ, NFT_CMP_NEQ, …).
pub fn cmp(reg: u32, op: u32, data: &[u8]) -> RawExpr {
    expr(
        c"cmp",
        vec![
            (sys::NFTNL_EXPR_CMP_SREG, Val::U32(reg)),
            (sys::NFTNL_EXPR_CMP_OP, Val::U32(op)),
            (sys::NFTNL_EXPR_CMP_DATA, Val::Data(data.to_vec())),
        ],
    )
}
