//! The executor against the fake driver: planning, rollback, failure isolation, name reuse.

use super::*;
use crate::driver::Fake;
use crate::model::Subnet;

fn executor(pool: &str) -> Executor<Fake> {
    let base = Subnet::parse_pool(pool).unwrap();
    let info = Info {
        version: "test",
        table: "t".into(),
        uplink: None,
        dirs: crate::model::Dirs {
            netns: "/run/netns".into(),
            etc_netns: "/etc/netns".into(),
        },
        started: Instant::now(),
    };
    let limits = Limits {
        max_batch: 64,
        max_pending: 100,
        cleanup_on_exit: false,
        warm: 0,
        check_every: None,
    };
    let metrics = Arc::new(Metrics::new("test", "test").unwrap());
    Executor::new(
        Fake::default(),
        info,
        limits,
        Pool::new(base, 30).unwrap(),
        None,
        metrics,
    )
}

fn spec(name: &str) -> NamespaceSpec {
    NamespaceSpec {
        name: name.into(),
        subnet: None,
        ipv6: true,
        subnet6: None,
        conf: crate::model::Conf::default(),
        ns_ifname: "eth0".into(),
        host_ifname: None,
        mtu: None,
    }
}

type Rx = oneshot::Receiver<Reply>;

fn job(request: Request) -> (Job, Rx) {
    let (tx, rx) = oneshot::channel();
    (
        Job {
            request,
            reply: Box::new(tx),
        },
        rx,
    )
}

fn run(ex: &mut Executor<Fake>, ops: Vec<Request>) -> Vec<Rx> {
    let mut batch = VecDeque::new();
    let mut rxs = vec![];
    for op in ops {
        let (c, rx) = job(op);
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
            Request::Create(spec("a")),
            Request::Create(spec("bad")),
            Request::Create(spec("c")),
        ],
    );
    assert_eq!(
        [code(&mut rx[0]), code(&mut rx[1]), code(&mut rx[2])],
        ["ok", "kernel", "ok"]
    );
    assert_eq!(ex.live.len(), 2);
    // The failed one's subnet went back to the pool; its elements were never added.
    assert_eq!(ex.held.pool().free(), 64 - 2);
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
            Request::Create(spec("a")),
            Request::Create(spec("b")),
            Request::Create(spec("c")),
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
    assert_eq!(ex.held.pool().free(), 64 - 2);
}

