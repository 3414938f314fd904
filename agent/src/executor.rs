//! The executor: one dedicated thread that owns the agent's view of what exists. It drains the
//! command queue in batches, plans each batch against its view (nothing touches the kernel for a
//! command that is refused), runs the netlink work for the whole batch, then one nft transaction,
//! then answers every command.

use crate::driver::{Driver, Gone};
use crate::model::{Namespace, NamespaceSpec, Subnet};
use crate::pool::Pool;
use crate::protocol::{ApiError, ErrorCode, Op};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use metrics::Metrics;
use nft::{Elem, ElemOp};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub type Reply = Result<Value, ApiError>;

/// One request on its way through the queue.
pub struct Command {
    pub op: Op,
    pub reply: oneshot::Sender<Reply>,
}

/// Static facts reported by `status`.
#[derive(Debug, Clone)]
pub struct Info {
    pub version: &'static str,
    pub table: String,
    pub uplink: Option<String>,
    pub netns_dir: PathBuf,
    pub pool: Subnet,
    pub started: Instant,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_batch: usize,
    /// Namespaces whose host link the kernel has not freed yet. Above this, new work waits:
    /// churn must not outrun the kernel's clean-up.
    pub max_pending: usize,
    /// At shutdown, remove every namespace in one final batch and delete the table.
    pub cleanup_on_exit: bool,
}

/// A host link that is dying: everything it used stays reserved until the kernel removes it.
#[derive(Debug)]
struct Dying {
    name: Option<String>,
    subnet: Subnet,
    host_ifname: String,
}

pub struct Executor<D: Driver> {
    driver: D,
    info: Info,
    limits: Limits,
    pool: Pool,
    live: HashMap<String, Namespace>,
    /// Every subnet in use (live, being created, dying): start -> end, for O(log n) overlap checks.
    subnets: BTreeMap<u32, u32>,
    host_ifnames: HashSet<String>,
    dying: HashMap<u32, Dying>,
    dying_names: HashSet<String>,
    /// Commands waiting for a name's old namespace to be gone, in arrival order.
    deferred: HashMap<String, VecDeque<(Command, Instant)>>,
    /// Batch sizes seen, in power-of-two buckets (1, 2-3, 4-7, ... 512+).
    batch_sizes: [u64; BATCH_BUCKETS],
    metrics: Arc<Metrics>,
    /// Live set elements (namespaces' and uplinks'), for the nft_elements gauge.
    elements: i64,
    /// Host ifindex -> name of live namespaces, to recognise links deleted by someone else.
    by_ifindex: HashMap<u32, String>,
}

const BATCH_BUCKETS: usize = 10;

enum Planned {
    Create(Namespace, oneshot::Sender<Reply>),
    Delete(Namespace, oneshot::Sender<Reply>),
}

impl<D: Driver> Executor<D> {
    pub fn new(driver: D, info: Info, limits: Limits, pool: Pool, metrics: Arc<Metrics>) -> Self {
        let addrs = |slots: u32| slots as i64 * (1i64 << (32 - pool.slot_prefix()));
        metrics.pool_addresses.set(addrs(pool.size()));
        metrics.pool_addresses_free.set(addrs(pool.free()));
        let elements = info.uplink.iter().count() as i64;
        metrics.nft_elements.set(elements);
        Executor {
            driver,
            info,
            limits,
            pool,
            live: HashMap::new(),
            subnets: BTreeMap::new(),
            host_ifnames: HashSet::new(),
            dying: HashMap::new(),
            dying_names: HashSet::new(),
            deferred: HashMap::new(),
            batch_sizes: [0; BATCH_BUCKETS],
            metrics,
            elements,
            by_ifindex: HashMap::new(),
        }
    }

    /// Takes over namespaces found whole at start-up (their elements are already in the table).
    pub fn adopt(&mut self, namespaces: Vec<Namespace>) {
        for ns in namespaces {
            self.reserve(&ns);
            self.elements += elems(&ns).len() as i64;
            self.by_ifindex.insert(ns.host_ifindex, ns.name.clone());
            self.live.insert(ns.name.clone(), ns);
        }
        self.update_gauges();
    }

