//! Published ports and egress addresses: map elements in the agent's one table.

use crate::harness::*;
use serde_json::{json, Value};

const HOST: &str = "198.18.0.1";

/// Starts a TCP listener inside `ns` on `port` that answers each connection with the peer
/// address it saw.
fn listen_in(sb: &Sandbox, ns: &str, port: u16) {
    sb.sh(&format!(
        "ip netns exec {ns} socat TCP-LISTEN:{port},reuseaddr,fork SYSTEM:'echo $SOCAT_PEERADDR' >/dev/null 2>&1 &"
    ));
    sb.wait_until("listener", || {
        sb.sh(&format!("ip netns exec {ns} ss -Hltn"))
            .contains(&format!(":{port}"))
    });
}

/// Connects to `addr:port` from namespace `from` ("" for the sandbox host itself); the peer
/// address the listener saw, or None.
fn connect(sb: &Sandbox, from: &str, addr: &str, port: u16) -> Option<String> {
    let prefix = if from.is_empty() {
        String::new()
    } else {
        format!("ip netns exec {from} ")
    };
    let (ok, out) = sb.sh_status(&format!(
        "{prefix}socat -T2 - TCP:{addr}:{port},connect-timeout=2 </dev/null"
    ));
    let out = out.trim().to_string();
    (ok && !out.is_empty()).then_some(out)
}

fn addr(ns: &Value) -> String {
    ns["address"].as_str().unwrap().to_string()
}

#[test]
fn a_published_port_is_reachable_from_upstream_the_host_and_other_namespaces() {
    let mut sb = Sandbox::new();
    let mut c = sb.client();
    let web = c.ok(json!({"op":"create","name":"web","ports":[
        {"proto":"tcp","host_port":8080,"port":80},
        {"proto":"tcp","host_port":8081,"port":80,"host_addr":HOST}]}));
    assert_eq!(web["ports"][0]["host_port"], 8080);
    let other = c.ok(json!({"op":"create","name":"other"}));
    listen_in(&sb, "web", 80);
    // From upstream, through the uplink: the listener sees the real client.
    assert_eq!(
        connect(&sb, "upstream", HOST, 8080).as_deref(),
        Some(UPSTREAM_ADDR)
    );
    assert_eq!(
        connect(&sb, "upstream", HOST, 8081).as_deref(),
        Some(UPSTREAM_ADDR)
    );
    // From the host itself.
    assert!(connect(&sb, "", HOST, 8080).is_some());
    // From another namespace, through the host address; isolation holds for everything else.
    assert_eq!(connect(&sb, "other", HOST, 8080), Some(addr(&other)));
    assert_eq!(connect(&sb, "other", &addr(&web), 80), None);
    // A port nobody published: nothing.
    assert_eq!(connect(&sb, "upstream", HOST, 8082), None);

    // Taken is taken; bad input changes nothing.
    let before = sb.snapshot();
    c.err(
        json!({"op":"create","name":"b","ports":[{"proto":"tcp","host_port":8080,"port":1}]}),
        "port_in_use",
    );
    c.err(
        json!({"op":"create","name":"b","ports":[{"proto":"tcp","host_port":8081,"port":1}]}),
        "port_in_use",
    );
    c.err(
        json!({"op":"create","name":"b","ports":[
            {"proto":"tcp","host_port":9000,"port":1},{"proto":"tcp","host_port":9000,"port":2}]}),
        "bad_request",
    );
    c.err(
        json!({"op":"create","name":"b","ports":[
            {"proto":"tcp","host_port":9000,"port":1,"host_addr":"203.0.113.9"}]}),
        "invalid_address",
    );
    c.err(
        json!({"op":"create","name":"b","ports":[{"proto":"sctp","host_port":9000,"port":1}]}),
        "bad_request",
    );
    c.err(
        json!({"op":"create","name":"b","ports":[{"proto":"tcp","host_port":70000,"port":1}]}),
        "bad_request",
    );
    assert_eq!(sb.snapshot(), before);

    // Restarts, even kill -9, keep it all: the map elements are the state.
    sb.kill_agent();
    sb.start_agent();
    let mut c = sb.client();
    let again = c.ok(json!({"op":"get","name":"web"}));
    assert_eq!(again["ports"], web["ports"]);
    assert_eq!(
        connect(&sb, "upstream", HOST, 8080).as_deref(),
        Some(UPSTREAM_ADDR)
    );
    c.err(
        json!({"op":"create","name":"b","ports":[{"proto":"tcp","host_port":8080,"port":1}]}),
        "port_in_use",
    );
    // Deleting frees the port at once.
    c.ok(json!({"op":"delete","name":"web"}));
    assert_eq!(connect(&sb, "upstream", HOST, 8080), None);
    c.ok(json!({"op":"create","name":"b","ports":[{"proto":"tcp","host_port":8080,"port":1}]}));
}