#[test]
fn same_name_twice_in_one_batch_is_sequential() {
    let mut ex = executor("100.64.0.0/24");
    let mut rx = run(
        &mut ex,
        vec![Request::Create(spec("a")), Request::Create(spec("a"))],
    );
    assert_eq!([code(&mut rx[0]), code(&mut rx[1])], ["ok", "exists"]);
    let mut rx = run(
        &mut ex,
        vec![
            Request::Delete { name: "a".into() },
            Request::Delete { name: "a".into() },
            Request::Get { name: "a".into() },
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
    let mut rx = run(&mut ex, vec![Request::Create(spec("a"))]);
    assert_eq!(code(&mut rx[0]), "ok");
    ex.driver.hold_links = true;
    let mut rx = run(
        &mut ex,
        vec![
            Request::Delete { name: "a".into() },
            Request::Create(spec("a")),
        ],
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
            Request::Create(s),
            Request::Create(s2),
            Request::Create(spec("a")),
            Request::Create(spec("b")),
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
        self.live.get(name).map(|b| &**b)
    }
}

#[test]
fn a_delete_forgets_its_address_before_it_is_answered() {
    let mut ex = executor("100.64.0.0/24");
    let mut rx = run(&mut ex, vec![Request::Create(spec("a"))]);
    let Ok(Ok(Response::Namespace(ns))) = rx[0].try_recv() else {
        panic!("created")
    };
    let mut rx = run(&mut ex, vec![Request::Delete { name: "a".into() }]);
    assert_eq!(code(&mut rx[0]), "ok");
    assert_eq!(
        ex.driver.forgotten,
        vec![crate::driver::Conns::Of(ns.address.into())]
    );
}

#[test]
fn dual_stack_subnets_are_held_and_released_with_the_link() {
    let mut ex = executor("100.64.0.0/24");
    let base6 = crate::model::Subnet6::parse_pool("fd00:1::/62").unwrap();
    ex.held = Reservations::new(
        Pool::new(Subnet::parse_pool("100.64.0.0/24").unwrap(), 30).unwrap(),
        crate::pool::Pool6::new(base6, 64),
    );
    let mut v4only = spec("b");
    v4only.ipv6 = false;
    let mut rx = run(
        &mut ex,
        vec![Request::Create(spec("a")), Request::Create(v4only)],
    );
    let Ok(Ok(Response::Namespace(a))) = rx[0].try_recv() else {
        panic!("created")
    };
    assert_eq!(
        a.v6.map(|v| v.subnet6.to_string()),
        Some("fd00:1::/64".into())
    );
    let Ok(Ok(Response::Namespace(b))) = rx[1].try_recv() else {
        panic!("created")
    };
    assert!(b.v6.is_none());
    assert_eq!(ex.held.pool6().map(|p| p.free()), Some(3));
    // NAT66 for the dual-stack one.
    assert!(ex
        .driver
        .elems
        .contains(&nft::Elem::NatSaddr6(a.v6.unwrap().address6)));
    let mut rx = run(&mut ex, vec![Request::Delete { name: "a".into() }]);
    assert_eq!(code(&mut rx[0]), "ok");
    let mut batch = VecDeque::new();
    ex.reap(&mut batch);
    assert_eq!(ex.held.pool6().map(|p| p.free()), Some(4));
}

fn warm_executor(pool: &str, target: usize) -> Executor<Fake> {
    let mut ex = executor(pool);
    ex.warm = Warm::new(target);
    while ex.refill_wanted() {
        ex.refill();
    }
    ex
}

/// The fake table holds exactly the live and the warm namespaces' elements.
fn table_is_whole(ex: &Executor<Fake>) {
    let want: HashSet<nft::Elem> = ex
        .live
        .values()
        .map(|b| &**b)
        .chain(ex.warm.namespaces())
        .flat_map(crate::driver::elems)
        .collect();
    assert_eq!(ex.driver.elems, want);
    assert_eq!(ex.elements, want.len() as i64, "the gauge");
}

fn answer(rx: &mut Rx) -> Namespace {
    match rx.try_recv() {
        Ok(Ok(Response::Namespace(ns))) => ns,
        other => panic!("not a namespace: {other:?}"),
    }
}

/// Lets the fake kernel report what died, and runs what waited for it.
fn settle(ex: &mut Executor<Fake>) {
    let mut batch = VecDeque::new();
    ex.reap(&mut batch);
    ex.process(&mut batch);
}

#[test]
fn a_create_the_pool_can_serve_is_a_claim_and_looks_like_a_cold_one() {
    let mut ex = warm_executor("100.64.0.0/24", 3);
    assert_eq!(ex.warm.ready(), 3);
    assert_eq!(ex.driver.netns.len(), 3, "built, under warm names");
    assert!(ex
        .driver
        .netns
        .iter()
        .all(|n| crate::model::is_warm_name(n)));
    table_is_whole(&ex);
    let before = ex.driver.transactions;
    let mut rx = run(&mut ex, vec![Request::Create(spec("a"))]);
    let ns = answer(&mut rx[0]);
    assert_eq!(ex.driver.claimed, 1);
    // A warm namespace is in the table as a default create: its claim needs no transaction.
    assert_eq!(ex.driver.transactions, before);
    table_is_whole(&ex);
    // One that differs changes only what differs.
    let mut own = spec("b");
    own.conf.nat = false;
    let mut rx = run(&mut ex, vec![Request::Create(own)]);
    assert!(!answer(&mut rx[0]).conf.nat);
    assert_eq!(ex.driver.transactions, before + 1);
    table_is_whole(&ex);
    // Its owner's mark is written once it is answered.
    assert_eq!(ex.driver.marked, ["a", "b"]);
    // Exactly what a cold create of the first subnet would answer.
    let dirs = ex.info.dirs.clone();
    let mut cold = Namespace::plan(&spec("a"), ns.subnet, None, &dirs);
    cold.host_ifindex = ns.host_ifindex;
    assert_eq!(ns, cold);
    assert_eq!(ns.subnet.to_string(), "100.64.0.0/30");
    assert!(ex
        .driver
        .elems
        .contains(&nft::Elem::NsIface(ns.host_ifname)));
    let status = ex.status();
    assert_eq!((status.warm.target, status.warm.ready), (3, 1));
    assert_eq!(status.namespaces, 2);
    // Warm subnets count as free.
    assert_eq!(status.pool.free, 64 - 2);
    let mut rx = run(
        &mut ex,
        vec![Request::List {
            selector: Default::default(),
        }],
    );
    match rx[0].try_recv() {
        Ok(Ok(Response::Encoded(text))) => {
            let text = String::from_utf8(text.0).unwrap();
            assert!(text.contains("\"a\"") && !text.contains("warm"), "{text}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn what_a_warm_namespace_cannot_be_is_built_cold() {
    let mut ex = warm_executor("100.64.0.0/24", 2);
    let mut own = spec("own-mtu");
    own.mtu = Some(9000);
    let mut rx = run(&mut ex, vec![Request::Create(own)]);
    assert_eq!(code(&mut rx[0]), "ok");
    assert_eq!((ex.driver.claimed, ex.warm.ready()), (0, 2));
    let claims = |r| ex.metrics.warm_claims_total.with_label_values(&[r]).get();
    assert_eq!((claims("hit"), claims("miss")), (0, 1));
}

#[test]
fn a_burst_bigger_than_the_pool_is_served_warm_first_then_cold() {
    let mut ex = warm_executor("100.64.0.0/24", 2);
    let mut rx = run(
        &mut ex,
        (0..5)
            .map(|i| Request::Create(spec(&format!("n{i}"))))
            .collect(),
    );
    for r in &mut rx {
        assert_eq!(code(r), "ok");
    }
    assert_eq!(ex.driver.claimed, 2);
    assert_eq!(ex.driver.marked, ["n0", "n1"]);
    assert_eq!(ex.live.len(), 5);
    assert!(ex.refill_wanted());
    table_is_whole(&ex);
}

#[test]
fn an_explicit_subnet_of_a_warm_namespace_discards_it_and_succeeds() {
    let mut ex = warm_executor("100.64.0.0/24", 2);
    let mut s = spec("explicit");
    s.subnet = Subnet::parse("100.64.0.0/30");
    let mut rx = run(&mut ex, vec![Request::Create(s)]);
    assert_eq!(
        code(&mut rx[0]),
        "unanswered",
        "waits for the warm one to die"
    );
    assert_eq!(ex.warm.ready(), 1);
    settle(&mut ex);
    let ns = answer(&mut rx[0]);
    assert_eq!(ns.subnet.to_string(), "100.64.0.0/30");
    assert_eq!(ex.driver.claimed, 0);
    table_is_whole(&ex);
}

#[test]
fn with_the_pool_exhausted_warm_subnets_count_as_free() {
    // A /28 of /30s: four subnets, all warm.
    let mut ex = warm_executor("100.64.0.0/28", 4);
    assert_eq!(ex.warm.ready(), 4);
    assert_eq!(ex.status().pool.free, 4);
    let mut cold = spec("cold");
    cold.ns_ifname = "net0".into();
    let mut rx = run(&mut ex, vec![Request::Create(cold)]);
    assert_eq!(code(&mut rx[0]), "unanswered");
    settle(&mut ex);
    assert_eq!(code(&mut rx[0]), "ok");
    assert_eq!(ex.warm.ready(), 3);
    table_is_whole(&ex);
}

#[test]
fn a_claim_that_changed_nothing_puts_the_warm_one_back() {
    let mut ex = warm_executor("100.64.0.0/24", 1);
    // Someone else's `ip netns add taken`.
    ex.driver.netns.insert("taken".into());
    let mut rx = run(&mut ex, vec![Request::Create(spec("taken"))]);
    assert_eq!(code(&mut rx[0]), "exists");
    assert_eq!(ex.warm.ready(), 1);
    // One that used it up: gone, and its subnet freed once the kernel says so.
    ex.driver.fail_netlink.insert("broken".into());
    let mut rx = run(&mut ex, vec![Request::Create(spec("broken"))]);
    assert_eq!(code(&mut rx[0]), "kernel");
    assert_eq!(ex.warm.ready(), 0);
    assert_eq!(ex.held.dying(), 1);
    settle(&mut ex);
    assert_eq!(ex.held.dying(), 0);
    table_is_whole(&ex);
}

#[test]
fn a_claim_that_nft_rejects_leaves_no_trace_of_it_or_of_the_warm_one() {
    let mut ex = warm_executor("100.64.0.0/24", 1);
    ex.driver.fail_nft_ports.insert(8080);
    let mut s = spec("rejected");
    s.conf.ports = vec![crate::model::PortForward {
        proto: crate::model::Proto::Tcp,
        host_port: 8080,
        port: 80,
        host_addr: None,
    }];
    let mut rx = run(&mut ex, vec![Request::Create(s)]);
    assert_eq!(code(&mut rx[0]), "kernel");
    assert_eq!((ex.driver.claimed, ex.warm.ready()), (1, 0));
    assert!(ex.live.is_empty());
    table_is_whole(&ex);
    settle(&mut ex);
    assert_eq!(ex.held.dying(), 0);
}

#[test]
fn a_discarded_warm_namespace_whose_element_someone_deleted_leaves_none_behind() {
    let mut ex = warm_executor("100.64.0.0/24", 1);
    let w = ex.warm.namespaces().next().unwrap().clone();
    // Someone's `nft delete element` of its NAT address: the group that deletes all of its
    // elements is refused.
    let nat = nft::Elem::NatSaddr(w.address);
    assert!(ex.driver.elems.remove(&nat));
    ex.driver.deleted_outside.insert(nat);
    let mut s = spec("explicit");
    s.subnet = Some(w.subnet);
    let mut rx = run(&mut ex, vec![Request::Create(s)]);
    assert_eq!(ex.warm.ready(), 0);
    // Its other elements went one by one: the create of its subnet can add them again.
    table_is_whole(&ex);
    settle(&mut ex);
    assert_eq!(answer(&mut rx[0]).subnet, w.subnet);
    table_is_whole(&ex);
}

#[test]
fn warm_namespaces_are_removed_when_the_agent_stops() {
    let mut ex = warm_executor("100.64.0.0/24", 3);
    let mut rx = run(&mut ex, vec![Request::Create(spec("kept"))]);
    assert_eq!(code(&mut rx[0]), "ok");
    assert_eq!(ex.driver.netns.len(), 3);
    ex.stop();
    assert_eq!(ex.warm.ready(), 0);
    assert_eq!(ex.driver.netns, HashSet::from(["kept".to_string()]));
    table_is_whole(&ex);
}

#[test]
fn only_a_create_a_warm_namespace_serves_at_once_runs_directly() {
    let mut ex = warm_executor("100.64.0.0/24", 2);
    let before = ex.last_write;
    let (j, mut rx) = job(Request::Create(spec("a")));
    assert!(ex.direct(j).is_none());
    assert_eq!(code(&mut rx), "ok");
    assert_eq!((ex.driver.claimed, ex.warm.ready()), (1, 1));
    assert!(
        ex.last_write > before,
        "refill waits for quiet after it too"
    );
    table_is_whole(&ex);
    // Everything else is given back unanswered, for the queue.
    let mut explicit = spec("b");
    explicit.subnet = Some(Subnet::parse_for_namespace("100.64.0.128/30", 30).unwrap());
    // A claim with an nft transaction or tc to make waits on the kernel: not on a runtime
    // thread.
    let mut no_nat = spec("b");
    no_nat.conf.nat = false;
    let mut limited = spec("b");
    limited.conf.bandwidth = Some(crate::model::Bandwidth {
        ingress_bps: None,
        egress_bps: Some(1_000_000),
    });
    for r in [
        Request::Create(explicit),
        Request::Create(no_nat),
        Request::Create(limited),
        Request::Get { name: "a".into() },
        Request::Delete { name: "a".into() },
        Request::Ping,
    ] {
        let (j, mut rx) = job(r);
        let back = ex.direct(j).expect("given back");
        drop(back);
        assert_eq!(code(&mut rx), "unanswered");
    }
    // While the kernel destroys a namespace, its locks are busy: the executor's thread waits
    // on it, not a runtime thread.
    let mut rx = run(&mut ex, vec![Request::Delete { name: "a".into() }]);
    assert_eq!(code(&mut rx[0]), "ok");
    let (j, _rx) = job(Request::Create(spec("e")));
    assert!(ex.direct(j).is_some());
    settle(&mut ex);
    assert_eq!(ex.held.dying(), 0);
    // So does a create with the pool empty.
    let (j, mut rx) = job(Request::Create(spec("c")));
    assert!(ex.direct(j).is_none());
    assert_eq!(code(&mut rx), "ok");
    let (j, _rx) = job(Request::Create(spec("d")));
    assert!(ex.direct(j).is_some(), "nothing warm left");
    assert_eq!(ex.driver.claimed, 2);
}

#[test]
fn a_direct_claim_waits_for_a_busy_executor_and_wakes_it_to_refill() {
    let ex = warm_executor("100.64.0.0/24", 2);
    let shared = Arc::new(Mutex::new(ex));
    let (queue, jobs) = crossbeam_channel::bounded::<Job>(8);
    let thread = {
        let shared = shared.clone();
        std::thread::spawn(move || Executor::run(&shared, jobs))
    };
    let direct: Arc<dyn Direct> = shared.clone();
    // While the executor works, a connection's claim goes to the queue.
    let held = shared.lock().unwrap();
    let (j, mut rx) = job(Request::Create(spec("a")));
    let back = direct.try_direct(j).expect("busy");
    drop(held);
    queue.send(back).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        if let Ok(r) = rx.try_recv() {
            break r;
        }
        assert!(Instant::now() < deadline, "queued claim unanswered");
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(answer.is_ok(), "{answer:?}");
    // Idle, it takes one at once (once its thread has let go: it refills the one just
    // claimed); the wake has the executor's thread refill behind it.
    let (mut j, mut rx) = job(Request::Create(spec("b")));
    while let Some(back) = direct.try_direct(j) {
        assert!(Instant::now() < deadline, "never taken directly");
        std::thread::sleep(Duration::from_millis(1));
        j = back;
    }
    assert_eq!(code(&mut rx), "ok");
    queue.send(Job::wake()).unwrap();
    loop {
        let ex = shared.lock().unwrap();
        if ex.warm.ready() == 2 && ex.live.len() == 2 {
            table_is_whole(&ex);
            break;
        }
        drop(ex);
        assert!(Instant::now() < deadline, "not refilled");
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(queue);
    thread.join().unwrap();
    let ex = shared.lock().unwrap();
    assert_eq!(ex.driver.claimed, 2);
    assert_eq!(ex.warm.ready(), 0, "stopped: the warm ones went");
}

fn labelled(name: &str, pairs: &[(&str, &str)]) -> NamespaceSpec {
    let mut s = spec(name);
    s.conf.labels = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s
}

fn listed_names(rx: &mut Rx) -> Vec<String> {
    let Ok(Ok(Response::Encoded(e))) = rx.try_recv() else {
        panic!("no list");
    };
    let v: serde_json::Value = serde_json::from_slice(&e.0).unwrap();
    v["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_selector_lists_only_namespaces_with_every_pair() {
    let mut ex = executor("100.64.0.0/24");
    run(
        &mut ex,
        vec![
            Request::Create(labelled("a", &[("team", "ci"), ("job", "1")])),
            Request::Create(labelled("b", &[("team", "ci")])),
            Request::Create(spec("c")),
        ],
    );
    let sel = |pairs: &[(&str, &str)]| Request::List {
        selector: labelled("x", pairs).conf.labels,
    };
    let mut rx = run(
        &mut ex,
        vec![
            sel(&[("team", "ci")]),
            sel(&[("team", "ci"), ("job", "1")]),
            sel(&[("job", "2")]),
            sel(&[]),
        ],
    );
    assert_eq!(listed_names(&mut rx[0]), ["a", "b"]);
    assert_eq!(listed_names(&mut rx[1]), ["a"]);
    assert!(listed_names(&mut rx[2]).is_empty());
    assert_eq!(listed_names(&mut rx[3]), ["a", "b", "c"]);
}

#[test]
fn watchers_get_committed_changes_in_order_and_nothing_for_refusals() {
    let events = crate::events::Events::default();
    let mut ex = executor("100.64.0.0/24").with_events(events.clone());
    ex.driver.fail_netlink.insert("bad".into());
    let mut all = events.subscribe(Default::default());
    let mut ci = events.subscribe(labelled("x", &[("team", "ci")]).conf.labels);
    let patch = ConfPatch {
        nat: Some(false),
        ..ConfPatch::default()
    };
    run(
        &mut ex,
        vec![
            Request::Create(labelled("a", &[("team", "ci")])),
            Request::Create(spec("bad")),
            Request::Create(spec("b")),
            Request::Create(spec("b")),
            Request::Update {
                name: "a".into(),
                patch,
            },
            Request::Delete { name: "b".into() },
            Request::Delete {
                name: "nothere".into(),
            },
        ],
    );
    let drain = |s: &mut crate::events::Subscription| {
        let mut out = vec![];
        while let Ok(line) = s.rx.try_recv() {
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            out.push(format!(
                "{} {}",
                v["event"].as_str().unwrap(),
                v["namespace"]["name"].as_str().unwrap()
            ));
        }
        out
    };
    assert_eq!(
        drain(&mut all),
        ["created a", "created b", "updated a", "deleted b"]
    );
    assert_eq!(drain(&mut ci), ["created a", "updated a"]);
}

#[test]
fn a_watcher_that_falls_behind_is_dropped_without_blocking() {
    let events = crate::events::Events::default();
    let mut ex = executor("100.64.0.0/16").with_events(events.clone());
    let slow = events.subscribe(Default::default());
    let n = crate::events::WATCH_BUFFER + 10;
    let reqs = (0..n)
        .map(|i| Request::Create(spec(&format!("n{i}"))))
        .collect();
    let mut rx = run(&mut ex, reqs);
    assert!(rx.iter_mut().all(|r| code(r) == "ok"));
    assert_eq!(events.watchers(), 0, "dropped");
    assert!(slow.overflowed.load(std::sync::atomic::Ordering::Acquire));
}

/// Runs the executor's check slices until the running check has answered.
fn finish_checks(ex: &mut Executor<Fake>) {
    ex.start_check();
    while ex.checks.running() {
        ex.check_slice();
    }
}

fn report(rx: &mut Rx) -> crate::cmd::CheckReport {
    match rx.try_recv() {
        Ok(Ok(Response::Check(r))) => r,
        other => panic!("no report: {other:?}"),
    }
}

#[test]
fn a_check_reports_drift_in_slices_and_a_repair_puts_it_right() {
    use crate::model::Problem;
    let mut ex = executor("100.64.0.0/16");
    let events = crate::events::Events::default();
    ex = ex.with_events(events.clone());
    let n = check::CHECK_SLICE * 2 + 5;
    run(
        &mut ex,
        (0..n)
            .map(|i| Request::Create(spec(&format!("n{i:03}"))))
            .collect(),
    );
    ex.driver.drift.insert(
        "n007".into(),
        vec![Problem::AddressMissing, Problem::ElementMissing],
    );
    ex.driver
        .drift
        .insert("n200".into(), vec![Problem::ResolvConfMissing]);
    ex.driver.fail_netlink.insert("n200".into());
    let mut watcher = events.subscribe(Default::default());

    let mut rx = run(
        &mut ex,
        vec![Request::Check {
            repair: false,
            name: None,
        }],
    );
    assert_eq!(
        code(&mut rx[0]),
        "unanswered",
        "checks run in slices, later"
    );
    ex.start_check();
    ex.check_slice();
    assert!(ex.checks.running(), "one slice is not all of them");
    // A namespace a command changes meanwhile is not looked at by this check.
    run(
        &mut ex,
        vec![Request::Update {
            name: format!("n{:03}", n - 1),
            patch: ConfPatch {
                nat: Some(false),
                ..ConfPatch::default()
            },
        }],
    );
    finish_checks(&mut ex);
    let r = report(&mut rx[0]);
    assert!(!r.clean);
    assert_eq!(r.checked, n - 1);
    assert_eq!(ex.driver.checked.iter().sum::<usize>(), n - 1);
    assert!(
        ex.driver.checked.iter().all(|k| *k <= 8),
        "{:?}",
        ex.driver.checked
    );
    let found: Vec<(String, Problem, bool)> = r
        .drift
        .iter()
        .map(|d| (d.name.clone(), d.problem, d.repaired))
        .collect();
    assert_eq!(
        found,
        [
            ("n007".to_string(), Problem::AddressMissing, false),
            ("n007".to_string(), Problem::ElementMissing, false),
            ("n200".to_string(), Problem::ResolvConfMissing, false),
        ]
    );
    assert_eq!(ex.driver.drift.len(), 2, "a check alone changes nothing");

    while watcher.rx.try_recv().is_ok() {} // the update's event
    let mut rx = run(
        &mut ex,
        vec![Request::Check {
            repair: true,
            name: None,
        }],
    );
    finish_checks(&mut ex);
    let r = report(&mut rx[0]);
    let repaired: Vec<(String, bool)> = r
        .drift
        .iter()
        .map(|d| (d.name.clone(), d.repaired))
        .collect();
    assert_eq!(
        repaired,
        [
            ("n007".to_string(), true),
            ("n007".to_string(), true),
            ("n200".to_string(), false)
        ]
    );
    let line = watcher.rx.try_recv().expect("a repaired event");
    let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(
        (v["event"].as_str(), v["namespace"]["name"].as_str()),
        (Some("repaired"), Some("n007"))
    );
    assert!(
        watcher.rx.try_recv().is_err(),
        "nothing for what stayed broken"
    );
}

#[test]
fn a_gone_namespace_found_by_a_repairing_check_is_let_go() {
    use crate::model::Problem;
    let mut ex = executor("100.64.0.0/24");
    run(
        &mut ex,
        vec![Request::Create(spec("a")), Request::Create(spec("b"))],
    );
    ex.driver
        .drift
        .insert("a".into(), vec![Problem::NetnsMissing]);
    let mut rx = run(
        &mut ex,
        vec![Request::Check {
            repair: true,
            name: None,
        }],
    );
    finish_checks(&mut ex);
    let r = report(&mut rx[0]);
    assert_eq!(r.drift.len(), 1);
    assert!(!r.drift[0].repaired);
    assert!(
        ex.get_live("a").is_none(),
        "removed like an external deletion"
    );
    assert!(ex.get_live("b").is_some());
}