    /// Someone else deleted part of a live namespace (its veth, or its netns file): remove the
    /// rest, so that what the agent reports is what exists.
    fn external_removal(&mut self, name: &str, link_gone: bool) {
        let Some(ns) = self.live.remove(name) else {
            return;
        };
        self.by_ifindex.remove(&ns.host_ifindex);
        let ops: Vec<ElemOp> = elems(&ns).into_iter().map(ElemOp::Del).collect();
        if let Some(Err(e)) = self.driver.nft(&[ops]).pop() {
            tracing::warn!(name, error = %e, "removing elements of an externally deleted namespace");
        }
        self.elements -= elems(&ns).len() as i64;
        self.driver.remove(&ns);
        if link_gone {
            self.release(ns.subnet, &ns.host_ifname);
        } else {
            // The netns file is gone but a process may still hold the namespace, and with it
            // the veth: take the link down ourselves, then wait for the kernel as usual.
            self.driver.delete_link(ns.host_ifindex);
            self.start_dying(&ns, false);
        }
        self.metrics
            .recovery_total
            .with_label_values(&["external"])
            .inc();
        tracing::info!(
            name,
            what = if link_gone { "host veth" } else { "netns file" },
            "namespace was deleted from outside the agent; cleaned up the rest"
        );
        self.update_gauges();
    }

