//! The driver that talks to the kernel: named namespaces, rtnetlink pipelines, the nft table,
//! link notifications.

use super::conntrack::Conntrack;
use super::requests::{self, Ipv6Links, Step};
use super::{Attachment, Conns, CreateFailure, Driver, DriverError, EtcNetns, FileStore, Gone};
use crate::model::{is_warm_name, Namespace, Problem, PEER_IFINDEX};
use crate::netlink::{LinkEvent, LinkEvents, NetlinkError, Request, Rtnl};
use crate::netns::{Graveyard, NetnsDir, NewNetns};
use metrics::Metrics;
use netlink_packet_route::RouteNetlinkMessage;
use nft::{ElemOp, GroupError, NftSocket};
use std::sync::Arc;
use std::time::Instant;

pub struct KernelDriver {
    pub(super) netns: NetnsDir,
    /// The warm pool's namespaces (`None`: its directory could not be made; warm builds fail).
    pub(super) warm: Option<NetnsDir>,
    conntrack: Conntrack,
    pub(super) etc: EtcNetns,
    pub(super) labels: FileStore,
    /// What each attachment wired (driver::files).
    pub(super) attached: FileStore,
    pub(super) host: Rtnl,
    pub(super) events: LinkEvents,
    pub(super) nft: NftSocket,
    pub(super) table: String,
    pub(super) metrics: Arc<Metrics>,
    pub(super) ipv6: Ipv6Links,
    /// `None`: the kernel picks each namespace's id (the naive floor).
    nsids: Option<Nsids>,
    /// `None`: a removed namespace dies at once (the naive floor, or no tmpfs could be mounted).
    graveyard: Option<Graveyard>,
    /// The host's link dump started by recovery, for [`Driver::sweep_orphans`].
    pub(super) orphan_dump: Option<OrphanDump>,
    /// Deletes detached veth pairs in the background (started at the first detach).
    unlinker: Option<Unlinker>,
    /// The host's state as the last fresh [`Driver::check`] dumped it (what a repair adds
    /// back is what was not there).
    pub(super) checked_host: Option<super::check::Host>,
    /// Warm names whose netns file was moved onto a client's name: their emptied files go after
    /// the answer, with the marks ([`Driver::mark_claimed`]).
    moved: Vec<String>,
}

/// What a detach leaves to do after its answer: forget the connections of its addresses, then
/// delete its veth pair. Both wait for the kernel (a conntrack dump walks the whole hash table,
/// ~5 ms here; an `RTM_DELLINK` waits for RCU, ~35 ms), and a detach need not: the executor
/// frees its name and subnet only once the kernel reports the link gone, which is after the
/// forget, so no later namespace of that address loses a connection to it.
struct Detached {
    conns: Vec<Conns>,
    links: Vec<u32>,
}

impl Detached {
    fn run(self, conntrack: &mut Conntrack, rtnl: &mut Rtnl) {
        if let Err(e) = conntrack.forget(&self.conns) {
            tracing::warn!(error = %e, "forget the connections of detached namespaces");
        }
        let reqs = self
            .links
            .iter()
            .map(|i| requests::delete_link(*i))
            .collect();
        for (i, r) in self.links.iter().zip(rtnl.pipeline(reqs)) {
            match r {
                // Gone with its namespace already (the runtime deleted it).
                Err(NetlinkError::Errno { errno, .. }) if errno == libc::ENODEV => {}
                Err(e) => tracing::warn!(ifindex = i, error = %e, "delete a detached veth pair"),
                Ok(_) => {}
            }
        }
    }
}

/// Runs [`Detached`] work on a thread of its own, what is queued meanwhile in one go. Without
/// the thread (it could not be started), the executor does it itself.
struct Unlinker {
    tx: Option<std::sync::mpsc::Sender<Detached>>,
}

