//! The executor: one dedicated thread that owns the agent's view of what exists. It drains the
//! job queue in batches, plans each batch against its view (nothing touches the kernel for a
//! command that is refused), runs the netlink work for the whole batch, then one nft transaction,
//! then answers every command.

mod check;
mod reservations;
mod warm;

use crate::cmd::{
    ConfPatch, Deleted, Encoded, Pong, PoolStatus, Request, Response, Status, WarmStatus,
};
use crate::driver::{self, Conns, CreateFailure, Driver, DriverError, Gone};
use crate::events::{Event, Events};
use crate::model::{labels, Conf, Dirs, Labels, Namespace, NamespaceSpec};
use crate::pool::{Pool, Pool6};
use crate::protocol::{ApiError, ErrorCode, Reply};
use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use metrics::Metrics;
use nft::{ElemOp, GroupError};
use reservations::Reservations;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use warm::Warm;

/// Deleted namespaces whose host link the kernel has not freed yet, at most. Above this, new
/// work waits: churn must not outrun the kernel's clean-up (each pending one holds ~0.3 MB of
/// kernel memory: docs/kernel.md#past-5000-alive).
pub const MAX_PENDING_DELETIONS: usize = 4096;
/// How long a batch waits for the kernel to get below [`MAX_PENDING_DELETIONS`] before it runs
/// anyway.
const PENDING_WAIT: Duration = Duration::from_secs(10);
/// How long a create waits for the kernel to destroy the previous namespace of its name before
/// it is answered `busy` (a process inside can hold that namespace forever).
const NAME_REUSE_WAIT: Duration = Duration::from_secs(10);
/// Deleted namespaces are held and handed to the kernel together (netns::Graveyard), once
/// deletes pause this long: a burst of deletes then dies in one kernel batch.
const RELEASE_IDLE: Duration = Duration::from_millis(100);
/// ... or once the oldest held one has waited this long, so that a steady trickle of deletes
/// still reaches the kernel. Not sooner: while the kernel destroys namespaces, every unmount
/// of a delete waits for it, and a mass delete of 30,000 ran at 161/s with 5 s against 2,223/s
/// (docs/kernel.md#an-unmount-waits-for-an-rcu-grace-period).
const RELEASE_AFTER: Duration = Duration::from_secs(30);
/// How often an idle executor looks for kernel events; more often while it waits for some.
const IDLE_POLL: Duration = Duration::from_secs(1);
const WAITING_POLL: Duration = Duration::from_millis(20);
/// The start-up's orphan sweep waits for deleted namespaces to die, at most this long after the
/// executor was first idle (the kernel destroyed 30,000 in ~7-15 s here).
const SWEEP_DEFER_LIMIT: Duration = Duration::from_secs(60);

/// One request on its way through the queue.
pub struct Job {
    pub request: Request,
    pub reply: Replier,
}

impl Job {
    /// Work for nobody: it only wakes the executor's thread (after a direct claim, to refill).
    pub fn wake() -> Job {
        Job {
            request: Request::Ping,
            reply: Box::new(Nobody),
        }
    }
}

/// A lone claim run by the thread that read it, while the executor waits for work
/// ([`Executor::direct`]); a job it gives back goes to the queue.
pub trait Direct: Send + Sync {
    fn try_direct(&self, job: Job) -> Option<Job>;
}

impl<D: Driver + Send> Direct for Mutex<Executor<D>> {
    fn try_direct(&self, job: Job) -> Option<Job> {
        let Ok(mut ex) = self.try_lock() else {
            // At work: the queue.
            return Some(job);
        };
        // A panic half-way through a batch on a runtime thread would only end that connection's
        // task and leave the executor poisoned with a half-done claim: end the agent, as a
        // panic on the executor's thread does; the next start recovers from the kernel.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ex.direct(job))) {
            Ok(back) => back,
            Err(_) => {
                tracing::error!("the executor panicked in a direct claim; aborting");
                std::process::abort();
            }
        }
    }
}

/// Where a job's answer goes. The server's writes it to the client's socket from the
/// executor's thread; tests use a oneshot channel.
pub trait Answer: Send {
    fn send(self: Box<Self>, r: Reply);
    /// Whether anyone waits for the answer (the batch-size metrics count only those).
    fn awaited(&self) -> bool {
        true
    }
}

pub type Replier = Box<dyn Answer>;

impl Answer for oneshot::Sender<Reply> {
    fn send(self: Box<Self>, r: Reply) {
        // The receiver may have gone; nothing to do about it.
        let _ = oneshot::Sender::send(*self, r);
    }
}

/// Nobody waits for the answer (the agent's own commands).
pub struct Nobody;

impl Answer for Nobody {
    fn send(self: Box<Self>, _: Reply) {}
    fn awaited(&self) -> bool {
        false
    }
}

/// Static facts reported by `status`.
#[derive(Debug, Clone)]
pub struct Info {
    pub version: &'static str,
    pub table: String,
    pub uplink: Option<String>,
    pub dirs: Dirs,
    pub started: Instant,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most jobs taken into one batch.
    pub max_batch: usize,
    /// See [`MAX_PENDING_DELETIONS`].
    pub max_pending: usize,
    /// At shutdown, remove every namespace in one final batch and delete the table.
    pub cleanup_on_exit: bool,
    /// Namespaces to keep built for creates (`--warm`).
    pub warm: usize,
    /// How often the agent checks and repairs on its own (`--check-interval`; `None`: never).
    pub check_every: Option<Duration>,
}

pub struct Executor<D: Driver> {
    driver: D,
    info: Info,
    limits: Limits,
    held: Reservations,
    /// Boxed: the table of a map doubles when it grows, and a table of whole `Namespace`s
    /// doubling at 28,672 entries made the agent's peak memory jump by 26 MiB; a table of
    /// pointers grows by 1 MiB.
    live: HashMap<String, Box<Namespace>>,
    /// Host ifindex -> name of live namespaces, to recognise links deleted by someone else.
    by_ifindex: HashMap<u32, String>,
    /// Jobs waiting for a name's old namespace to be gone, in arrival order.
    deferred: HashMap<String, VecDeque<(Job, Instant)>>,
    batch_sizes: BatchSizes,
    metrics: Arc<Metrics>,
    /// Live set elements (namespaces' and uplinks'), for the nft_elements gauge.
    elements: i64,
    warm: Warm,
    /// Watchers of what is committed (nobody, unless the server subscribes some).
    events: Events,
    checks: check::Checks,
    /// The last wait for work timed out.
    idle: bool,
    /// When that first happened (the orphan sweep's deadline counts from it).
    first_idle: Option<Instant>,
    /// When the last batch that wrote finished: refill waits [`warm::REFILL_QUIET`] after it.
    last_write: Instant,
}