    /// Runs until every sender of the queue is gone.
    pub fn run(mut self, rx: Receiver<Command>) {
        let mut batch: VecDeque<Command> = VecDeque::new();
        loop {
            self.reap(&mut batch);
            self.expire_deferred();
            if batch.is_empty() {
                let wait = if self.dying.is_empty() && self.deferred.is_empty() {
                    Duration::from_secs(1)
                } else {
                    Duration::from_millis(20)
                };
                match rx.recv_timeout(wait) {
                    Ok(cmd) => batch.push_back(cmd),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            // Take what is queued, never wait for company.
            while batch.len() < self.limits.max_batch {
                match rx.try_recv() {
                    Ok(cmd) => batch.push_back(cmd),
                    Err(_) => break,
                }
            }
            self.wait_for_kernel_cleanup(&mut batch);
            let bucket = (usize::BITS - 1 - batch.len().max(1).leading_zeros()) as usize;
            self.batch_sizes[bucket.min(BATCH_BUCKETS - 1)] += 1;
            self.metrics.batch_size.observe(batch.len() as f64);
            self.metrics.queue_depth.set(rx.len() as i64);
            self.process(&mut batch);
            self.update_gauges();
        }
        if self.limits.cleanup_on_exit {
            self.cleanup_all();
        }
        tracing::info!("command queue closed; executor stops");
    }

    /// Removes everything the agent made, in one batch, then the table.
    fn cleanup_all(&mut self) {
        let mut batch: VecDeque<Command> = self
            .live
            .keys()
            .map(|name| Command {
                op: Op::Delete { name: name.clone() },
                reply: oneshot::channel().0,
            })
            .collect();
        let n = batch.len();
        self.process(&mut batch);
        self.driver.delete_table();
        tracing::info!(
            namespaces = n,
            "cleanup on exit: removed every namespace and the table"
        );
    }

    /// Processes a batch in segments that keep sequential semantics: a segment ends before a
    /// command that touches a name already touched in it, and before a read that follows a write.
    pub fn process(&mut self, batch: &mut VecDeque<Command>) {
        let _span = tracing::debug_span!("batch", commands = batch.len()).entered();
        while !batch.is_empty() {
            let mut names: HashSet<String> = HashSet::new();
            let mut writes = false;
            let mut planned = vec![];
            while let Some(cmd) = batch.front() {
                let name = match &cmd.op {
                    Op::Create(s) => Some(s.name.clone()),
                    Op::Delete { name } => Some(name.clone()),
                    _ => None,
                };
                let is_write = name.is_some();
                if let Some(n) = &name {
                    if names.contains(n) {
                        break;
                    }
                }
                if !is_write && writes {
                    break;
                }
                let Some(cmd) = batch.pop_front() else { break };
                if let Some(n) = &name {
                    // A create of a name whose old namespace the kernel is still destroying
                    // waits for it (and so does everything after it for that name).
                    let waits = self.deferred.contains_key(n)
                        || (matches!(cmd.op, Op::Create(_)) && self.dying_names.contains(n));
                    if waits {
                        self.deferred
                            .entry(n.clone())
                            .or_default()
                            .push_back((cmd, Instant::now()));
                        continue;
                    }
                }
                if let Some(n) = name {
                    names.insert(n);
                    writes = true;
                }
                if let Some(p) = self.plan(cmd) {
                    planned.push(p);
                }
            }
            self.execute(planned);
        }
    }

    fn reserve(&mut self, ns: &Namespace) {
        self.subnets.insert(ns.subnet.start(), ns.subnet.end());
        self.pool.mark(ns.subnet);
        self.host_ifnames.insert(ns.host_ifname.clone());
    }

    fn release(&mut self, subnet: Subnet, host_ifname: &str) {
        self.subnets.remove(&subnet.start());
        self.pool.release(subnet);
        self.host_ifnames.remove(host_ifname);
    }

    /// Answers reads at once; checks writes against the view and reserves what they will use.
    fn plan(&mut self, cmd: Command) -> Option<Planned> {
        let answer = |reply: oneshot::Sender<Reply>, r: Reply| {
            // The client may have gone; nothing to do about it.
            let _ = reply.send(r);
        };
        match cmd.op {
            Op::Ping => answer(cmd.reply, Ok(json!({ "version": self.info.version }))),
            Op::Status => answer(cmd.reply, Ok(self.status())),
            Op::Get { name } => match self.live.get(&name) {
                Some(ns) => answer(cmd.reply, Ok(ns_json(ns))),
                None => answer(cmd.reply, Err(not_found(&name))),
            },
            Op::List => {
                let mut all: Vec<&Namespace> = self.live.values().collect();
                all.sort_by(|a, b| a.name.cmp(&b.name));
                let list: Vec<Value> = all.into_iter().map(ns_json).collect();
                answer(cmd.reply, Ok(json!({ "namespaces": list })));
            }
            Op::Delete { name } => match self.live.get(&name) {
                Some(ns) => return Some(Planned::Delete(ns.clone(), cmd.reply)),
                None => answer(cmd.reply, Err(not_found(&name))),
            },
            Op::Create(spec) => match self.plan_create(&spec) {
                Ok(ns) => {
                    self.reserve(&ns);
                    return Some(Planned::Create(ns, cmd.reply));
                }
                Err(e) => answer(cmd.reply, Err(e)),
            },
        }
        None
    }

    fn plan_create(&mut self, spec: &NamespaceSpec) -> Result<Namespace, ApiError> {
        if self.live.contains_key(&spec.name) {
            return Err(ApiError::new(
                ErrorCode::Exists,
                format!("namespace {} exists", spec.name),
            ));
        }
        if let Some(h) = &spec.host_ifname {
            if self.host_ifnames.contains(h) {
                return Err(ApiError::new(
                    ErrorCode::Exists,
                    format!("host interface {h} is in use"),
                ));
            }
        }
        let subnet = match spec.subnet {
            Some(s) => {
                if overlaps(&self.subnets, s) {
                    return Err(ApiError::new(
                        ErrorCode::SubnetInUse,
                        format!("subnet {s} overlaps one in use"),
                    ));
                }
                s
            }
            None => {
                let subnets = &self.subnets;
                self.pool
                    .allocate(|s| !overlaps(subnets, s))
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::PoolExhausted,
                            format!(
                                "no free /{} left in {}",
                                self.pool.slot_prefix(),
                                self.info.pool
                            ),
                        )
                    })?
            }
        };
        let ns = Namespace::plan(spec, subnet, &self.info.netns_dir);
        if spec.host_ifname.is_none() && self.host_ifnames.contains(&ns.host_ifname) {
            // Cannot happen while subnets are unique; refuse rather than collide.
            self.pool.release(subnet);
            return Err(ApiError::new(
                ErrorCode::Internal,
                "host interface name collision",
            ));
        }
        Ok(ns)
    }

    fn execute(&mut self, planned: Vec<Planned>) {
        if planned.is_empty() {
            return;
        }
        // 1. Netlink phase for the creates.
        let creates: Vec<Namespace> = planned
            .iter()
            .filter_map(|p| match p {
                Planned::Create(ns, _) => Some(ns.clone()),
                _ => None,
            })
            .collect();
        let mut created = self.driver.create(&creates).into_iter();
        // 2. One nft transaction for everything that got this far.
        let mut groups: Vec<Vec<ElemOp>> = Vec::with_capacity(planned.len());
        let mut netlink_results = Vec::with_capacity(planned.len());
        for p in &planned {
            match p {
                Planned::Create(ns, _) => {
                    let r = created.next().unwrap_or_else(|| {
                        Err(crate::driver::CreateFailure {
                            error: ApiError::new(
                                ErrorCode::Internal,
                                "driver returned too few results",
                            ),
                            link_created: false,
                        })
                    });
                    groups.push(if r.is_ok() {
                        elems(ns).into_iter().map(ElemOp::Add).collect()
                    } else {
                        vec![]
                    });
                    netlink_results.push(r);
                }
                Planned::Delete(ns, _) => {
                    groups.push(elems(ns).into_iter().map(ElemOp::Del).collect());
                    netlink_results.push(Ok(()));
                }
            }
        }
        let nft_results = self.driver.nft(&groups);
        // 3. Settle and answer.
        for ((p, nl), nf) in planned.into_iter().zip(netlink_results).zip(nft_results) {
            match p {
                Planned::Create(ns, reply) => {
                    let r = match (nl, nf) {
                        (Ok(()), Ok(())) => {
                            self.elements += elems(&ns).len() as i64;
                            self.by_ifindex.insert(ns.host_ifindex, ns.name.clone());
                            let out = ns_json(&ns);
                            self.live.insert(ns.name.clone(), ns);
                            Ok(out)
                        }
                        (Ok(()), Err(e)) => {
                            tracing::info!(name = %ns.name, error = %e, "create rolled back: nft rejected its elements");
                            self.driver.remove(&ns);
                            self.start_dying(&ns, false);
                            Err(ApiError::new(ErrorCode::Kernel, e.to_string()))
                        }
                        (Err(f), _) => {
                            tracing::info!(name = %ns.name, error = %f.error.message, "create rolled back");
                            if f.link_created {
                                self.start_dying(&ns, false);
                            } else {
                                self.release(ns.subnet, &ns.host_ifname);
                            }
                            Err(f.error)
                        }
                    };
                    let _ = reply.send(r);
                }
                Planned::Delete(ns, reply) => {
                    let r = match nf {
                        Ok(()) => {
                            self.elements -= elems(&ns).len() as i64;
                            self.by_ifindex.remove(&ns.host_ifindex);
                            self.live.remove(&ns.name);
                            self.driver.remove(&ns);
                            self.start_dying(&ns, true);
                            Ok(json!({ "name": ns.name }))
                        }
                        Err(e) => {
                            tracing::warn!(name = %ns.name, error = %e, "delete failed at nft; namespace kept");
                            Err(ApiError::new(ErrorCode::Kernel, e.to_string()))
                        }
                    };
                    let _ = reply.send(r);
                }
            }
        }
    }

    fn start_dying(&mut self, ns: &Namespace, keep_name: bool) {
        if keep_name {
            self.dying_names.insert(ns.name.clone());
        }
        self.dying.insert(
            ns.host_ifindex,
            Dying {
                name: keep_name.then(|| ns.name.clone()),
                subnet: ns.subnet,
                host_ifname: ns.host_ifname.clone(),
            },
        );
    }

    /// The kernel has removed a dying link: free what it held, and let commands that waited
    /// for its name go first in the next batch.
    fn finish_dying(&mut self, ifindex: u32, batch: &mut VecDeque<Command>) {
        if let Some(d) = self.dying.remove(&ifindex) {
            if let Some(n) = &d.name {
                self.dying_names.remove(n);
                if let Some(waiting) = self.deferred.remove(n) {
                    for (cmd, _) in waiting.into_iter().rev() {
                        batch.push_front(cmd);
                    }
                }
            }
            self.release(d.subnet, &d.host_ifname);
        }
    }

    /// Releases what the kernel has finished destroying.
    fn reap(&mut self, batch: &mut VecDeque<Command>) {
        match self.driver.gone_links() {
            Gone::Links(gone) => {
                for i in gone {
                    if self.dying.contains_key(&i) {
                        self.finish_dying(i, batch);
                    } else if let Some(name) = self.by_ifindex.get(&i).cloned() {
                        self.external_removal(&name, true);
                    }
                }
            }
            Gone::Resync => {
                let all: Vec<u32> = self.dying.keys().copied().collect();
                for i in all {
                    if !self.driver.link_exists(i) {
                        self.finish_dying(i, batch);
                    }
                }
            }
        }
        for name in self.driver.gone_netns() {
            if self.live.contains_key(&name) {
                self.external_removal(&name, false);
            }
        }
    }

    /// A name whose old namespace is held alive (e.g. a process still inside it) cannot be
    /// reused; waiting commands get `busy` after a while instead of waiting forever.
    fn expire_deferred(&mut self) {
        let limit = Duration::from_secs(10);
        let now = Instant::now();
        for queue in self.deferred.values_mut() {
            while queue
                .front()
                .is_some_and(|(_, t)| now.duration_since(*t) > limit)
            {
                if let Some((cmd, _)) = queue.pop_front() {
                    let _ = cmd.reply.send(Err(ApiError::new(
                        ErrorCode::Busy,
                        "the previous namespace of this name is still being destroyed by the kernel (is a process still inside it?); retry later",
                    )));
                }
            }
        }
        self.deferred.retain(|_, q| !q.is_empty());
    }

    fn wait_for_kernel_cleanup(&mut self, batch: &mut VecDeque<Command>) {
        if self.dying.len() < self.limits.max_pending {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.dying.len() >= self.limits.max_pending && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
            self.reap(batch);
        }
    }

    fn update_gauges(&self) {
        let m = &self.metrics;
        m.namespaces.set(self.live.len() as i64);
        m.pool_addresses_free
            .set(self.pool.free() as i64 * (1i64 << (32 - self.pool.slot_prefix())));
        m.nft_elements.set(self.elements);
    }

    fn status(&self) -> Value {
        json!({
            "version": self.info.version,
            "namespaces": self.live.len(),
            "pending_deletions": self.dying.len(),
            "pool": {
                "cidr": self.info.pool.to_string(),
                "prefix_len": self.pool.slot_prefix(),
                "size": self.pool.size(),
                "free": self.pool.free(),
            },
            "uplink": self.info.uplink,
            "table": self.info.table,
            "netns_dir": self.info.netns_dir.to_string_lossy(),
            "uptime_seconds": self.info.started.elapsed().as_secs(),
            "batch_sizes": self.batch_sizes_json(),
        })
    }

    /// `{"1": n, "2-3": n, "4-7": n, …}`: how many executor batches had that many commands.
    fn batch_sizes_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (i, n) in self.batch_sizes.iter().enumerate() {
            let lo = 1usize << i;
            let key = if i == BATCH_BUCKETS - 1 {
                format!("{lo}+")
            } else if lo == 1 {
                "1".to_string()
            } else {
                format!("{lo}-{}", 2 * lo - 1)
            };
            m.insert(key, json!(n));
        }
        Value::Object(m)
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