impl Unlinker {
    fn start() -> Unlinker {
        let (tx, rx) = std::sync::mpsc::channel::<Detached>();
        let spawned = std::thread::Builder::new()
            .name("unlink".into())
            .spawn(move || {
                let (mut conntrack, mut rtnl) = match (Conntrack::open(), Rtnl::open()) {
                    (Ok(c), Ok(r)) => (c, r),
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::error!(error = %e, "unlink thread: no netlink socket");
                        return;
                    }
                };
                while let Ok(mut work) = rx.recv() {
                    for more in rx.try_iter() {
                        work.conns.extend(more.conns);
                        work.links.extend(more.links);
                    }
                    work.run(&mut conntrack, &mut rtnl);
                }
            });
        Unlinker {
            tx: spawned.is_ok().then_some(tx),
        }
    }

    /// Hands `work` to the thread; gives it back if there is none.
    fn send(&mut self, work: Detached) -> Option<Detached> {
        let Some(tx) = &self.tx else {
            return Some(work);
        };
        tx.send(work).err().map(|e| {
            self.tx = None;
            e.0
        })
    }
}

/// Start-up's one dump of the host's links, for what no netns file leads to: it waits for the
/// agent's first idle second, then runs on a thread of its own.
pub(super) enum OrphanDump {
    Pending,
    Running(std::thread::JoinHandle<Result<Vec<crate::netlink::LinkInfo>, NetlinkError>>),
}

/// The host's ids for new namespaces, handed out downwards from the top of the id space: the
/// newest namespace has the lowest id, and the kernel's id look-ups (a walk in id order that
/// stops at the match) for the namespace being built stay short however many are alive
/// (docs/kernel.md#namespace-ids-handed-out-downwards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Nsids {
    next: i32,
}

impl Nsids {
    const TOP: i32 = i32::MAX;
    /// Below this the agent starts again from the top (after a billion creates); ids still
    /// taken there are refused by the kernel and the namespace gets one of its choosing.
    const FLOOR: i32 = 1 << 30;

    /// Continues below the lowest id of ours the kernel already holds (after a restart).
    fn after(existing: &[i32]) -> Self {
        let lowest = existing
            .iter()
            .copied()
            .filter(|&id| id >= Self::FLOOR)
            .min();
        let next = match lowest {
            Some(l) if l > Self::FLOOR => l - 1,
            _ => Self::TOP,
        };
        Nsids { next }
    }

    fn take(&mut self) -> i32 {
        let id = self.next;
        self.next = if id <= Self::FLOOR { Self::TOP } else { id - 1 };
        id
    }
}

/// One namespace on its way through [`KernelDriver::create`].
struct Building<'a> {
    ns: &'a Namespace,
    /// The new namespace (file, fd, socket inside); `None` once it failed to be made.
    netns: Option<NewNetns>,
    /// Host-side requests not sent yet: the veth pair, then its configuration.
    host: [Vec<Step>; 2],
    outcome: Result<(), CreateFailure>,
}

impl Building<'_> {
    fn fail(&mut self, error: DriverError, link_created: bool) {
        if self.outcome.is_ok() {
            self.outcome = Err(CreateFailure {
                error,
                link_created,
            });
        }
    }
}

/// The `kind` label of nsagent_netlink_requests_total.
fn kind(msg: &RouteNetlinkMessage) -> &'static str {
    match msg {
        RouteNetlinkMessage::NewLink(_) => "newlink",
        RouteNetlinkMessage::SetLink(_) => "setlink",
        RouteNetlinkMessage::GetLink(_) => "getlink",
        RouteNetlinkMessage::NewAddress(_) => "newaddr",
        RouteNetlinkMessage::DelAddress(_) => "deladdr",
        RouteNetlinkMessage::NewRoute(_) => "newroute",
        RouteNetlinkMessage::NewNeighbour(_) => "newneigh",
        RouteNetlinkMessage::NewQueueDiscipline(_) => "newqdisc",
        RouteNetlinkMessage::DelQueueDiscipline(_) => "delqdisc",
        RouteNetlinkMessage::NewNsId(_) => "newnsid",
        _ => "other",
    }
}