#[test]
fn egress_addresses_choose_where_outbound_traffic_comes_from() {
    let mut sb = Sandbox::new();
    // A second address on the uplink, routed back by upstream.
    sb.sh("ip addr add 198.18.0.9/32 dev uplink0");
    sb.sh("ip -n upstream route add 198.18.0.9/32 dev up0");
    sb.start_echo_peer(7000);
    let mut c = sb.client();
    let out = c.ok(json!({"op":"create","name":"out","egress_addr":"198.18.0.9"}));
    assert_eq!(out["egress_addr"], "198.18.0.9");
    c.ok(json!({"op":"create","name":"plain"}));
    assert_eq!(
        sb.peer_seen_from("out", 7000).as_deref(),
        Some("198.18.0.9")
    );
    assert_eq!(sb.peer_seen_from("plain", 7000).as_deref(), Some(HOST));
    c.err(
        json!({"op":"create","name":"x","egress_addr":"203.0.113.1"}),
        "invalid_address",
    );
    c.err(
        json!({"op":"create","name":"x","egress_addr":"198.18.0.9","nat":false}),
        "bad_request",
    );
    sb.kill_agent();
    sb.start_agent();
    let again = sb.client().ok(json!({"op":"get","name":"out"}));
    assert_eq!(again["egress_addr"], "198.18.0.9");
    assert_eq!(
        sb.peer_seen_from("out", 7000).as_deref(),
        Some("198.18.0.9")
    );
}

#[test]
fn the_rule_count_is_the_same_for_one_namespace_and_two_hundred_with_forwards() {
    let sb = Sandbox::new();
    let mut c = sb.client();
    c.ok(json!({"op":"create","name":"n0","ports":[{"proto":"tcp","host_port":10000,"port":80}]}));
    let (one, _) = sb.table_shape();
    for i in 1..200 {
        let ports: Vec<Value> = (0..3)
            .map(|k| json!({"proto": if k == 2 {"udp"} else {"tcp"}, "host_port": 10000 + i * 3 + k, "port": 80}))
            .collect();
        c.ok(json!({"op":"create","name":format!("n{i}"),"ports":ports}));
    }
    let (many, sets) = sb.table_shape();
    assert_eq!(one, many);
    let forwards = sets
        .iter()
        .find(|(n, _)| n == "forwards_any")
        .map(|(_, e)| e.len());
    assert_eq!(forwards, Some(1 + 199 * 3));
}

