//! Dual stack: an IPv6 subnet per namespace from --pool6, NAT66, isolation in both families.

use crate::harness::*;
use serde_json::{json, Value};

const POOL6: &str = "fd00:1::/48";
const UPSTREAM6: &str = "2001:2::2";
const UPLINK6: &str = "2001:2::1";

fn dual_stack() -> Sandbox {
    let mut sb = Sandbox::bare();
    sb.extra_args = vec!["--pool6".into(), POOL6.into()];
    sb.start_agent();
    sb
}

/// An upstream IPv6 listener that answers each connection with the peer address it saw.
fn listen6(sb: &Sandbox, ns: &str, port: u16) {
    sb.sh(&format!(
        "ip netns exec {ns} socat TCP6-LISTEN:{port},reuseaddr,fork SYSTEM:'echo $SOCAT_PEERADDR' >/dev/null 2>&1 &"
    ));
    sb.wait_until("listener", || {
        sb.sh(&format!("ip netns exec {ns} ss -Hltn"))
            .contains(&format!(":{port}"))
    });
}

fn connect6(sb: &Sandbox, from: &str, addr: &str, port: u16) -> Option<String> {
    let (ok, out) = sb.sh_status(&format!(
        "ip netns exec {from} socat -T2 - TCP6:[{addr}]:{port},connect-timeout=2 </dev/null"
    ));
    // socat prints the full form: canonicalise it.
    let out = out.trim().trim_start_matches('[').trim_end_matches(']');
    let addr = out.parse::<std::net::Ipv6Addr>().ok()?;
    ok.then(|| addr.to_string())
}

fn addr6(ns: &Value) -> String {
    ns["address6"].as_str().unwrap().to_string()
}

#[test]
fn dual_stack_namespaces_reach_upstream_over_ipv6_at_once_and_stay_isolated() {
    let mut sb = dual_stack();
    // Upstream can route the pool back to the host (for nat: false).
    sb.sh(&format!(
        "ip -n upstream -6 route add {POOL6} via {UPLINK6}"
    ));
    listen6(&sb, "upstream", 7000);
    let mut c = sb.client();
    let a = c.ok(json!({"op":"create","name":"a"}));
    // Right after the answer: no DAD wait, NAT66 to the uplink's address.
    assert_eq!(
        connect6(&sb, "a", UPSTREAM6, 7000).as_deref(),
        Some(UPLINK6)
    );
    assert_eq!(a["subnet6"], "fd00:1::/64");
    assert_eq!(a["gateway6"], "fd00:1::1");
    assert_eq!(a["address6"], "fd00:1::2");
    let b = c.ok(json!({"op":"create","name":"b","nat":false}));
    assert_eq!(connect6(&sb, "b", UPSTREAM6, 7000), Some(addr6(&b)));
    let v4 = c.ok(json!({"op":"create","name":"v4","ipv6":false}));
    assert!(v4["address6"].is_null());
    // Isolation in both families.
    listen6(&sb, "b", 80);
    assert_eq!(connect6(&sb, "a", &addr6(&b), 80), None);
    assert!(
        !sb.sh_status(&format!(
            "ip netns exec a socat -T2 - TCP:{}:80,connect-timeout=2 </dev/null",
            b["address"].as_str().unwrap()
        ))
        .0
    );
    // Forwarding only where the agent needs it.
    assert_eq!(
        sb.sh("cat /proc/sys/net/ipv6/conf/all/forwarding").trim(),
        "0"
    );
    let host_if = a["host_ifname"].as_str().unwrap();
    assert_eq!(
        sb.sh(&format!(
            "cat /proc/sys/net/ipv6/conf/{host_if}/force_forwarding"
        ))
        .trim(),
        "1"
    );
    let v4_if = v4["host_ifname"].as_str().unwrap();
    assert_eq!(
        sb.sh(&format!("cat /proc/sys/net/ipv6/conf/{v4_if}/disable_ipv6"))
            .trim(),
        "1",
        "an IPv4-only namespace keeps IPv6 off its host veth"
    );

    // Bad IPv6 input changes nothing.
    let before = sb.snapshot();
    for (bad, code) in [
        (
            json!({"op":"create","name":"x","subnet6":"fe80::/64"}),
            "invalid_subnet",
        ),
        (
            json!({"op":"create","name":"x","subnet6":"fd00:9::/48"}),
            "invalid_subnet",
        ),
        (
            json!({"op":"create","name":"x","subnet6":"fd00:9::1/64"}),
            "invalid_subnet",
        ),
        (
            json!({"op":"create","name":"x","subnet6":"fd00:1::/64"}),
            "subnet_in_use",
        ),
        (
            json!({"op":"create","name":"x","subnet6":"fd00:9::/64","ipv6":false}),
            "bad_request",
        ),
    ] {
        c.err(bad, code);
    }
    assert_eq!(sb.snapshot(), before);

    // Restart adopts them whole.
    sb.kill_agent();
    sb.start_agent();
    let mut c = sb.client();
    let again = c.ok(json!({"op":"get","name":"a"}));
    for f in ["subnet6", "gateway6", "address6"] {
        assert_eq!(again[f], a[f], "{f}");
    }
    assert!(c.ok(json!({"op":"get","name":"v4"}))["address6"].is_null());
    assert_eq!(
        connect6(&sb, "a", UPSTREAM6, 7000).as_deref(),
        Some(UPLINK6)
    );
    let st = c.ok(json!({"op":"status"}));
    assert_eq!(st["pool6"]["cidr"], POOL6);
    assert_eq!(st["pool6"]["free"], 65536 - 2);
    assert_eq!(
        sb.metric("nsagent_pool_subnets_free{family=\"ipv6\"}"),
        Some(65534.0)
    );
    assert_eq!(
        sb.metric("nsagent_pool_subnets{family=\"ipv4\"}"),
        Some(16384.0)
    );
    // Deleting forgets the IPv6 connections too.
    let tracked = |sb: &Sandbox| {
        let a6 = addr6(&a);
        sb.sh_status(&format!("conntrack -L -f ipv6 -s {a6} 2>/dev/null"))
            .1
            .lines()
            .filter(|l| l.contains("src="))
            .count()
    };
    assert!(tracked(&sb) > 0);
    c.ok(json!({"op":"delete","name":"a"}));
    assert_eq!(tracked(&sb), 0);
}