/// Sends a pipeline and counts it.
fn pipeline(m: &Metrics, rtnl: &mut Rtnl, reqs: Vec<Request>) -> Vec<Result<(), NetlinkError>> {
    for r in &reqs {
        m.netlink_requests_total
            .with_label_values(&[kind(&r.msg)])
            .inc();
    }
    let out = rtnl.pipeline(reqs);
    for r in &out {
        if let Err(NetlinkError::Errno { errno, .. }) = r {
            m.netlink_errors_total
                .with_label_values(&[&errno.to_string()])
                .inc();
        }
    }
    out
}

/// The directory of a namespace's file: the warm pool's for a warm one. (Of the fields, not of
/// the driver, so that the graveyard can be borrowed beside it.)
fn dir_of<'a>(
    netns: &'a NetnsDir,
    warm: &'a Option<NetnsDir>,
    name: &str,
) -> Result<&'a NetnsDir, DriverError> {
    if !is_warm_name(name) {
        return Ok(netns);
    }
    warm.as_ref()
        .ok_or(DriverError::Bug("the warm pool has no directory"))
}

/// Changes the egress rate limit on the veth inside the namespace `name` of `dir`.
fn limit_egress(
    m: &Metrics,
    dir: &NetnsDir,
    name: &str,
    old: Option<u64>,
    new: Option<u64>,
) -> Result<(), DriverError> {
    let steps: Vec<Step> = super::tc::change(PEER_IFINDEX, old, new)
        .into_iter()
        .map(|r| (r, "limit egress rate"))
        .collect();
    if steps.is_empty() {
        return Ok(());
    }
    let sent = dir.inspect(name, |rtnl| Ok(send(m, rtnl, steps)))?;
    sent.into_iter().find(Result::is_err).unwrap_or(Ok(()))
}

/// Sends steps pipelined; one result per step, a failure named by its step.
pub(super) fn send(m: &Metrics, rtnl: &mut Rtnl, steps: Vec<Step>) -> Vec<Result<(), DriverError>> {
    let names: Vec<&'static str> = steps.iter().map(|(_, s)| *s).collect();
    let out = pipeline(m, rtnl, steps.into_iter().map(|(r, _)| r).collect());
    out.into_iter()
        .zip(names)
        .map(|(r, step)| r.map_err(|source| DriverError::Netlink { step, source }))
        .collect()
}

impl KernelDriver {
    /// Opens the kernel sockets. Link notifications are subscribed to first, so that no
    /// deletion can be missed.
    pub fn new(
        netns: NetnsDir,
        etc: EtcNetns,
        table: String,
        metrics: Arc<Metrics>,
    ) -> Result<Self, DriverError> {
        let open = |source| DriverError::Netlink {
            step: "open netlink socket",
            source,
        };
        let events = LinkEvents::open().map_err(open)?;
        let mut host = Rtnl::open().map_err(open)?;
        let nsids = Nsids::after(&host.nsids().map_err(|source| DriverError::Netlink {
            step: "dump namespace ids",
            source,
        })?);
        let store = |what| {
            FileStore::open(crate::model::beside_netns_dir(netns.dir(), what))
                .map_err(DriverError::Labels)
        };
        let (labels, attached) = (store("labels")?, store("attached")?);
        Ok(KernelDriver {
            conntrack: Conntrack::open().map_err(open)?,
            etc,
            labels,
            attached,
            host,
            events,
            nft: NftSocket::open()?,
            table,
            metrics,
            ipv6: Ipv6Links::Off,
            nsids: Some(nsids),
            graveyard: Graveyard::open(netns.dir())
                .map_err(|e| tracing::warn!(error = %e, "deleted namespaces will die one by one"))
                .ok(),
            warm: NetnsDir::prepare_warm(netns.dir())
                .map_err(|e| tracing::warn!(error = %e, "no warm pool: its directory"))
                .ok(),
            netns,
            orphan_dump: None,
            checked_host: None,
            moved: vec![],
            unlinker: None,
        })
    }

