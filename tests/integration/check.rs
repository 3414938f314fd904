//! Issue 14: `check` finds drift between the kernel and the agent's view, `check --repair`
//! and the periodic check put it back (and traffic works again).

use crate::cli;
use crate::harness::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const PORT: u16 = 7301;

fn drift(c: &mut Client, repair: bool) -> (bool, BTreeSet<(String, String, bool)>) {
    let r = c.ok(json!({"op":"check","repair":repair}));
    let set = r["drift"]
        .as_array()
        .expect("drift")
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap_or("").to_string(),
                d["problem"].as_str().unwrap_or("").to_string(),
                d["repaired"] == json!(true),
            )
        })
        .collect();
    (r["clean"] == json!(true), set)
}

fn entry(name: &str, problem: &str, repaired: bool) -> (String, String, bool) {
    (name.into(), problem.into(), repaired)
}

#[test]
fn check_reports_each_kind_of_drift_and_repair_puts_it_back() {
    let mut sb = Sandbox::bare();
    sb.extra_args = vec!["--check-interval".into(), "0".into()];
    sb.start_agent();
    sb.start_echo_peer(PORT);
    let mut c = sb.client();
    let e = c.ok(json!({"op":"create","name":"e"}));
    for n in ["a", "r", "l"] {
        c.ok(json!({"op":"create","name":n}));
    }
    c.ok(json!({"op":"create","name":"d","dns":{"nameservers":["198.18.0.2"]}}));
    let q = c.ok(json!({"op":"create","name":"q","bandwidth":{"ingress_bps":10_000_000u64}}));
    assert_eq!(
        drift(&mut c, false),
        (true, BTreeSet::new()),
        "a fresh agent is clean"
    );

    // Six kinds of damage, done with the tools.
    sb.sh(&format!(
        "nft delete element inet nsagent nat_saddrs {{ {} }}
         ip -n a addr flush dev eth0
         ip -n r route del default
         ip -n l link set eth0 down
         rm /etc/netns/d/resolv.conf
         tc qdisc del dev {} root",
        e["address"].as_str().unwrap(),
        q["host_ifname"].as_str().unwrap()
    ));
    for n in ["e", "a", "r", "l"] {
        assert_eq!(sb.peer_seen_from(n, PORT), None, "{n} is broken");
    }
    let want = |repaired| {
        BTreeSet::from([
            entry("e", "element_missing", repaired),
            entry("a", "address_missing", repaired),
            // Without its address the kernel dropped the route that used it.
            entry("a", "route_missing", repaired),
            entry("r", "route_missing", repaired),
            entry("l", "link_down", repaired),
            // A link that goes down loses its routes.
            entry("l", "route_missing", repaired),
            entry("d", "resolv_conf_missing", repaired),
            entry("q", "ingress_qdisc_missing", repaired),
        ])
    };
    assert_eq!(drift(&mut c, false), (false, want(false)));
    // A check without repair changed nothing.
    assert_eq!(drift(&mut c, false), (false, want(false)));
    assert_eq!(drift(&mut c, true), (false, want(true)), "{}", sb.log());
    assert_eq!(drift(&mut c, false), (true, BTreeSet::new()), "repaired");
    for n in ["e", "a", "r", "l"] {
        assert_eq!(
            sb.peer_seen_from(n, PORT).as_deref(),
            Some(UPLINK_ADDR),
            "{n} works again"
        );
    }
    assert!(sb.sh("cat /etc/netns/d/resolv.conf").contains("198.18.0.2"));
    assert!(sb
        .sh(&format!(
            "tc qdisc show dev {}",
            q["host_ifname"].as_str().unwrap()
        ))
        .contains("tbf"));
    assert!(
        sb.metric("nsagent_drift_total{problem=\"route_missing\"}")
            .unwrap_or(0.0)
            >= 3.0
    );

    // The CLI: exit 1 while there is drift, 0 once repaired.
    sb.sh("ip -n r route del default");
    let r = cli::nsagent(&sb, &["check"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("route_missing"), "{}", r.stdout);
    let r = cli::ok(&sb, &["check", "--repair"]);
    assert!(r.stdout.contains("1 repaired"), "{}", r.stdout);
    cli::ok(&sb, &["check"]);
}

#[test]
fn the_periodic_check_repairs_without_being_asked() {
    let mut sb = Sandbox::bare();
    sb.extra_args = vec!["--check-interval".into(), "1".into()];
    sb.start_agent();
    let mut c = sb.client();
    c.ok(json!({"op":"create","name":"p"}));
    let mut w = sb.client();
    w.ok(json!({"op":"watch"}));
    sb.sh("ip -n p route del default");
    let v: Value = w.recv().expect("an event");
    assert_eq!(v["event"], json!("repaired"), "{v}: {}", sb.log());
    assert_eq!(v["namespace"]["name"], json!("p"));
    assert!(sb.sh("ip -n p route show default").contains("via"));
}