/// A write that passed planning: what it will change, and whom to answer.
struct Planned {
    change: Change,
    ns: Namespace,
    reply: Replier,
}

#[derive(Clone, PartialEq, Eq)]
enum Change {
    Create,
    /// A create served by this warm namespace.
    Claim(Box<Namespace>),
    Delete,
    /// From the namespace as it was (`Planned::ns` is the namespace as it will be).
    Update(Box<Namespace>),
}

impl Planned {
    /// This command's group of the batch's nft transaction.
    fn elem_ops(&self, netlink_ok: bool) -> Vec<ElemOp> {
        let elems = driver::elems(&self.ns).into_iter();
        match &self.change {
            Change::Create if netlink_ok => elems.map(ElemOp::Add).collect(),
            // The warm one is in the table as a default create: only what differs changes.
            Change::Claim(w) if netlink_ok => changed(&driver::elems(w), elems.collect()),
            Change::Create | Change::Claim(_) => vec![],
            Change::Delete => elems.map(ElemOp::Del).collect(),
            Change::Update(old) if netlink_ok => changed(&driver::elems(old), elems.collect()),
            Change::Update(_) => vec![],
        }
    }
}

impl<D: Driver> Executor<D> {
    pub fn new(
        driver: D,
        info: Info,
        limits: Limits,
        pool: Pool,
        pool6: Option<Pool6>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let elements = info.uplink.iter().count() as i64;
        let ex = Executor {
            driver,
            info,
            limits,
            held: Reservations::new(pool, pool6),
            live: HashMap::new(),
            by_ifindex: HashMap::new(),
            deferred: HashMap::new(),
            batch_sizes: BatchSizes::default(),
            metrics,
            elements,
            warm: Warm::new(limits.warm),
            events: Events::default(),
            checks: check::Checks::new(limits.check_every),
            idle: false,
            first_idle: None,
            last_write: Instant::now(),
        };
        let pool = ex.held.pool();
        ex.metrics
            .pool_addresses
            .set(pool.size() as i64 * pool_slot_addresses(pool));
        let subnets = |family| ex.metrics.pool_subnets.with_label_values(&[family]);
        subnets("ipv4").set(pool.size() as i64);
        if let Some(p6) = ex.held.pool6() {
            subnets("ipv6").set(p6.size() as i64);
        }
        ex.update_gauges();
        ex
    }

    /// Emits every change to `events`' watchers.
    pub fn with_events(mut self, events: Events) -> Self {
        self.events = events;
        self
    }

    /// Takes over namespaces found whole at start-up (their elements are already in the table).
    pub fn adopt(&mut self, namespaces: Vec<Namespace>) {
        for ns in namespaces {
            self.held.hold(&ns);
            self.events.emit(Event::Adopted, &ns);
            self.go_live(ns);
        }
        self.update_gauges();
    }

    /// Takes back the warm pool recovery found (more than the target: the rest goes).
    pub fn adopt_warm(&mut self, namespaces: Vec<Namespace>) {
        let mut extra = vec![];
        for ns in namespaces {
            self.held.hold(&ns);
            // Recovery put their elements in the table.
            self.elements += driver::elems(&ns).len() as i64;
            if self.warm.ready() < self.warm.target {
                self.warm.add(ns);
            } else {
                extra.push(ns);
            }
        }
        self.discard_warm(extra);
        self.update_gauges();
    }

    /// Removes warm namespaces; what they hold is freed when the kernel has destroyed them.
    fn discard_warm(&mut self, nss: Vec<Namespace>) {
        if nss.is_empty() {
            return;
        }
        self.remove_warm(&nss);
        for ns in &nss {
            self.held.start_dying(ns, false);
        }
    }

    /// Takes warm namespaces out of the table and the kernel; what they hold is the caller's to
    /// free.
    fn remove_warm(&mut self, nss: &[Namespace]) {
        self.warm_elements(nss, ElemOp::Del);
        self.driver.remove(nss);
    }

    /// Adds or removes warm namespaces' elements, one group each; which succeeded. A warm
    /// namespace is in the table as a default create is (isolated like any other, NAT for its
    /// address), so that claiming it for a default create needs no transaction
    /// (docs/kernel.md#a-warm-namespace-is-in-the-table-already).
    fn warm_elements(&mut self, nss: &[Namespace], op: fn(nft::Elem) -> ElemOp) -> Vec<bool> {
        let groups: Vec<Vec<ElemOp>> = nss
            .iter()
            .map(|ns| driver::elems(ns).into_iter().map(op).collect())
            .collect();
        let results = self.driver.nft(&groups);
        let mut ok = Vec::with_capacity(nss.len());
        let mut retry: Vec<Vec<ElemOp>> = vec![];
        for ((ns, group), r) in nss.iter().zip(&groups).zip(results) {
            let n = group.len() as i64;
            let adding = matches!(group.first(), Some(ElemOp::Add(_)));
            ok.push(r.is_ok());
            match r {
                Ok(()) if adding => self.elements += n,
                Ok(()) => self.elements -= n,
                Err(e) if adding => {
                    tracing::warn!(name = %ns.name, error = %e, "adding a warm namespace's elements")
                }
                Err(e) => {
                    // A group is all or nothing: one element already gone (someone's `nft
                    // delete element`) would keep the others, whose keys the next namespace of
                    // this subnet adds again (EEXIST). Each alone, then.
                    tracing::info!(name = %ns.name, error = %e, "deleting a warm namespace's elements one by one");
                    retry.extend(group.iter().cloned().map(|op| vec![op]));
                }
            }
        }
        for (op, r) in retry.iter().zip(self.driver.nft(&retry)) {
            match r {
                // Gone either way.
                Ok(())
                | Err(GroupError::Rejected {
                    errno: libc::ENOENT,
                    ..
                }) => self.elements -= 1,
                Err(e) => {
                    tracing::warn!(element = ?op, error = %e, "deleting a warm namespace's element")
                }
            }
        }
        ok
    }