    /// The kernel's defaults instead of the agent's choices: IPv6 address generation on the
    /// veth ends, namespace ids picked by the kernel. Only the benchmark's naive floor wants
    /// this: it measures what the choices save.
    pub fn naive(mut self) -> Self {
        self.ipv6 = Ipv6Links::KernelDefault;
        self.nsids = None;
        self.graveyard = None;
        self
    }

    /// The nft socket, for whole-table transactions (start-up, benchmarks).
    pub fn nft_socket(&mut self) -> &mut NftSocket {
        &mut self.nft
    }

    /// What an update changes outside the nft table: the host veth's mark, the rate limits on
    /// both veth ends, the resolv.conf.
    fn reconfigure(&mut self, old: &Namespace, new: &Namespace) -> Result<(), DriverError> {
        let rate = |ns: &Namespace, ingress: bool| {
            ns.conf
                .bandwidth
                .and_then(|b| if ingress { b.ingress_bps } else { b.egress_bps })
        };
        let mut host = vec![];
        if old.conf.nat != new.conf.nat {
            let mark = requests::mark(new);
            host.push((mark, "mark host veth"));
        }
        for r in super::tc::change(new.host_ifindex, rate(old, true), rate(new, true)) {
            host.push((r, "limit ingress rate"));
        }
        if let Some(Err(e)) = send(&self.metrics, &mut self.host, host)
            .into_iter()
            .find(Result::is_err)
        {
            return Err(e);
        }
        limit_egress(
            &self.metrics,
            &self.netns,
            &new.name,
            rate(old, false),
            rate(new, false),
        )?;
        if old.conf.dns != new.conf.dns {
            match &new.conf.dns {
                Some(dns) => self.etc.write(&new.name, dns).map_err(DriverError::Etc)?,
                None => self.etc.remove(&new.name),
            }
        }
        if old.conf.labels != new.conf.labels {
            self.labels
                .set_labels(&new.name, &new.conf.labels)
                .map_err(DriverError::Labels)?;
        }
        Ok(())
    }

    /// [`Driver::claim`]: the name first (its file, O_EXCL: a taken name leaves the warm
    /// namespace untouched), then the host veth's mark and ingress limit in one pipeline for
    /// all, then what is per namespace (egress limit, resolv.conf), and last the move of the
    /// netns file, so that a crash before it leaves a warm namespace marked as a client's,
    /// which recovery removes, never a client's namespace marked as warm.
    fn claim_from(
        &mut self,
        warm: &NetnsDir,
        claims: &[(Namespace, Namespace)],
    ) -> Vec<Result<(), CreateFailure>> {
        let fail = |error, used: bool| {
            Err(CreateFailure {
                error,
                link_created: used,
            })
        };
        let mut out: Vec<Result<(), CreateFailure>> = claims
            .iter()
            .map(
                |(_, ns)| match NetnsDir::reserve_in(&self.netns, &ns.name) {
                    Ok(()) => Ok(()),
                    Err(e) => fail(e.into(), false),
                },
            )
            .collect();
        let mut owner = vec![];
        let mut steps = vec![];
        for (i, (_, ns)) in claims.iter().enumerate() {
            if out[i].is_err() {
                continue;
            }
            // The mark comes after the answer (Driver::mark_claimed).
            let ingress = ns.conf.bandwidth.and_then(|b| b.ingress_bps);
            for r in super::tc::change(ns.host_ifindex, None, ingress) {
                owner.push(i);
                steps.push((r, "limit ingress rate"));
            }
        }
        for (i, r) in owner
            .into_iter()
            .zip(send(&self.metrics, &mut self.host, steps))
        {
            if let (Err(e), true) = (r, out[i].is_ok()) {
                out[i] = fail(e, true);
            }
        }
        for (i, (w, ns)) in claims.iter().enumerate() {
            if out[i].is_err() {
                continue;
            }
            let egress = ns.conf.bandwidth.and_then(|b| b.egress_bps);
            if let Err(e) = limit_egress(&self.metrics, warm, &w.name, None, egress) {
                out[i] = fail(e, true);
                continue;
            }
            if let Some(dns) = &ns.conf.dns {
                if let Err(e) = self.etc.write(&ns.name, dns) {
                    out[i] = fail(DriverError::Etc(e), true);
                    continue;
                }
            }
            if let Err(e) = self.labels.new_labels(&ns.name, &ns.conf.labels) {
                out[i] = fail(DriverError::Labels(e), true);
                continue;
            }
            match warm.move_to(&w.name, &self.netns, &ns.name) {
                Ok(()) => self.moved.push(w.name.clone()),
                Err(e) => out[i] = fail(e.into(), true),
            }
        }
        // What failed after its name was taken: the name goes, and the warm namespace (its mark
        // changed) with it.
        for (i, (w, ns)) in claims.iter().enumerate() {
            if matches!(&out[i], Err(f) if f.link_created) {
                self.netns.unreserve(&ns.name);
                self.etc.remove(&ns.name);
                self.forget_labels(&ns.name);
                if let Some(g) = &mut self.graveyard {
                    g.hold(&warm.path(&w.name));
                }
                warm.remove(&w.name);
            }
        }
        out
    }

