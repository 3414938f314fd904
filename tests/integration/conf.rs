//! A namespace's configuration beyond its addresses: DNS, bandwidth limits.

use crate::harness::*;
use serde_json::json;

#[test]
fn dns_lands_where_ip_netns_exec_and_nsagent_exec_find_it() {
    let mut sb = Sandbox::new();
    let mut c = sb.client();
    let ns = c.ok(json!({"op":"create","name":"r","dns":{
        "nameservers":["9.9.9.9","2001:2::53"],"search":["ci.example"],"options":["ndots:2"]}}));
    assert_eq!(ns["dns"]["nameservers"], json!(["9.9.9.9", "2001:2::53"]));
    assert_eq!(ns["resolv_conf"], "/etc/netns/r/resolv.conf");
    let want = "nameserver 9.9.9.9\nnameserver 2001:2::53\nsearch ci.example\noptions ndots:2\n";
    // `ip netns exec` binds /etc/netns/r/resolv.conf over /etc/resolv.conf.
    let seen = sb.sh("ip netns exec r cat /etc/resolv.conf");
    assert!(seen.ends_with(want), "{seen}");
    assert_eq!(sb.sh("stat -c %a /etc/netns/r/resolv.conf").trim(), "644");
    // So does `nsagent exec`, in a mount namespace of its own: the sandbox's /etc is untouched.
    let before = sb.sh("cat /etc/resolv.conf 2>/dev/null || true");
    let seen = sb.sh(&format!(
        "NSAGENT_SOCKET={} {BIN} exec r cat /etc/resolv.conf",
        sb.socket.display()
    ));
    assert!(seen.ends_with(want), "{seen}");
    assert_eq!(sb.sh("cat /etc/resolv.conf 2>/dev/null || true"), before);
    // A namespace without dns gets no file.
    c.ok(json!({"op":"create","name":"plain"}));
    assert!(!sb.sh_status("test -e /etc/netns/plain").0);
    // Restarts, even kill -9, keep it: the file is the state.
    sb.kill_agent();
    sb.start_agent();
    let mut c = sb.client();
    let ns = c.ok(json!({"op":"get","name":"r"}));
    assert_eq!(ns["dns"]["search"], json!(["ci.example"]));
    assert_eq!(ns["dns"]["options"], json!(["ndots:2"]));
    assert!(c.ok(json!({"op":"get","name":"plain"}))["dns"].is_null());
    // Delete removes it, directory and all.
    c.ok(json!({"op":"delete","name":"r"}));
    assert!(!sb.sh_status("test -e /etc/netns/r").0);
}

#[test]
fn bad_dns_and_bandwidth_change_nothing() {
    let sb = Sandbox::new();
    let mut c = sb.client();
    let before = sb.snapshot();
    for bad in [
        json!({"nameservers":[]}),
        json!({"nameservers":["1.1.1.1","1.1.1.2","1.1.1.3","1.1.1.4"]}),
        json!({"nameservers":["1.1.1.1"],"search":["a.example\nnameserver 6.6.6.6"]}),
        json!({"nameservers":["1.1.1.1"],"options":["ndots:2 rotate"]}),
        json!({"nameservers":["not-an-address"]}),
        json!({"nameservers":["1.1.1.1"],"extra":1}),
    ] {
        c.err(json!({"op":"create","name":"x","dns":bad}), "bad_request");
    }
    for bad in [
        json!({}),
        json!({"ingress_bps": 7999}),
        json!({"egress_bps": -1}),
        json!({"ingress_bps": 1e6}),
        json!({"up": 1}),
    ] {
        c.err(
            json!({"op":"create","name":"x","bandwidth":bad}),
            "bad_request",
        );
    }
    assert_eq!(sb.snapshot(), before);
}