    /// Builds up to [`Warm::batch`] warm namespaces, through the same batched path as
    /// creates, and adds their elements in one transaction.
    fn refill(&mut self) {
        let started = Instant::now();
        let mut items = vec![];
        let want = self.warm.batch();
        for _ in 0..want {
            let spec = self.warm.spec();
            let Ok(subnet) = self.held.choose_subnet(None) else {
                break;
            };
            let Ok(subnet6) = self.held.choose_subnet6(None, true) else {
                self.held.give_back(Some(subnet), None);
                break;
            };
            let ns = Namespace::plan(&spec, subnet, subnet6, &self.info.dirs.for_warm());
            self.held.hold(&ns);
            items.push(ns);
        }
        if items.len() < want {
            tracing::debug!("the pool has no subnet left for the warm pool");
            self.warm.pause();
        }
        let results = self.driver.create(&items);
        let mut built = vec![];
        for (ns, r) in items.into_iter().zip(results) {
            match r {
                Ok(()) => built.push(ns),
                Err(f) => {
                    tracing::warn!(error = %f.error, "building a warm namespace");
                    self.warm.pause();
                    self.held.failed(&ns, f.link_created);
                }
            }
        }
        let added = self.warm_elements(&built, ElemOp::Add);
        for (ns, ok) in built.into_iter().zip(added) {
            if ok {
                self.warm.add(ns);
            } else {
                self.warm.pause();
                self.driver.remove(std::slice::from_ref(&ns));
                self.held.start_dying(&ns, false);
            }
        }
        self.metrics
            .warm_refill_duration_seconds
            .observe(started.elapsed().as_secs_f64());
        self.update_gauges();
    }

    /// Whether the pool may be refilled now: it is short, and the kernel is not behind on
    /// deletions (a refill adds to its memory like a create).
    fn refill_wanted(&self) -> bool {
        self.warm.wanted() > 0
            && self.held.dying() < self.limits.max_pending
            && self.deferred.is_empty()
    }

    /// Makes room for a create that a warm namespace is in the way of: one whose subnet the
    /// create names, or, with the pool exhausted, any one for a create it cannot serve. The
    /// warm namespace goes, and the create waits (by its name) until the kernel freed it.
    fn make_room(&mut self, spec: &NamespaceSpec) {
        if self.warm.ready() == 0 {
            return;
        }
        let mut discard = self.warm.take_overlapping(spec.subnet, spec.subnet6);
        let dual = self.held.pool6().is_some();
        if discard.is_none()
            && !Warm::serves(spec, dual)
            && !self.live.contains_key(&spec.name)
            && self.pool_exhausted_for(spec)
        {
            discard = self.warm.take();
        }
        if let Some(w) = discard {
            tracing::debug!(name = %spec.name, subnet = %w.subnet, "discarding a warm namespace for a create");
            self.remove_warm(std::slice::from_ref(&w));
            self.held.start_dying_for(&w, &spec.name);
        }
    }

    /// Whether a cold create of `spec` would find no subnet in a pool.
    fn pool_exhausted_for(&self, spec: &NamespaceSpec) -> bool {
        let v4 = spec.subnet.is_none() && self.held.pool().free() == 0;
        let v6 =
            spec.subnet6.is_none() && spec.ipv6 && self.held.pool6().is_some_and(|p| p.free() == 0);
        v4 || v6
    }