    /// Removes a namespace's labels (a failure only leaves a file that recovery removes).
    pub(super) fn forget_labels(&self, name: &str) {
        if let Err(e) = self.labels.remove(name) {
            tracing::warn!(name, error = %e, "remove labels");
        }
    }

    /// Removes every file the agent keeps for a namespace: resolv.conf, labels, attachment.
    pub(super) fn forget_files(&self, name: &str) {
        self.etc.remove(name);
        self.forget_labels(name);
        if let Err(e) = self.attached.remove(name) {
            tracing::warn!(name, error = %e, "remove attachment");
        }
    }

    /// Makes each namespace's netns and builds its host requests.
    fn start<'a>(&self, ns: &'a Namespace) -> Building<'a> {
        let made = if ns.attached {
            self.netns
                .open_foreign(std::path::Path::new(&ns.netns_path))
                .map_err(DriverError::from)
        } else {
            dir_of(&self.netns, &self.warm, &ns.name)
                .and_then(|d| d.create(&ns.name).map_err(DriverError::from))
        };
        match made {
            Ok(made) => Building {
                host: requests::host(ns, &made, self.ipv6),
                ns,
                netns: Some(made),
                outcome: Ok(()),
            },
            Err(error) => Building {
                ns,
                netns: None,
                host: [vec![], vec![]],
                outcome: Err(CreateFailure {
                    error,
                    link_created: false,
                }),
            },
        }
    }

    /// Each new namespace's id in the host, before its veth exists. Best effort: an id the
    /// kernel refuses (taken by someone else) only means the kernel picks one itself.
    fn assign_nsids(&mut self, all: &[Building]) {
        let Some(nsids) = self.nsids.as_mut() else {
            return;
        };
        // An attached namespace may have an id already; the kernel keeps it.
        let reqs: Vec<Request> = all
            .iter()
            .filter(|b| !b.ns.attached)
            .filter_map(|b| b.netns.as_ref())
            .map(|made| requests::nsid(made, nsids.take()))
            .collect();
        for r in pipeline(&self.metrics, &mut self.host, reqs) {
            if let Err(e) = r {
                tracing::debug!(error = %e, "assign namespace id");
            }
        }
    }

    /// One pipelined round on the host socket for every namespace still on track.
    fn host_round(&mut self, all: &mut [Building], round: usize) {
        let mut owner = vec![];
        let mut steps = vec![];
        for (i, b) in all.iter_mut().enumerate() {
            if b.outcome.is_ok() {
                for s in std::mem::take(&mut b.host[round]) {
                    owner.push(i);
                    steps.push(s);
                }
            }
        }
        for (i, r) in owner
            .into_iter()
            .zip(send(&self.metrics, &mut self.host, steps))
        {
            if let Err(mut e) = r {
                // The peer is born with index 2 (model::PEER_IFINDEX), which a namespace that
                // has an interface already (another attachment) cannot give it.
                if all[i].ns.attached && round == 0 && e.errno() == Some(libc::EBUSY) {
                    e = DriverError::PeerIndexTaken(all[i].ns.netns_path.clone());
                }
                all[i].fail(e, round == 1);
            }
        }
    }

    /// The namespace side, on the namespace's own socket.
    fn configure_inside(&mut self, b: &mut Building) {
        let Some(made) = b.netns.as_mut() else { return };
        if b.outcome.is_err() {
            return;
        }
        let steps = requests::inside(b.ns, self.ipv6);
        if let Some(Err(e)) = send(&self.metrics, &mut made.rtnl, steps)
            .into_iter()
            .find(Result::is_err)
        {
            b.fail(e, true);
        }
    }

    /// The files under `/etc/netns`, once the kernel side is done.
    fn write_files(&mut self, b: &mut Building) {
        if b.outcome.is_err() {
            return;
        }
        if let Some(dns) = &b.ns.conf.dns {
            if let Err(e) = self.etc.write(&b.ns.name, dns) {
                b.fail(DriverError::Etc(e), true);
                return;
            }
        }
        if let Err(e) = self.labels.new_labels(&b.ns.name, &b.ns.conf.labels) {
            b.fail(DriverError::Labels(e), true);
            return;
        }
        if let (true, Some(made)) = (b.ns.attached, &b.netns) {
            let record = nix::sys::stat::fstat(&made.fd)
                .map_err(std::io::Error::from)
                .and_then(|st| {
                    let at = Attachment {
                        netns_path: b.ns.netns_path.clone(),
                        dev: st.st_dev,
                        ino: st.st_ino,
                    };
                    self.attached.write(&b.ns.name, &at)
                });
            if let Err(e) = record {
                b.fail(DriverError::Labels(e), true);
            }
        }
    }

    /// Closes every fd into the new namespace (else it would outlive its file) and undoes a
    /// failed one.
    fn finish(&mut self, b: Building) -> Result<(), CreateFailure> {
        if let Some(made) = b.netns {
            drop(made);
            match &b.outcome {
                Ok(()) => {}
                Err(f) if b.ns.attached => {
                    // Not our namespace: only the veth pair we put in goes.
                    if f.link_created {
                        super::Driver::delete_link(self, b.ns.host_ifindex);
                    }
                    self.forget_files(&b.ns.name);
                }
                Err(_) => {
                    if let Ok(dir) = dir_of(&self.netns, &self.warm, &b.ns.name) {
                        dir.remove(&b.ns.name);
                    }
                    self.forget_files(&b.ns.name);
                }
            }
        }
        b.outcome
    }
}