/// Throughput (bits/s) a bulk TCP transfer of a few seconds gets between namespace `ns` and
/// upstream: `into` = upstream sends into the namespace.
fn throughput(sb: &Sandbox, ns: &str, into: bool) -> f64 {
    let reverse = if into { "-R" } else { "" };
    let out = sb.json(&format!(
        "ip netns exec {ns} iperf3 -J -c 198.18.0.2 -t 3 -O 1 {reverse}"
    ));
    out["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("iperf3: {out}"))
}

#[test]
fn bandwidth_limits_hold_both_ways_and_survive_a_restart() {
    let mut sb = Sandbox::new();
    let mut c = sb.client();
    for (name, bps) in [("slow", 10_000_000u64), ("fast", 100_000_000)] {
        let ns = c.ok(json!({"op":"create","name":name,
            "bandwidth":{"ingress_bps":bps,"egress_bps":bps}}));
        assert_eq!(ns["bandwidth"]["ingress_bps"], bps);
        for into in [true, false] {
            // One server run per measurement: -1 ends it after one client. The last one may
            // still be listening while it exits (the new one would not bind, the client would
            // reach the old one as it goes: refused): wait until it is gone.
            sb.sh("for i in $(seq 100); do ip netns exec upstream ss -Hltn 'sport = :5201' | grep -q . || break; sleep 0.05; done");
            sb.sh("ip netns exec upstream iperf3 -s -D -1 >/dev/null 2>&1");
            // The daemon binds after it has detached: wait for its listener (a loaded CI
            // machine took more than a fixed pause once).
            sb.sh("for i in $(seq 100); do ip netns exec upstream ss -Hltn 'sport = :5201' | grep -q . && break; sleep 0.05; done");
            let got = throughput(&sb, name, into);
            let ratio = got / bps as f64;
            assert!(
                (0.85..=1.15).contains(&ratio),
                "{name} {} {got:.0} bits/s for a {bps} limit ({ratio:.2})",
                if into { "into" } else { "out of" }
            );
        }
    }
    // The qdiscs are the state.
    sb.kill_agent();
    sb.start_agent();
    let ns = sb.client().ok(json!({"op":"get","name":"slow"}));
    assert_eq!(
        ns["bandwidth"],
        json!({"ingress_bps":10_000_000,"egress_bps":10_000_000})
    );
    // One direction only.
    let ns = sb
        .client()
        .ok(json!({"op":"create","name":"up","bandwidth":{"egress_bps":1_000_000}}));
    assert!(ns["bandwidth"]["ingress_bps"].is_null());
    let host_if = ns["host_ifname"].as_str().unwrap().to_string();
    assert!(!sb
        .sh(&format!("tc qdisc show dev {host_if}"))
        .contains("tbf"));
    assert!(sb
        .sh("ip netns exec up tc qdisc show dev eth0")
        .contains("tbf"));
}

#[test]
fn the_cli_sets_and_shows_dns_and_rates() {
    let sb = Sandbox::new();
    let cli = |args: &str| {
        sb.sh(&format!(
            "NSAGENT_SOCKET={} {BIN} {args}",
            sb.socket.display()
        ))
    };
    let out =
        cli("add web --dns 9.9.9.9 --dns-search ci.example --rate 10mbit --rate out:1mbit --json");
    let ns: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(ns["dns"]["nameservers"], json!(["9.9.9.9"]));
    assert_eq!(
        ns["bandwidth"],
        json!({"ingress_bps":10_000_000,"egress_bps":1_000_000})
    );
    let shown = cli("show web");
    assert!(shown.contains("9.9.9.9 (search ci.example)"), "{shown}");
    assert!(shown.contains("in 10mbit, out 1mbit"), "{shown}");
    let (ok, err) = sb.sh_status(&format!(
        "NSAGENT_SOCKET={} {BIN} add bad --rate 7kbit",
        sb.socket.display()
    ));
    assert!(!ok && err.contains("bad_request"), "{err}");
    // Ports and an egress address, then `set` changes and removes them.
    let out = cli("add pub -p 8080:80 -p udp/5353:53 --egress 198.18.0.1 --json");
    let ns: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(ns["ports"].as_array().map(|p| p.len()), Some(2));
    assert_eq!(ns["egress_addr"], "198.18.0.1");
    let shown = cli("show pub");
    assert!(shown.contains("tcp/*:8080->80, udp/*:5353->53"), "{shown}");
    let ns: serde_json::Value =
        serde_json::from_str(&cli("set pub -p 9000:90 --no-egress --rate 1mbit --json")).unwrap();
    assert_eq!(
        ns["ports"],
        json!([{"proto":"tcp","host_port":9000,"port":90}])
    );
    assert!(ns["egress_addr"].is_null());
    assert_eq!(ns["bandwidth"]["ingress_bps"], 1_000_000);
    let ns: serde_json::Value =
        serde_json::from_str(&cli("set pub --no-ports --no-rate --no-nat --json")).unwrap();
    assert!(ns["ports"].is_null() && ns["bandwidth"].is_null());
    assert_eq!(ns["nat"], false);
}

#[test]
fn delete_forgets_every_connection_of_the_address() {
    let sb = Sandbox::new();
    let mut c = sb.client();
    let a = c.ok(json!({"op":"create","name":"a"}));
    let b = c.ok(json!({"op":"create","name":"b"}));
    let (addr_a, addr_b) = (
        a["address"].as_str().unwrap(),
        b["address"].as_str().unwrap(),
    );
    for ns in ["a", "b"] {
        sb.sh(&format!(
            "ip netns exec {ns} ping -c1 -W2 198.18.0.2 >/dev/null"
        ));
    }
    let entries = |addr: &str| {
        let (_, out) = sb.sh_status(&format!("conntrack -L -s {addr} 2>/dev/null"));
        out.lines().filter(|l| l.contains(addr)).count()
    };
    assert!(entries(addr_a) > 0, "the ping left an entry");
    c.ok(json!({"op":"delete","name":"a"}));
    assert_eq!(entries(addr_a), 0, "nothing of {addr_a} is left");
    assert!(entries(addr_b) > 0, "the neighbour's connections stay");
}