#[test]
fn the_rule_count_is_the_same_for_one_and_a_hundred_dual_stack_namespaces() {
    let sb = dual_stack();
    let mut c = sb.client();
    c.ok(json!({"op":"create","name":"n0"}));
    let (one, _) = sb.table_shape();
    for i in 1..100 {
        c.ok(json!({"op":"create","name":format!("n{i}")}));
    }
    let (many, sets) = sb.table_shape();
    assert_eq!(one, many);
    let nat6 = sets
        .iter()
        .find(|(n, _)| n == "nat_saddrs6")
        .map(|(_, e)| e.len());
    assert_eq!(nat6, Some(100));
}

#[test]
fn published_ports_and_egress_addresses_work_over_ipv6() {
    let mut sb = dual_stack();
    sb.sh("ip addr add 2001:2::9/128 dev uplink0 nodad");
    sb.sh("ip -n upstream -6 route add 2001:2::9/128 dev up0");
    listen6(&sb, "upstream", 7000);
    let mut c = sb.client();
    let web = c.ok(json!({"op":"create","name":"web","ports":[
        {"proto":"tcp","host_port":8080,"port":80},
        {"proto":"tcp","host_port":8081,"port":80,"host_addr":UPLINK6}]}));
    listen6(&sb, "web", 80);
    // A port on every address answers in both families; the listener sees the real client.
    assert_eq!(
        connect6(&sb, "upstream", UPLINK6, 8080).as_deref(),
        Some(UPSTREAM6)
    );
    assert_eq!(
        connect6(&sb, "upstream", UPLINK6, 8081).as_deref(),
        Some(UPSTREAM6)
    );
    let (ok, out) = sb.sh_status(
        "ip netns exec upstream socat -T2 - TCP:198.18.0.1:8080,connect-timeout=2 </dev/null",
    );
    // The listener is an IPv6 socket: it sees IPv4 clients as mapped addresses.
    let seen = out.trim().trim_start_matches('[').trim_end_matches(']');
    let v4 = seen
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .and_then(|a| a.to_ipv4_mapped());
    assert!(ok && v4 == Some("198.18.0.2".parse().unwrap()), "{out}");
    // An IPv6 egress address.
    let out = c.ok(json!({"op":"create","name":"out","egress_addr6":"2001:2::9"}));
    assert_eq!(out["egress_addr6"], "2001:2::9");
    assert_eq!(
        connect6(&sb, "out", UPSTREAM6, 7000).as_deref(),
        Some("2001:2::9")
    );
    // IPv6 features need IPv6.
    c.err(
        json!({"op":"create","name":"x","ipv6":false,"egress_addr6":"2001:2::9"}),
        "bad_request",
    );
    c.err(
        json!({"op":"create","name":"x","ipv6":false,"ports":[
            {"proto":"tcp","host_port":9000,"port":1,"host_addr":UPLINK6}]}),
        "bad_request",
    );
    c.err(
        json!({"op":"create","name":"x","egress_addr6":"2001:2::77"}),
        "invalid_address",
    );
    // The state is in the maps: a restart keeps it.
    sb.kill_agent();
    sb.start_agent();
    let mut c = sb.client();
    assert_eq!(
        c.ok(json!({"op":"get","name":"web"}))["ports"],
        web["ports"]
    );
    assert_eq!(
        c.ok(json!({"op":"get","name":"out"}))["egress_addr6"],
        "2001:2::9"
    );
    assert_eq!(
        connect6(&sb, "upstream", UPLINK6, 8081).as_deref(),
        Some(UPSTREAM6)
    );
    assert_eq!(
        connect6(&sb, "out", UPSTREAM6, 7000).as_deref(),
        Some("2001:2::9")
    );
}