impl Driver for KernelDriver {
    fn create(&mut self, items: &[Namespace]) -> Vec<Result<(), CreateFailure>> {
        let mut all: Vec<Building> = items.iter().map(|ns| self.start(ns)).collect();
        self.assign_nsids(&all);
        // Host side, two pipelined rounds on the host socket: every veth pair, then the
        // configuration of the pairs that were made.
        self.host_round(&mut all, 0);
        for b in all.iter_mut().filter(|b| b.outcome.is_ok()) {
            if b.ns.v6.is_some() {
                if let Err(e) = crate::netns::force_ipv6_forwarding(&b.ns.host_ifname) {
                    b.fail(DriverError::Sysctl("force_forwarding", e), true);
                }
            } else if self.ipv6 == Ipv6Links::Off {
                requests::disable_ipv6(&b.ns.host_ifname);
            }
        }
        self.host_round(&mut all, 1);
        for b in &mut all {
            self.configure_inside(b);
            self.write_files(b);
        }
        all.into_iter().map(|b| self.finish(b)).collect()
    }

    fn remove(&mut self, nss: &[Namespace]) {
        // The host veths' addresses first, in one pipeline: a device that still has IPv4
        // routes when it unregisters makes the kernel flush (walk) the host's whole FIB, once
        // per device; without them it does not (docs/kernel.md#deleting-the-address-first).
        let steps = nss
            .iter()
            .map(|ns| (requests::delete_address(ns), "delete gateway address"))
            .collect();
        for (ns, r) in nss.iter().zip(send(&self.metrics, &mut self.host, steps)) {
            if let Err(e) = r {
                tracing::debug!(name = %ns.name, error = %e, "delete gateway address");
            }
        }
        let (mut clients, mut warm) = (vec![], vec![]);
        // An attached namespace is not ours to end: its veth pair goes, it stays. The
        // executor waits for the link to be gone before it reuses its name or subnet.
        let detached = Detached {
            conns: nss
                .iter()
                .filter(|ns| ns.attached)
                .flat_map(super::own_conns)
                .collect(),
            links: nss
                .iter()
                .filter(|ns| ns.attached)
                .map(|ns| ns.host_ifindex)
                .collect(),
        };
        if !detached.links.is_empty() {
            let unlinker = self.unlinker.get_or_insert_with(Unlinker::start);
            if let Some(work) = unlinker.send(detached) {
                work.run(&mut self.conntrack, &mut self.host);
            }
        }
        for ns in nss.iter().filter(|ns| ns.attached) {
            self.forget_files(&ns.name);
        }
        for ns in nss.iter().filter(|ns| !ns.attached) {
            let Ok(dir) = dir_of(&self.netns, &self.warm, &ns.name) else {
                continue;
            };
            if let Some(g) = &mut self.graveyard {
                g.hold(&dir.path(&ns.name));
            }
            if is_warm_name(&ns.name) {
                warm.push(ns.name.as_str());
            } else {
                clients.push(ns.name.as_str());
            }
        }
        self.netns.remove_all(&clients);
        if let Some(w) = &self.warm {
            w.remove_all(&warm);
        }
        for name in clients {
            self.forget_files(name);
        }
    }

