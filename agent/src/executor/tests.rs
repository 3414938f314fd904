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
    (Job { request, reply: tx }, rx)
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
