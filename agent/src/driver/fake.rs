//! A kernel stand-in: remembers what exists and fails what it is told to. For tests of the
//! executor and the server that need no root.

use super::{CreateFailure, Driver, DriverError, Gone};
use crate::model::Namespace;
use crate::netlink::NetlinkError;
use nft::{Elem, ElemOp, GroupError};
use std::collections::HashSet;

#[derive(Debug, Default)]
pub struct Fake {
    pub netns: HashSet<String>,
    pub links: HashSet<u32>,
    pub elems: HashSet<Elem>,
    /// Names whose netlink phase fails.
    pub fail_netlink: HashSet<String>,
    /// Host interface names whose element adds the nft transaction rejects.
    pub fail_nft: HashSet<String>,
    /// Host ports whose forward adds the nft transaction rejects.
    pub fail_nft_ports: HashSet<u16>,
    /// Elements someone else deleted: a delete of one is rejected (ENOENT) as the kernel
    /// does, whole group unchanged; any other missing delete is the executor's bug (a panic).
    pub deleted_outside: HashSet<Elem>,
    /// Links removed and not yet reported gone.
    pub gone: Vec<u32>,
    /// Keep links alive after removal until the test sets this back to false.
    pub hold_links: bool,
    /// Sleep this long in every create (to fill the queue in backpressure tests).
    pub create_delay: std::time::Duration,
    /// Addresses whose connections the executor asked to forget, in order.
    pub forgotten: Vec<super::Conns>,
    /// The host's own addresses.
    pub local: HashSet<std::net::IpAddr>,
    /// Warm namespaces given to clients.
    pub claimed: usize,
    /// nft transactions with something in them.
    pub transactions: usize,
    /// Names whose host veth mark was written after their claim, in order.
    pub marked: Vec<String>,
    /// What `check` finds, per name; `repair` puts it right unless the name is in
    /// `fail_netlink`.
    pub drift: std::collections::HashMap<String, Vec<crate::model::Problem>>,
    /// How many namespaces each `check` call was given.
    pub checked: Vec<usize>,
}

impl Driver for Fake {
    fn create(&mut self, items: &[Namespace]) -> Vec<Result<(), CreateFailure>> {
        std::thread::sleep(self.create_delay);
        items
            .iter()
            .map(|ns| {
                if self.fail_netlink.contains(&ns.name) {
                    return Err(CreateFailure {
                        error: DriverError::Netlink {
                            step: "add address",
                            source: NetlinkError::errno(libc::EINVAL),
                        },
                        link_created: false,
                    });
                }
                self.netns.insert(ns.name.clone());
                self.links.insert(ns.host_ifindex);
                Ok(())
            })
            .collect()
    }

    fn claim(&mut self, claims: &[(Namespace, Namespace)]) -> Vec<Result<(), CreateFailure>> {
        claims
            .iter()
            .map(|(warm, ns)| {
                if self.netns.contains(&ns.name) {
                    return Err(CreateFailure {
                        error: DriverError::Netns(super::NetnsError::Exists(
                            ns.name.clone().into(),
                        )),
                        link_created: false,
                    });
                }
                if self.fail_netlink.contains(&ns.name) {
                    self.remove(std::slice::from_ref(warm));
                    return Err(CreateFailure {
                        error: DriverError::Netlink {
                            step: "limit ingress rate",
                            source: NetlinkError::errno(libc::EINVAL),
                        },
                        link_created: true,
                    });
                }
                self.netns.remove(&warm.name);
                self.netns.insert(ns.name.clone());
                self.claimed += 1;
                Ok(())
            })
            .collect()
    }

    fn mark_claimed(&mut self, nss: &[&Namespace]) {
        self.marked.extend(nss.iter().map(|ns| ns.name.clone()));
    }

    fn remove(&mut self, nss: &[Namespace]) {
        for ns in nss {
            if ns.attached {
                self.forgotten.extend(super::own_conns(ns));
            }
            self.netns.remove(&ns.name);
            if !self.hold_links {
                self.links.remove(&ns.host_ifindex);
            }
            self.gone.push(ns.host_ifindex);
        }
    }

    fn nft(&mut self, groups: &[Vec<ElemOp>]) -> Vec<Result<(), GroupError>> {
        if groups.iter().any(|g| !g.is_empty()) {
            self.transactions += 1;
        }
        groups
            .iter()
            .map(|g| {
                let guilty = g.iter().find_map(|op| match op {
                    ElemOp::Add(Elem::NsIface(n)) if self.fail_nft.contains(n) => {
                        Some(libc::EEXIST)
                    }
                    ElemOp::Add(Elem::Forward(f)) if self.fail_nft_ports.contains(&f.dport) => {
                        Some(libc::EEXIST)
                    }
                    ElemOp::Del(e) if self.deleted_outside.contains(e) => Some(libc::ENOENT),
                    _ => None,
                });
                if let Some(errno) = guilty {
                    return Err(GroupError::Rejected {
                        errno,
                        errno_text: std::io::Error::from_raw_os_error(errno).to_string(),
                    });
                }
                for op in g {
                    // The kernel refuses a double add or a missing delete: so does the fake,
                    // loudly, since the executor must never ask for one.
                    match op {
                        ElemOp::Add(e) => assert!(self.elems.insert(e.clone()), "double add {e:?}"),
                        ElemOp::Del(e) => assert!(self.elems.remove(e), "missing {e:?}"),
                    }
                }
                Ok(())
            })
            .collect()
    }

    fn gone_links(&mut self) -> Gone {
        if self.hold_links {
            return Gone::Links(vec![]);
        }
        Gone::Links(std::mem::take(&mut self.gone))
    }

    fn link_exists(&mut self, ifindex: u32) -> bool {
        self.links.contains(&ifindex)
    }

    fn delete_link(&mut self, ifindex: u32) {
        self.links.remove(&ifindex);
        self.gone.push(ifindex);
    }

    fn gone_netns(&mut self) -> Vec<String> {
        vec![]
    }

    fn delete_table(&mut self) {
        self.elems.clear();
    }

    fn is_local(&mut self, addr: std::net::IpAddr) -> bool {
        self.local.contains(&addr)
    }

    fn forget(&mut self, conns: &[super::Conns]) {
        self.forgotten.extend_from_slice(conns);
    }

    fn check(&mut self, nss: &[Namespace], _fresh: bool) -> Vec<Vec<crate::model::Problem>> {
        self.checked.push(nss.len());
        nss.iter()
            .map(|ns| self.drift.get(&ns.name).cloned().unwrap_or_default())
            .collect()
    }

    fn repair(&mut self, ns: &Namespace) -> Result<(), DriverError> {
        if self.fail_netlink.contains(&ns.name) {
            return Err(DriverError::Netlink {
                step: "add gateway address",
                source: NetlinkError::errno(libc::EPERM),
            });
        }
        self.drift.remove(&ns.name);
        Ok(())
    }

    fn update(&mut self, _old: &Namespace, new: &Namespace) -> Result<(), DriverError> {
        if self.fail_netlink.contains(&new.name) {
            return Err(DriverError::Netlink {
                step: "limit ingress rate",
                source: NetlinkError::errno(libc::EINVAL),
            });
        }
        Ok(())
    }
}