    fn claim(&mut self, claims: &[(Namespace, Namespace)]) -> Vec<Result<(), CreateFailure>> {
        let Some(warm) = self.warm.take() else {
            return claims
                .iter()
                .map(|_| {
                    Err(CreateFailure {
                        error: DriverError::Bug("the warm pool has no directory"),
                        link_created: false,
                    })
                })
                .collect();
        };
        let out = self.claim_from(&warm, claims);
        self.warm = Some(warm);
        out
    }

    fn mark_claimed(&mut self, nss: &[&Namespace]) {
        let steps = nss
            .iter()
            .map(|ns| (requests::mark(ns), "mark host veth"))
            .collect();
        for (ns, r) in nss.iter().zip(send(&self.metrics, &mut self.host, steps)) {
            if let Err(e) = r {
                // Harmless until the next start, which reads the warm mark as claimed and
                // writes this one again.
                tracing::warn!(name = %ns.name, error = %e, "mark a claimed namespace's host veth");
            }
        }
        if let Some(warm) = &self.warm {
            for name in self.moved.drain(..) {
                warm.remove_moved(&name);
            }
        }
    }

    fn sweep_orphans(&mut self, ours: &dyn Fn(&str, u32) -> bool, idle: bool) -> Vec<String> {
        self.sweep(ours, idle)
    }

    fn release_removed(&mut self) -> usize {
        self.graveyard.as_mut().map_or(0, Graveyard::release)
    }

    fn removed_held(&self) -> (usize, Option<Instant>) {
        self.graveyard.as_ref().map_or((0, None), Graveyard::held)
    }