    /// Runs until every sender of the queue is gone. The executor is locked while it works and
    /// unlocked while it waits for work, when a connection may run a lone claim itself
    /// ([`Executor::direct`]).
    pub fn run(shared: &Mutex<Self>, rx: Receiver<Job>) {
        let lock = || shared.lock().unwrap_or_else(PoisonError::into_inner);
        let mut batch: VecDeque<Job> = VecDeque::new();
        let mut ex: MutexGuard<Self> = lock();
        loop {
            ex.reap(&mut batch);
            ex.expire_deferred();
            ex.sweep_orphans();
            ex.start_check();
            if ex.checks.running() && batch.is_empty() {
                // One slice of the check, then whatever came meanwhile; never wait while a
                // check runs.
                ex.check_slice();
                match rx.try_recv() {
                    Ok(job) => batch.push_back(job),
                    Err(TryRecvError::Empty) => continue,
                    Err(TryRecvError::Disconnected) => break,
                }
            }
            if batch.is_empty() && ex.refill_wanted() {
                // Refill only while nobody waits: a client's command always goes first, and
                // the answers of the last batch get out before refill takes the CPU.
                let quiet = warm::REFILL_QUIET.saturating_sub(ex.last_write.elapsed());
                drop(ex);
                let got = rx.recv_timeout(quiet);
                ex = lock();
                match got {
                    Ok(job) => {
                        ex.idle = false;
                        batch.push_back(job)
                    }
                    // A direct claim came meanwhile: refill waits for quiet after it too.
                    Err(RecvTimeoutError::Timeout)
                        if ex.last_write.elapsed() < warm::REFILL_QUIET =>
                    {
                        continue
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        ex.idle = true;
                        if ex
                            .driver
                            .removed_held()
                            .1
                            .is_some_and(|t| t.elapsed() >= RELEASE_IDLE)
                        {
                            ex.release_removed("idle");
                        }
                        ex.refill();
                        ex.warm.refilled(!rx.is_empty());
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            if batch.is_empty() {
                let wait = if ex.driver.removed_held().0 > 0 {
                    RELEASE_IDLE
                } else if ex.held.dying() == 0 && ex.deferred.is_empty() {
                    IDLE_POLL
                } else {
                    WAITING_POLL
                };
                drop(ex);
                let got = rx.recv_timeout(wait);
                ex = lock();
                match got {
                    Ok(job) => {
                        ex.idle = false;
                        batch.push_back(job)
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        ex.idle = true;
                        ex.release_removed("idle");
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            // Take what is queued, never wait for company.
            while batch.len() < ex.limits.max_batch {
                match rx.try_recv() {
                    Ok(job) => batch.push_back(job),
                    Err(_) => break,
                }
            }
            ex.wait_for_kernel_cleanup(&mut batch);
            ex.metrics.queue_depth.set(rx.len() as i64);
            ex.run_batch(&mut batch);
        }
        ex.stop();
        tracing::info!("command queue closed; executor stops");
    }

    /// Counts and processes a batch; then what waits for the kernel to release names.
    fn run_batch(&mut self, batch: &mut VecDeque<Job>) {
        // A direct claim's wake is no command.
        let commands = batch.iter().filter(|j| j.reply.awaited()).count();
        if commands > 0 {
            self.batch_sizes.count(commands);
            self.metrics.batch_size.observe(commands as f64);
        }
        // Reads (a status poll) do not put refill off: they wait for no kernel work.
        if self.process(batch) {
            self.last_write = Instant::now();
        }
        // A create waits for a name still held, or the oldest held has waited enough.
        let (_, since) = self.driver.removed_held();
        if !self.deferred.is_empty() {
            self.release_removed("name_wanted");
        } else if since.is_some_and(|t| t.elapsed() >= RELEASE_AFTER) {
            self.release_removed("age");
        }
        self.update_gauges();
    }

    /// Runs a lone `create` that a warm namespace serves at once, on the caller's thread (a
    /// connection's, which has nothing else in flight); anything else is given back, for the
    /// queue. Only a claim that waits for nothing in the kernel but its netns file's move runs
    /// here: none while the kernel destroys namespaces or held names wait for their unmount
    /// (the kernel's locks are busy then), none with an nft transaction (`nat: false`, ports,
    /// an egress address) or rate limits (tc, and a `setns` into the namespace) to make; a
    /// runtime thread must not wait on the kernel for long. On an idle agent this saves the
    /// hand-over to the executor's thread, a tenth of a lone warm create on this machine
    /// (docs/kernel.md#a-lone-claim-runs-where-it-was-read).
    /// The caller wakes the executor's thread afterwards ([`Job::wake`]): the pool is short
    /// one.
    pub fn direct(&mut self, job: Job) -> Option<Job> {
        let served = match &job.request {
            Request::Create(spec) => {
                let c = &spec.conf;
                self.warm.ready() > 0
                    && Warm::serves(spec, self.held.pool6().is_some())
                    && c.nat
                    && c.bandwidth.is_none()
                    && c.ports.is_empty()
                    && c.egress_addr.is_none()
                    && c.egress_addr6.is_none()
                    && self.deferred.is_empty()
                    && self.held.dying() == 0
                    && self.driver.removed_held().0 == 0
            }
            _ => false,
        };
        if !served {
            return Some(job);
        }
        self.idle = false;
        self.metrics.warm_claims_direct_total.inc();
        let mut batch = VecDeque::from([job]);
        self.run_batch(&mut batch);
        None
    }

    /// What the agent leaves behind when it stops: its clients' namespaces (all of them gone
    /// with --cleanup-on-exit), no warm ones: they are nobody's (after a crash, the next start
    /// adopts them back).
    fn stop(&mut self) {
        let warm = self.warm.take_all();
        self.discard_warm(warm);
        if self.limits.cleanup_on_exit {
            self.cleanup_all();
        }
        self.release_removed("exit");
    }

    /// Removes everything the agent made, in one batch, then the table.
    fn cleanup_all(&mut self) {
        let mut batch: VecDeque<Job> = self
            .live
            .keys()
            .map(|name| Job {
                request: Request::Delete { name: name.clone() },
                reply: Box::new(Nobody),
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
    /// job that touches a name already touched in it, and before a read that follows a write.
    pub fn process(&mut self, batch: &mut VecDeque<Job>) -> bool {
        let _span = tracing::debug_span!("batch", commands = batch.len()).entered();
        let mut wrote = false;
        while !batch.is_empty() {
            let planned = self.plan_segment(batch);
            wrote |= !planned.is_empty();
            self.execute(planned);
        }
        wrote
    }

    /// Takes jobs off the front of `batch` for one segment: answers the reads, plans the writes.
    fn plan_segment(&mut self, batch: &mut VecDeque<Job>) -> Vec<Planned> {
        let mut names: HashSet<String> = HashSet::new();
        let mut planned = vec![];
        while let Some(job) = batch.front() {
            let name = job.request.writes().map(str::to_string);
            match &name {
                Some(n) if names.contains(n) => break,
                None if !names.is_empty() => break,
                _ => {}
            }
            let Some(job) = batch.pop_front() else { break };
            if let Request::Create(spec) | Request::Attach { spec, .. } = &job.request {
                if !self.deferred.contains_key(&spec.name) {
                    self.make_room(spec);
                }
            }
            // A create of a name whose old namespace the kernel is still destroying waits for
            // it, and so does everything after it that names that name.
            let waits = job
                .request
                .names()
                .is_some_and(|n| self.deferred.contains_key(n))
                || matches!(&job.request, Request::Create(s) | Request::Attach { spec: s, .. }
                    if self.held.name_is_dying(&s.name));
            if let (true, Some(n)) = (waits, job.request.names()) {
                self.deferred
                    .entry(n.to_string())
                    .or_default()
                    .push_back((job, Instant::now()));
                continue;
            }
            names.extend(name);
            planned.extend(self.plan(job));
        }
        planned
    }

    /// Answers reads at once; checks writes against the view and reserves what they will use.
    fn plan(&mut self, job: Job) -> Option<Planned> {
        let answer = |reply: Replier, r: Reply| reply.send(r);
        match job.request {
            Request::Ping => answer(
                job.reply,
                Ok(Response::Pong(Pong {
                    version: self.info.version.to_string(),
                })),
            ),
            Request::Status => answer(job.reply, Ok(Response::Status(self.status()))),
            Request::Get { name } => answer(
                job.reply,
                self.live
                    .get(&name)
                    .map(|ns| Response::Namespace(Namespace::clone(ns)))
                    .ok_or_else(|| not_found(&name)),
            ),
            Request::List { selector } => answer(job.reply, self.list(&selector)),
            Request::Delete { name } => match self.live.get(&name) {
                Some(ns) => {
                    return Some(Planned {
                        change: Change::Delete,
                        ns: Namespace::clone(ns),
                        reply: job.reply,
                    })
                }
                None => answer(job.reply, Err(not_found(&name))),
            },
            Request::Check { repair, name } => self.checks.ask(repair, name, job.reply),
            Request::Watch { .. } => answer(
                job.reply,
                Err(ApiError::new(
                    ErrorCode::Internal,
                    "watch is answered by its connection",
                )),
            ),
            Request::Update { name, patch } => match self.plan_update(&name, &patch) {
                Ok((old, new)) => {
                    self.held.hold_ports(&new);
                    return Some(Planned {
                        change: Change::Update(Box::new(old)),
                        ns: new,
                        reply: job.reply,
                    });
                }
                Err(e) => answer(job.reply, Err(e)),
            },
            Request::Attach { spec, netns_path } => match self.plan_create(&spec, false) {
                Ok((mut ns, _)) => {
                    ns.attached = true;
                    ns.netns_path = netns_path.to_string_lossy().into_owned();
                    self.held.hold(&ns);
                    return Some(Planned {
                        change: Change::Create,
                        ns,
                        reply: job.reply,
                    });
                }
                Err(e) => answer(job.reply, Err(e)),
            },
            Request::Detach { name } => match self.live.get(&name) {
                Some(ns) if ns.attached => {
                    return Some(Planned {
                        change: Change::Delete,
                        ns: Namespace::clone(ns),
                        reply: job.reply,
                    })
                }
                Some(_) => answer(
                    job.reply,
                    Err(ApiError::new(
                        ErrorCode::BadRequest,
                        format!("namespace {name} was created, not attached: delete it"),
                    )),
                ),
                None => answer(job.reply, Err(not_found(&name))),
            },
            Request::Create(spec) => match self.plan_create(&spec, true) {
                Ok((ns, warm)) => {
                    let change = match warm {
                        // The warm one holds the subnets and the host interface already.
                        Some(w) => {
                            self.held.hold_ports(&ns);
                            Change::Claim(Box::new(w))
                        }
                        None => {
                            self.held.hold(&ns);
                            Change::Create
                        }
                    };
                    return Some(Planned {
                        change,
                        ns,
                        reply: job.reply,
                    });
                }
                Err(e) => answer(job.reply, Err(e)),
            },
        }
        None
    }

    /// The namespace a create makes, and the warm one it is made from, if any (`warm`: it may
    /// be; an attach makes no namespace, so it never is).
    fn plan_create(
        &mut self,
        spec: &NamespaceSpec,
        warm: bool,
    ) -> Result<(Namespace, Option<Namespace>), ApiError> {
        if self.live.contains_key(&spec.name) {
            return Err(ApiError::new(
                ErrorCode::Exists,
                format!("namespace {} exists", spec.name),
            ));
        }
        if let Some(h) = &spec.host_ifname {
            if self.held.host_ifname_taken(h) {
                return Err(ApiError::new(
                    ErrorCode::Exists,
                    format!("host interface {h} is in use"),
                ));
            }
        }
        let dual = spec.subnet6.is_some() || (spec.ipv6 && self.held.pool6().is_some());
        self.check_host_side(&spec.name, &spec.conf, dual)?;
        if warm && self.warm.target > 0 {
            let claims = |result| self.metrics.warm_claims_total.with_label_values(&[result]);
            if Warm::serves(spec, self.held.pool6().is_some()) {
                if let Some(w) = self.warm.take() {
                    claims("hit").inc();
                    let subnet6 = w.v6.map(|v| v.subnet6);
                    let ns = Namespace::plan(spec, w.subnet, subnet6, &self.info.dirs);
                    return Ok((ns, Some(w)));
                }
            }
            claims("miss").inc();
        }
        let subnet = self.held.choose_subnet(spec.subnet)?;
        let subnet6 = match self.held.choose_subnet6(spec.subnet6, spec.ipv6) {
            Ok(s) => s,
            Err(e) => {
                self.held.give_back(Some(subnet), None);
                return Err(e);
            }
        };
        let ns = Namespace::plan(spec, subnet, subnet6, &self.info.dirs);
        if spec.host_ifname.is_none() && self.held.host_ifname_taken(&ns.host_ifname) {
            // Cannot happen while subnets are unique; refuse rather than collide.
            self.held.give_back(Some(subnet), subnet6);
            return Err(ApiError::new(
                ErrorCode::Internal,
                "host interface name collision",
            ));
        }
        Ok((ns, None))
    }

    /// The namespace before and after an update, if the result is acceptable.
    fn plan_update(
        &mut self,
        name: &str,
        patch: &ConfPatch,
    ) -> Result<(Namespace, Namespace), ApiError> {
        let old = self
            .live
            .get(name)
            .map(|b| Namespace::clone(b))
            .ok_or_else(|| not_found(name))?;
        let conf = patch
            .apply(&old.conf)
            .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))?;
        self.check_host_side(name, &conf, old.v6.is_some())?;
        let mut new = old.clone();
        new.resolv_conf = conf.dns.as_ref().map(|_| self.info.dirs.resolv_conf(name));
        new.conf = conf;
        Ok((old, new))
    }

    /// What a configuration asks of the host: its own addresses, ports nobody else publishes.
    fn check_host_side(&mut self, name: &str, conf: &Conf, dual: bool) -> Result<(), ApiError> {
        let wants_v6 = conf.egress_addr6.is_some()
            || conf
                .ports
                .iter()
                .any(|p| p.host_addr.is_some_and(|a| a.is_ipv6()));
        if wants_v6 && !dual {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("namespace {name} has no IPv6 (an IPv6 egress address or port needs it)"),
            ));
        }
        let wanted = conf
            .egress_addr
            .map(IpAddr::from)
            .into_iter()
            .chain(conf.egress_addr6.map(IpAddr::from))
            .chain(conf.ports.iter().filter_map(|p| p.host_addr));
        for addr in wanted {
            if !self.driver.is_local(addr) {
                return Err(ApiError::new(
                    ErrorCode::InvalidAddress,
                    format!("{addr} is not an address of this host"),
                ));
            }
        }
        if let Some((listener, owner)) = self.held.port_conflict(name, &conf.ports) {
            return Err(ApiError::new(
                ErrorCode::PortInUse,
                format!("{listener} is published by namespace {owner}"),
            ));
        }
        Ok(())
    }

    /// Runs a segment's writes: the netlink phase, one nft transaction, then settles and
    /// answers each.
    fn execute(&mut self, planned: Vec<Planned>) {
        if planned.is_empty() {
            return;
        }
        let netlink = self.netlink_phase(&planned);
        let groups: Vec<Vec<ElemOp>> = planned
            .iter()
            .zip(&netlink)
            .map(|(p, nl)| p.elem_ops(nl.is_ok()))
            .collect();
        let nft = self.driver.nft(&groups);
        let mut gone = vec![];
        let mut removed = vec![];
        let mut claimed = vec![];
        let mut tried_claims = false;
        let mut answers = Vec::with_capacity(planned.len());
        for ((p, nl), nf) in planned.into_iter().zip(netlink).zip(nft) {
            self.checks.touched(&p.ns.name);
            let r = match p.change {
                Change::Create => self.settle_create(p.ns, nl, nf),
                Change::Claim(w) => {
                    tried_claims = true;
                    let name = p.ns.name.clone();
                    let r = self.settle_claim(*w, p.ns, nl, nf);
                    if r.is_ok() {
                        claimed.push(name);
                    }
                    r
                }
                Change::Delete => {
                    // A detach's connections are the driver's to forget (Driver::remove).
                    let conns: Vec<Conns> = match p.ns.attached {
                        false => driver::own_conns(&p.ns).collect(),
                        true => vec![],
                    };
                    let r = self.settle_delete(p.ns, nf, &mut removed);
                    if r.is_ok() {
                        gone.extend(conns);
                    }
                    r
                }
                Change::Update(old) => {
                    let stale = stale_connections(&old, &p.ns);
                    let r = self.settle_update(*old, p.ns, nl, nf);
                    if r.is_ok() {
                        gone.extend(stale);
                    }
                    r
                }
            };
            answers.push((p.reply, r));
        }
        self.driver.remove(&removed);
        // Before the answers: once a delete is acknowledged, no connection of its address is
        // left in the kernel's table.
        self.driver.forget(&gone);
        for (reply, r) in answers {
            reply.send(r);
        }
        // Also after claims that all failed: their moves' leftovers go here too.
        if tried_claims {
            let live: Vec<&Namespace> = claimed
                .iter()
                .filter_map(|n| self.live.get(n).map(|b| &**b))
                .collect();
            self.driver.mark_claimed(&live);
        }
    }

    /// The creates' kernel work, for the whole segment at once; one result per planned write
    /// (deletes need none before the nft phase).
    fn netlink_phase(&mut self, planned: &[Planned]) -> Vec<Result<(), CreateFailure>> {
        let creates: Vec<Namespace> = planned
            .iter()
            .filter(|p| p.change == Change::Create)
            .map(|p| p.ns.clone())
            .collect();
        let claims: Vec<(Namespace, Namespace)> = planned
            .iter()
            .filter_map(|p| match &p.change {
                Change::Claim(w) => Some((Namespace::clone(w), p.ns.clone())),
                _ => None,
            })
            .collect();
        let too_few = || {
            Err(CreateFailure {
                error: DriverError::Bug("driver returned too few results"),
                link_created: false,
            })
        };
        let mut created = self.driver.create(&creates).into_iter();
        let mut claimed = if claims.is_empty() {
            vec![]
        } else {
            self.driver.claim(&claims)
        }
        .into_iter();
        planned
            .iter()
            .map(|p| match &p.change {
                Change::Create => created.next().unwrap_or_else(too_few),
                Change::Claim(_) => claimed.next().unwrap_or_else(too_few),
                Change::Delete => Ok(()),
                Change::Update(old) => {
                    self.driver
                        .update(old, &p.ns)
                        .map_err(|error| CreateFailure {
                            error,
                            link_created: false,
                        })
                }
            })
            .collect()
    }

    fn settle_update(
        &mut self,
        old: Namespace,
        new: Namespace,
        netlink: Result<(), CreateFailure>,
        nft: Result<(), GroupError>,
    ) -> Reply {
        let refused = match (netlink, nft) {
            (Ok(()), Ok(())) => None,
            (Ok(()), Err(e)) => {
                // The kernel side was changed: put it back as it was.
                if let Err(back) = self.driver.update(&new, &old) {
                    tracing::error!(name = %old.name, error = %back, "rolling back an update");
                }
                Some(DriverError::from(e))
            }
            (Err(f), _) => Some(f.error),
        };
        if let Some(e) = refused {
            tracing::info!(name = %old.name, error = %e, "update refused; the namespace is unchanged");
            self.held.release_ports(&new);
            return Err(e.into());
        }
        self.held.release_ports(&old);
        self.elements += driver::elems(&new).len() as i64 - driver::elems(&old).len() as i64;
        self.events.emit(Event::Updated, &new);
        self.live.insert(new.name.clone(), Box::new(new.clone()));
        Ok(Response::Namespace(new))
    }

    fn settle_create(
        &mut self,
        ns: Namespace,
        netlink: Result<(), CreateFailure>,
        nft: Result<(), GroupError>,
    ) -> Reply {
        match (netlink, nft) {
            (Ok(()), Ok(())) => {
                self.events.emit(Event::Created, &ns);
                let out = ns.clone();
                self.go_live(ns);
                Ok(Response::Namespace(out))
            }
            (Ok(()), Err(e)) => {
                tracing::info!(name = %ns.name, error = %e, "create rolled back: nft rejected its elements");
                self.held.release_ports(&ns);
                self.driver.remove(std::slice::from_ref(&ns));
                self.held.start_dying(&ns, false);
                Err(DriverError::from(e).into())
            }
            (Err(f), _) => {
                tracing::info!(name = %ns.name, error = %f.error, "create rolled back");
                self.held.release_ports(&ns);
                self.held.failed(&ns, f.link_created);
                Err(f.error.into())
            }
        }
    }

    fn settle_claim(
        &mut self,
        warm: Namespace,
        ns: Namespace,
        netlink: Result<(), CreateFailure>,
        nft: Result<(), GroupError>,
    ) -> Reply {
        match (netlink, nft) {
            (Err(f), _) if !f.link_created => {
                // Nothing changed: the warm one serves the next create.
                self.held.release_ports(&ns);
                self.warm.put_back(warm);
                Err(f.error.into())
            }
            (Err(f), _) => {
                tracing::info!(name = %ns.name, error = %f.error, "claim of a warm namespace failed; it is removed");
                self.warm_elements(std::slice::from_ref(&warm), ElemOp::Del);
                self.held.release_ports(&ns);
                self.held.start_dying(&warm, false);
                Err(f.error.into())
            }
            (Ok(()), Err(e)) => {
                // Its group changed nothing: the warm one's elements are still there.
                self.warm_elements(std::slice::from_ref(&warm), ElemOp::Del);
                self.settle_create(ns, Ok(()), Err(e))
            }
            (Ok(()), Ok(())) => {
                // go_live counts the claimed one's elements.
                self.elements -= driver::elems(&warm).len() as i64;
                self.settle_create(ns, Ok(()), Ok(()))
            }
        }
    }

    /// A delete the nft phase let through goes to `removed`, whose netns files the caller
    /// removes in one go.
    fn settle_delete(
        &mut self,
        ns: Namespace,
        nft: Result<(), GroupError>,
        removed: &mut Vec<Namespace>,
    ) -> Reply {
        if let Err(e) = nft {
            tracing::warn!(name = %ns.name, error = %e, "delete failed at nft; namespace kept");
            return Err(DriverError::from(e).into());
        }
        self.leave_live(&ns);
        self.held.release_ports(&ns);
        self.held.start_dying(&ns, true);
        self.events.emit(Event::Deleted, &ns);
        let name = ns.name.clone();
        removed.push(ns);
        Ok(Response::Deleted(Deleted { name }))
    }

    fn go_live(&mut self, ns: Namespace) {
        self.elements += driver::elems(&ns).len() as i64;
        self.by_ifindex.insert(ns.host_ifindex, ns.name.clone());
        self.live.insert(ns.name.clone(), Box::new(ns));
    }

    fn leave_live(&mut self, ns: &Namespace) {
        self.elements -= driver::elems(ns).len() as i64;
        self.by_ifindex.remove(&ns.host_ifindex);
        self.live.remove(&ns.name);
    }

    /// Someone else deleted part of a live namespace (its veth, or its netns file): remove the
    /// rest, so that what the agent reports is what exists.
    fn external_removal(&mut self, name: &str, link_gone: bool) {
        let Some(ns) = self.live.get(name).map(|b| Namespace::clone(b)) else {
            return;
        };
        self.leave_live(&ns);
        self.held.release_ports(&ns);
        let ops: Vec<ElemOp> = driver::elems(&ns).into_iter().map(ElemOp::Del).collect();
        if let Some(Err(e)) = self.driver.nft(&[ops]).pop() {
            tracing::warn!(name, error = %e, "removing elements of an externally deleted namespace");
        }
        self.driver.remove(std::slice::from_ref(&ns));
        if !ns.attached {
            self.driver
                .forget(&driver::own_conns(&ns).collect::<Vec<_>>());
        }
        if link_gone {
            self.held
                .release(ns.subnet, ns.v6.map(|v| v.subnet6), &ns.host_ifname);
        } else {
            // The netns file is gone but a process may still hold the namespace, and with it
            // the veth: take the link down ourselves, then wait for the kernel as usual.
            self.driver.delete_link(ns.host_ifindex);
            self.held.start_dying(&ns, false);
        }
        self.events.emit(Event::RemovedExternally, &ns);
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

    /// The kernel has removed a dying link: free what it held, and let jobs that waited for
    /// its name go first in the next batch.
    fn finish_dying(&mut self, ifindex: u32, batch: &mut VecDeque<Job>) {
        if let Some(Some(name)) = self.held.finish_dying(ifindex) {
            if let Some(waiting) = self.deferred.remove(&name) {
                for (job, _) in waiting.into_iter().rev() {
                    batch.push_front(job);
                }
            }
        }
    }

    /// Releases what the kernel has finished destroying; notices what others removed.
    fn reap(&mut self, batch: &mut VecDeque<Job>) {
        match self.driver.gone_links() {
            Gone::Links(gone) => {
                for i in gone {
                    if self.held.is_dying(i) {
                        self.finish_dying(i, batch);
                    } else if let Some(name) = self.by_ifindex.get(&i).cloned() {
                        self.external_removal(&name, true);
                    } else if let Some(w) = self.warm.take_ifindex(i) {
                        tracing::info!(host_ifname = %w.host_ifname, "a warm namespace's veth was deleted from outside the agent");
                        self.remove_warm(std::slice::from_ref(&w));
                        self.held
                            .release(w.subnet, w.v6.map(|v| v.subnet6), &w.host_ifname);
                    }
                }
            }
            Gone::Resync => {
                for i in self.held.dying_ifindexes() {
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
    /// reused; waiting jobs get `busy` after [`NAME_REUSE_WAIT`] instead of waiting forever.
    fn expire_deferred(&mut self) {
        let now = Instant::now();
        for queue in self.deferred.values_mut() {
            while queue
                .front()
                .is_some_and(|(_, t)| now.duration_since(*t) > NAME_REUSE_WAIT)
            {
                if let Some((job, _)) = queue.pop_front() {
                    job.reply.send(Err(ApiError::new(
                        ErrorCode::Busy,
                        "the previous namespace of this name is still being destroyed by the kernel (is a process still inside it?); retry later",
                    )));
                }
            }
        }
        self.deferred.retain(|_, q| !q.is_empty());
    }

    fn wait_for_kernel_cleanup(&mut self, batch: &mut VecDeque<Job>) {
        // Deletes cannot add to the kernel's memory: only creates wait.
        let creates = batch
            .iter()
            .any(|j| matches!(j.request, Request::Create(_)));
        if !creates || self.held.dying() < self.limits.max_pending {
            return;
        }
        self.release_removed("pending_limit");
        let deadline = Instant::now() + PENDING_WAIT;
        while self.held.dying() >= self.limits.max_pending && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
            self.reap(batch);
        }
    }

    /// What start-up recovery left to its background link dump, once that is in (it starts
    /// once the executor has waited for work in vain).
    fn sweep_orphans(&mut self) {
        let (live, held) = (&self.live, &self.held);
        let ours = |name: &str, ifindex| {
            live.get(name).is_some_and(|n| n.host_ifindex == ifindex) || held.is_dying(ifindex)
        };
        // Not while the kernel destroys namespaces: the dump would take RTNL from it, for a
        // walk of the host's namespace ids per link
        // (docs/kernel.md#the-orphan-sweep-waits-for-the-kernels-clean-up). Not for ever
        // either: a process inside may keep a deleted namespace, and its veth, alive.
        if self.idle {
            self.first_idle.get_or_insert_with(Instant::now);
        }
        let idle = self.idle
            && (held.dying() == 0
                || self
                    .first_idle
                    .is_some_and(|t| t.elapsed() >= SWEEP_DEFER_LIMIT));
        let removed = self.driver.sweep_orphans(&ours, idle);
        if !removed.is_empty() {
            self.metrics
                .recovery_total
                .with_label_values(&["removed"])
                .inc_by(removed.len() as u64);
        }
    }

    /// Hands every held deleted namespace to the kernel at once.
    fn release_removed(&mut self, why: &str) {
        let n = self.driver.release_removed();
        if n > 0 {
            tracing::debug!(
                namespaces = n,
                why,
                "released deleted namespaces to the kernel"
            );
        }
    }

    fn update_gauges(&self) {
        let m = &self.metrics;
        let pool = self.held.pool();
        let warm = self.warm.ready() as i64;
        m.namespaces.set(self.live.len() as i64);
        m.warm_ready.set(warm);
        m.pool_addresses_free
            .set((pool.free() as i64 + warm) * pool_slot_addresses(pool));
        let free = |family| m.pool_subnets_free.with_label_values(&[family]);
        free("ipv4").set(pool.free() as i64 + warm);
        if let Some(p6) = self.held.pool6() {
            free("ipv6").set(p6.free() as i64 + warm);
        }
        m.nft_elements.set(self.elements);
        m.watchers.set(self.events.watchers() as i64);
    }

    /// Every namespace `selector` selects, sorted by name, encoded straight from the live view: a list of 30,000
    /// would otherwise exist three times (copies, values, text).
    fn list(&self, selector: &Labels) -> Reply {
        #[derive(serde::Serialize)]
        struct ListRef<'a> {
            namespaces: Vec<&'a Namespace>,
        }
        let mut namespaces: Vec<&Namespace> = self
            .live
            .values()
            .map(|b| &**b)
            .filter(|ns| labels::selects(selector, &ns.conf.labels))
            .collect();
        namespaces.sort_by(|a, b| a.name.cmp(&b.name));
        // Room for the line around it, so that splicing it in does not reallocate.
        let mut text = Vec::with_capacity(64 + 320 * namespaces.len());
        serde_json::to_writer(&mut text, &ListRef { namespaces })
            .map(|()| Response::Encoded(Encoded(text)))
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("encode the list: {e}")))
    }

    fn status(&self) -> Status {
        let pool = self.held.pool();
        // A warm namespace's subnets are a create's for the asking.
        let warm = self.warm.ready() as u32;
        Status {
            version: self.info.version.to_string(),
            namespaces: self.live.len(),
            pending_deletions: self.held.dying(),
            pool: PoolStatus {
                cidr: pool.base().to_string(),
                prefix_len: pool.slot_prefix(),
                size: pool.size(),
                free: pool.free() + warm,
            },
            pool6: self.held.pool6().map(|p| PoolStatus {
                cidr: p.base().to_string(),
                prefix_len: p.slot_prefix(),
                size: p.size(),
                free: p.free() + warm,
            }),
            uplink: self.info.uplink.clone(),
            table: self.info.table.clone(),
            netns_dir: self.info.dirs.netns.to_string_lossy().into_owned(),
            uptime_seconds: self.info.started.elapsed().as_secs(),
            batch_sizes: self.batch_sizes.report(),
            warm: WarmStatus {
                target: self.warm.target,
                ready: self.warm.ready(),
            },
        }
    }
}

/// The connections an update leaves stale: every one of the namespace's when its NAT changes
/// (their translation no longer holds), those of a published port that is gone.
fn stale_connections(old: &Namespace, new: &Namespace) -> Vec<Conns> {
    if old.conf.nat != new.conf.nat
        || old.conf.egress_addr != new.conf.egress_addr
        || old.conf.egress_addr6 != new.conf.egress_addr6
    {
        let mut all = vec![Conns::Of(new.address.into())];
        all.extend(new.v6.map(|v| Conns::Of(v.address6.into())));
        return all;
    }
    old.conf
        .ports
        .iter()
        .filter(|p| {
            !new.conf
                .ports
                .iter()
                .any(|q| q.proto == p.proto && q.port == p.port)
        })
        .flat_map(|p| {
            let addrs = [
                Some(IpAddr::from(new.address)),
                new.v6.map(|v| v.address6.into()),
            ];
            addrs.into_iter().flatten().map(|addr| Conns::To {
                addr,
                proto: p.proto.number(),
                port: p.port,
            })
        })
        .collect()
}

/// Addresses in one of the pool's subnets.
fn pool_slot_addresses(pool: &Pool) -> i64 {
    1i64 << (32 - pool.slot_prefix())
}

/// The ops that turn `before` into `after`, removals first: an egress address that changes is
/// a delete and an add of one key.
fn changed(before: &[nft::Elem], after: Vec<nft::Elem>) -> Vec<ElemOp> {
    let gone = before.iter().filter(|e| !after.contains(e)).cloned();
    let gone: Vec<ElemOp> = gone.map(ElemOp::Del).collect();
    let new = after.into_iter().filter(|e| !before.contains(e));
    gone.into_iter().chain(new.map(ElemOp::Add)).collect()
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no namespace named {name}"))
}

/// Batch sizes seen, in power-of-two buckets (1, 2-3, 4-7, ... 512+).
#[derive(Default)]
struct BatchSizes([u64; BatchSizes::BUCKETS]);

impl BatchSizes {
    const BUCKETS: usize = 10;

    fn count(&mut self, len: usize) {
        let bucket = (usize::BITS - 1 - len.max(1).leading_zeros()) as usize;
        self.0[bucket.min(Self::BUCKETS - 1)] += 1;
    }

    /// `{"1": n, "2-3": n, "4-7": n, …}`: how many executor batches had that many commands.
    fn report(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for (i, n) in self.0.iter().enumerate() {
            let lo = 1usize << i;
            let key = if i == Self::BUCKETS - 1 {
                format!("{lo}+")
            } else if lo == 1 {
                "1".to_string()
            } else {
                format!("{lo}-{}", 2 * lo - 1)
            };
            m.insert(key, *n);
        }
        m
    }
}

#[cfg(test)]
mod tests;