fn not_found(name: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no namespace named {name}"))
}

fn ns_json(ns: &Namespace) -> Value {
    serde_json::to_value(ns).unwrap_or(Value::Null)
}

/// A namespace's set elements.
pub fn elems(ns: &Namespace) -> Vec<Elem> {
    let mut v = vec![Elem::NsIface(ns.host_ifname.clone())];
    if ns.nat {
        v.push(Elem::NatSaddr(ns.address));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::CreateFailure;
    use nft::GroupError;

    /// A kernel stand-in: remembers what exists, fails what it is told to.
    #[derive(Default)]
    struct Fake {
        netns: HashSet<String>,
        links: HashSet<u32>,
        elems: HashSet<Elem>,
        fail_netlink: HashSet<String>,
        fail_nft: HashSet<String>,
        gone: Vec<u32>,
        /// Keep links alive after removal until released by the test.
        hold_links: bool,
    }

    impl Driver for Fake {
        fn create(&mut self, items: &[Namespace]) -> Vec<Result<(), CreateFailure>> {
            items
                .iter()
                .map(|ns| {
                    if self.fail_netlink.contains(&ns.name) {
                        return Err(CreateFailure {
                            error: ApiError::new(ErrorCode::Kernel, "add address: injected"),
                            link_created: false,
                        });
                    }
                    self.netns.insert(ns.name.clone());
                    self.links.insert(ns.host_ifindex);
                    Ok(())
                })
                .collect()
        }
        fn remove(&mut self, ns: &Namespace) {
            self.netns.remove(&ns.name);
            if !self.hold_links {
                self.links.remove(&ns.host_ifindex);
            }
            self.gone.push(ns.host_ifindex);
        }
        fn nft(&mut self, groups: &[Vec<ElemOp>]) -> Vec<Result<(), GroupError>> {
            groups
                .iter()
                .map(|g| {
                    let guilty = g.iter().any(|op| match op {
                        ElemOp::Add(Elem::NsIface(n)) => self.fail_nft.contains(n),
                        _ => false,
                    });
                    if guilty {
                        return Err(GroupError::Rejected {
                            errno: 17,
                            errno_text: "File exists".into(),
                        });
                    }
                    for op in g {
                        match op {
                            ElemOp::Add(e) => {
                                assert!(self.elems.insert(e.clone()), "double add {e:?}")
                            }
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
        fn delete_table(&mut self) {}
    }

    fn executor(pool: &str) -> Executor<Fake> {
        let base = Subnet::parse_pool(pool).unwrap();
        let info = Info {
            version: "test",
            table: "t".into(),
            uplink: None,
            netns_dir: "/run/netns".into(),
            pool: base,
            started: Instant::now(),
        };
        let limits = Limits {
            max_batch: 64,
            max_pending: 100,
            cleanup_on_exit: false,
        };
        let metrics = Arc::new(Metrics::new("test", "test").unwrap());
        Executor::new(
            Fake::default(),
            info,
            limits,
            Pool::new(base, 30).unwrap(),
            metrics,
        )
    }

    fn spec(name: &str) -> NamespaceSpec {
        NamespaceSpec {
            name: name.into(),
            subnet: None,
            nat: true,
            ns_ifname: "eth0".into(),
            host_ifname: None,
            mtu: None,
        }
    }

    type Rx = oneshot::Receiver<Reply>;

    fn cmd(op: Op) -> (Command, Rx) {
        let (tx, rx) = oneshot::channel();
        (Command { op, reply: tx }, rx)
    }

    fn run(ex: &mut Executor<Fake>, ops: Vec<Op>) -> Vec<Rx> {
        let mut batch = VecDeque::new();
        let mut rxs = vec![];
        for op in ops {
            let (c, rx) = cmd(op);
            batch.push_back(c);
            rxs.push(rx);
        }
        ex.process(&mut batch);
        rxs
    }

    fn code(rx: &mut Rx) -> &'static str {
        match rx.try_recv() {
            Ok(Ok(_)) => "ok",
            Ok(Err(e)) => e.code.as_str(),
            Err(_) => "unanswered",
        }
    }

    #[test]
    fn one_failing_create_does_not_fail_its_neighbours() {
        let mut ex = executor("100.64.0.0/24");
        ex.driver.fail_netlink.insert("bad".into());
        let mut rx = run(
            &mut ex,
            vec![
                Op::Create(spec("a")),
                Op::Create(spec("bad")),
                Op::Create(spec("c")),
            ],
        );
        assert_eq!(
            [code(&mut rx[0]), code(&mut rx[1]), code(&mut rx[2])],
            ["ok", "kernel", "ok"]
        );
        assert_eq!(ex.live.len(), 2);
        // The failed one's subnet went back to the pool; its elements were never added.
        assert_eq!(ex.pool.free(), 64 - 2);
        assert_eq!(ex.driver.elems.len(), 4);
        assert!(!ex.driver.netns.contains("bad"));
    }

    #[test]
    fn an_nft_rejection_rolls_back_only_the_guilty_create() {
        let mut ex = executor("100.64.0.0/24");
        // The second allocation gets 100.64.0.4/30 -> nsv64400004.
        ex.driver.fail_nft.insert("nsv64400004".into());
        let mut rx = run(
            &mut ex,
            vec![
                Op::Create(spec("a")),
                Op::Create(spec("b")),
                Op::Create(spec("c")),
            ],
        );
        assert_eq!(
            [code(&mut rx[0]), code(&mut rx[1]), code(&mut rx[2])],
            ["ok", "kernel", "ok"]
        );
        assert!(!ex.driver.netns.contains("b"), "rolled back");
        assert!(ex.get_live("b").is_none());
        // Its subnet stays reserved until the kernel has removed the link, then is free again.
        let mut batch = VecDeque::new();
        ex.reap(&mut batch);
        assert_eq!(ex.pool.free(), 64 - 2);
    }

    #[test]
    fn same_name_twice_in_one_batch_is_sequential() {
        let mut ex = executor("100.64.0.0/24");
        let mut rx = run(&mut ex, vec![Op::Create(spec("a")), Op::Create(spec("a"))]);
        assert_eq!([code(&mut rx[0]), code(&mut rx[1])], ["ok", "exists"]);
        let mut rx = run(
            &mut ex,
            vec![
                Op::Delete { name: "a".into() },
                Op::Delete { name: "a".into() },
                Op::Get { name: "a".into() },
            ],
        );
        assert_eq!(
            [code(&mut rx[0]), code(&mut rx[1]), code(&mut rx[2])],
            ["ok", "not_found", "not_found"]
        );
    }

    #[test]
    fn create_after_delete_waits_for_the_kernel() {
        let mut ex = executor("100.64.0.0/24");
        let mut rx = run(&mut ex, vec![Op::Create(spec("a"))]);
        assert_eq!(code(&mut rx[0]), "ok");
        ex.driver.hold_links = true;
        let mut rx = run(
            &mut ex,
            vec![Op::Delete { name: "a".into() }, Op::Create(spec("a"))],
        );
        assert_eq!(code(&mut rx[0]), "ok");
        assert_eq!(
            code(&mut rx[1]),
            "unanswered",
            "waits while the old link exists"
        );
        // The old subnet is still reserved: a new create gets another one.
        let mut batch = VecDeque::new();
        ex.driver.hold_links = false;
        ex.reap(&mut batch);
        assert_eq!(batch.len(), 1, "released to run next");
        ex.process(&mut batch);
        assert_eq!(code(&mut rx[1]), "ok");
        assert!(ex.driver.netns.contains("a"));
    }

    #[test]
    fn explicit_subnets_and_exhaustion() {
        let mut ex = executor("100.64.0.0/29"); // two /30s
        let mut s = spec("x");
        s.subnet = Some(Subnet::parse_for_namespace("100.64.0.4/30", 30).unwrap());
        let mut s2 = spec("y");
        s2.subnet = Some(Subnet::parse_for_namespace("100.64.0.6/31", 30).unwrap());
        let mut rx = run(
            &mut ex,
            vec![
                Op::Create(s),
                Op::Create(s2),
                Op::Create(spec("a")),
                Op::Create(spec("b")),
            ],
        );
        let codes: Vec<_> = rx.iter_mut().map(code).collect();
        assert_eq!(codes, ["ok", "subnet_in_use", "ok", "pool_exhausted"]);
        assert_eq!(
            ex.get_live("a").map(|n| n.subnet.to_string()),
            Some("100.64.0.0/30".into())
        );
    }

    impl Executor<Fake> {
        fn get_live(&self, name: &str) -> Option<&Namespace> {
            self.live.get(name)
        }
    }
}