    fn nft(&mut self, groups: &[Vec<ElemOp>]) -> Vec<Result<(), GroupError>> {
        if groups.iter().all(|g| g.is_empty()) {
            return groups.iter().map(|_| Ok(())).collect();
        }
        let t = Instant::now();
        let out = self.nft.apply_groups(&self.table, groups);
        let m = &self.metrics;
        m.nft_transaction_duration_seconds
            .observe(t.elapsed().as_secs_f64());
        let failed = out.iter().filter(|r| r.is_err()).count();
        let outcome = match failed {
            0 => "ok",
            n if n == out.len() => "failed",
            _ => "partial",
        };
        m.nft_transactions_total.with_label_values(&[outcome]).inc();
        out
    }

    fn gone_links(&mut self) -> Gone {
        let mut gone = vec![];
        for e in self.events.drain() {
            match e {
                LinkEvent::Deleted(i) => gone.push(i),
                LinkEvent::Lost => return Gone::Resync,
            }
        }
        Gone::Links(gone)
    }

    fn delete_link(&mut self, ifindex: u32) {
        let r = pipeline(
            &self.metrics,
            &mut self.host,
            vec![requests::delete_link(ifindex)],
        );
        if let Some(Err(e)) = r.first() {
            tracing::debug!(ifindex, error = %e, "delete link");
        }
    }

    fn gone_netns(&mut self) -> Vec<String> {
        self.netns.deleted()
    }

    fn delete_table(&mut self) {
        let r = nft::Transaction::delete_table(&self.table)
            .and_then(|tx| self.nft.run_all_or_nothing(tx));
        if let Err(e) = r {
            tracing::warn!(table = %self.table, error = %e, "delete table");
        }
    }

    fn update(&mut self, old: &Namespace, new: &Namespace) -> Result<(), DriverError> {
        let r = self.reconfigure(old, new);
        if r.is_err() {
            // Best effort back to where it was; the first error is the one to report.
            if let Err(e) = self.reconfigure(new, old) {
                tracing::error!(name = %old.name, error = %e, "undoing a failed update");
            }
        }
        r
    }

    fn is_local(&mut self, addr: std::net::IpAddr) -> bool {
        self.host.is_local(addr).unwrap_or_else(|e| {
            tracing::warn!(%addr, error = %e, "route lookup");
            false
        })
    }

    fn forget(&mut self, conns: &[Conns]) {
        match self.conntrack.forget(conns) {
            Ok(n) => {
                if n > 0 {
                    tracing::debug!(entries = n, "forgot the connections of deleted namespaces");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "flushing conntrack entries of deleted namespaces")
            }
        }
    }

    fn check(&mut self, nss: &[Namespace], fresh: bool) -> Vec<Vec<Problem>> {
        self.check_all(nss, fresh).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "check: cannot read the host's state");
            nss.iter().map(|_| vec![]).collect()
        })
    }

    fn repair(&mut self, ns: &Namespace) -> Result<(), DriverError> {
        self.repair_one(ns)
    }

    fn link_exists(&mut self, ifindex: u32) -> bool {
        let r = self.host.pipeline(vec![requests::get_link(ifindex)]);
        // ENODEV means gone; anything else, assume it is still there and ask again later.
        !matches!(r.first(), Some(Err(NetlinkError::Errno { errno, .. })) if *errno == libc::ENODEV)
    }
}

#[cfg(test)]
mod tests {
    use super::Nsids;

    #[test]
    fn nsids_go_down_below_what_the_kernel_holds_and_wrap_at_the_floor() {
        let mut n = Nsids::after(&[0, 3]);
        assert_eq!(n.take(), i32::MAX);
        assert_eq!(n.take(), i32::MAX - 1);
        let mut n = Nsids::after(&[0, i32::MAX, i32::MAX - 7]);
        assert_eq!(n.take(), i32::MAX - 8);
        let mut n = Nsids::after(&[Nsids::FLOOR + 1]);
        assert_eq!(n.take(), Nsids::FLOOR);
        assert_eq!(n.take(), i32::MAX);
    }
}