#[test]
fn update_adds_and_removes_each_field_and_a_refused_one_changes_nothing() {
    let mut sb = Sandbox::new();
    sb.sh("ip addr add 198.18.0.9/32 dev uplink0");
    sb.sh("ip -n upstream route add 198.18.0.9/32 dev up0");
    sb.start_echo_peer(7000);
    let mut c = sb.client();
    c.ok(json!({"op":"create","name":"u"}));
    c.ok(json!({"op":"create","name":"v","ports":[{"proto":"tcp","host_port":9090,"port":80}]}));
    listen_in(&sb, "u", 80);

    // Ports: add, then traffic; the egress address: add, then traffic.
    let ns = c.ok(json!({"op":"update","name":"u",
        "ports":[{"proto":"tcp","host_port":8080,"port":80}],"egress_addr":"198.18.0.9"}));
    assert_eq!(ns["ports"][0]["host_port"], 8080);
    assert_eq!(
        connect(&sb, "upstream", HOST, 8080).as_deref(),
        Some(UPSTREAM_ADDR)
    );
    assert_eq!(sb.peer_seen_from("u", 7000).as_deref(), Some("198.18.0.9"));

    // Refused updates change nothing, and the old configuration keeps working.
    let before = sb.snapshot();
    for (bad, code) in [
        (
            json!({"op":"update","name":"u","ports":[{"proto":"tcp","host_port":9090,"port":80}]}),
            "port_in_use",
        ),
        (
            json!({"op":"update","name":"u","egress_addr":"203.0.113.1"}),
            "invalid_address",
        ),
        (json!({"op":"update","name":"u","nat":false}), "bad_request"),
        (
            json!({"op":"update","name":"u","bandwidth":{"ingress_bps":1}}),
            "bad_request",
        ),
        (json!({"op":"update","name":"u"}), "bad_request"),
        (
            json!({"op":"update","name":"nobody","nat":true}),
            "not_found",
        ),
        (
            json!({"op":"update","name":"u","subnet":"100.64.9.0/30"}),
            "bad_request",
        ),
    ] {
        c.err(bad, code);
    }
    assert_eq!(sb.snapshot(), before);
    assert_eq!(
        connect(&sb, "upstream", HOST, 8080).as_deref(),
        Some(UPSTREAM_ADDR)
    );
    assert_eq!(sb.peer_seen_from("u", 7000).as_deref(), Some("198.18.0.9"));

    // A rate limit and DNS: added, then visible in the kernel and the file system.
    let ns = c.ok(json!({"op":"update","name":"u","bandwidth":{"ingress_bps":10_000_000,"egress_bps":2_000_000},
        "dns":{"nameservers":["9.9.9.9"]}}));
    let host_if = ns["host_ifname"].as_str().unwrap().to_string();
    assert!(sb
        .sh(&format!("tc qdisc show dev {host_if}"))
        .contains("rate 10Mbit"));
    assert!(sb
        .sh("ip netns exec u tc qdisc show dev eth0")
        .contains("rate 2Mbit"));
    assert!(sb
        .sh("ip netns exec u cat /etc/resolv.conf")
        .contains("nameserver 9.9.9.9"));
    // Restart: the update is the state.
    sb.kill_agent();
    sb.start_agent();
    let mut c = sb.client();
    let again = c.ok(json!({"op":"get","name":"u"}));
    for field in ["ports", "egress_addr", "bandwidth", "dns"] {
        assert_eq!(again[field], ns[field], "{field}");
    }

    // Remove each with null: traffic follows, and the removed port's connections are
    // forgotten (the one made here is still tracked until then).
    assert!(connect(&sb, "upstream", HOST, 8080).is_some());
    let tracked = |sb: &Sandbox| {
        sb.sh_status("conntrack -L -p tcp --orig-port-dst 8080 2>/dev/null")
            .1
            .lines()
            .filter(|l| l.contains("dport=8080"))
            .count()
    };
    assert!(tracked(&sb) > 0);
    c.ok(json!({"op":"update","name":"u","ports":null}));
    assert_eq!(
        tracked(&sb),
        0,
        "connections to the removed port are forgotten"
    );
    // ... and only those: the egress connection made above is still tracked.
    assert!(sb
        .sh_status("conntrack -L 2>/dev/null")
        .1
        .contains("dport=7000"));
    let ns = c.ok(json!({"op":"update","name":"u","egress_addr":null,
        "bandwidth":null,"dns":null}));
    for field in ["ports", "egress_addr", "bandwidth", "dns", "resolv_conf"] {
        assert!(ns[field].is_null(), "{field}: {ns}");
    }
    assert_eq!(connect(&sb, "upstream", HOST, 8080), None);
    assert_eq!(sb.peer_seen_from("u", 7000).as_deref(), Some(HOST));
    assert!(!sb
        .sh(&format!("tc qdisc show dev {host_if}"))
        .contains("tbf"));
    assert!(!sb.sh_status("test -e /etc/netns/u").0);
    // NAT off: the namespace's traffic leaves untranslated (upstream cannot answer it).
    let ns = c.ok(json!({"op":"update","name":"u","nat":false}));
    assert_eq!(ns["nat"], false);
    assert_eq!(sb.peer_seen_from("u", 7000), None);
    c.ok(json!({"op":"update","name":"u","nat":true}));
    assert_eq!(sb.peer_seen_from("u", 7000).as_deref(), Some(HOST));
    // The port the update let go of is free for others.
    c.ok(json!({"op":"update","name":"v","ports":[{"proto":"tcp","host_port":8080,"port":80}]}));
}
