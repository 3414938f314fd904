//! Integration tests: the real binary, the real kernel, inside throwaway sandboxes.
//! They need root (CI runs as root) plus iproute2, nftables and socat.

mod check;
pub mod cli;
mod cni;
mod conf;
mod harness;
mod hostile;
mod ipv6;
mod metrics;
mod ops;
mod podman;
mod ports;
mod recovery;
mod warm;
mod watch;

use harness::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

fn create(c: &mut Client, name: &str) -> Value {
    c.ok(json!({"op":"create","name":name}))
}

#[test]
fn create_wires_a_namespace_that_reaches_upstream_through_nat() {
    let sb = Sandbox::new();
    let mut c = sb.client();
    assert!(c.ok(json!({"op":"ping"}))["version"].is_string());
    let ns = create(&mut c, "netns-A");
    assert_eq!(ns["name"], "netns-A");
    assert_eq!(ns["netns_path"], "/run/netns/netns-A");
    assert_eq!(ns["ns_ifname"], "eth0");
    assert_eq!(ns["nat"], true);
    let (gw, addr) = (
        ns["gateway"].as_str().unwrap(),
        ns["address"].as_str().unwrap(),
    );

    // The netns is a named one: `ip netns list` shows it.
    assert!(sb
        .sh("ip netns list")
        .lines()
        .any(|l| l.starts_with("netns-A")));
    // Address, links up, default route via the gateway (the host side), not the own address.
    let addrs = sb.json("ip -n netns-A -j addr show");
    let eth0 = addrs
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ifname"] == "eth0")
        .expect("eth0");
    assert!(eth0["flags"].as_array().unwrap().contains(&json!("UP")));
    assert!(eth0["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["local"] == addr));
    let lo = addrs
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ifname"] == "lo")
        .expect("lo");
    assert!(lo["flags"].as_array().unwrap().contains(&json!("UP")));
    let routes = sb.json("ip -n netns-A -j route show default");
    assert_eq!(routes[0]["gateway"], gw);
    // Host side: the gateway address on the host veth, which is up.
    let host = ns["host_ifname"].as_str().unwrap();
    let haddr = sb.json(&format!("ip -j addr show dev {host}"));
    assert!(haddr[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["local"] == gw));
    assert_eq!(haddr[0]["operstate"], "UP");
    // Neighbours are pinned on both sides (no ARP, no use of the host-wide neighbour table).
    let n = sb.json(&format!("ip -j neigh show dev {host}"));
    assert_eq!(n[0]["dst"], addr);
    assert!(
        n[0]["state"]
            .as_array()
            .unwrap()
            .contains(&json!("PERMANENT")),
        "{n}"
    );
    let n = sb.json("ip -n netns-A -j neigh show dev eth0");
    assert_eq!(n[0]["dst"], gw);
    assert!(
        n[0]["state"]
            .as_array()
            .unwrap()
            .contains(&json!("PERMANENT")),
        "{n}"
    );
    // No IPv6 link-local on either end.
    assert!(!eth0["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["family"] == "inet6"));
    // Forwarding is on.
    assert_eq!(sb.sh("cat /proc/sys/net/ipv4/ip_forward").trim(), "1");

    // Traffic: the upstream listener sees the uplink's address (masquerade, proved).
    sb.start_echo_peer(7000);
    assert_eq!(
        sb.peer_seen_from("netns-A", 7000).as_deref(),
        Some(UPLINK_ADDR)
    );
    // And conntrack agrees: the flow was source-NATed to the uplink address.
    let ct = sb.sh("conntrack -L -p tcp --dport 7000 2>/dev/null || true");
    if !ct.trim().is_empty() {
        assert!(ct.contains(&format!("dst={UPLINK_ADDR}")), "{ct}");
    }

    // `get` returns what `create` did.
    assert_eq!(c.ok(json!({"op":"get","name":"netns-A"})), ns);
}

#[test]
fn without_nat_the_source_address_is_kept() {
    let sb = Sandbox::new();
    let mut c = sb.client();
    let ns = c.ok(json!({"op":"create","name":"plain","nat":false,"subnet":"198.18.9.0/30"}));
    assert_eq!(ns["address"], "198.18.9.2");
    sb.sh("ip netns exec upstream ip route add 198.18.9.0/30 via 198.18.0.1");
    sb.start_echo_peer(7001);
    assert_eq!(
        sb.peer_seen_from("plain", 7001).as_deref(),
        Some("198.18.9.2")
    );
}

#[test]
fn namespaces_are_isolated_and_closed_to_upstream() {
    let sb = Sandbox::new();
    let mut c = sb.client();
    let a = create(&mut c, "a");
    let b = create(&mut c, "b");
    // Namespace to namespace: dropped (both the peer's address and its gateway path).
    let b_addr = b["address"].as_str().unwrap();
    let (ok, _) = sb.sh_status(&format!("ip netns exec a ping -c1 -W1 {b_addr}"));
    assert!(!ok, "a reached b");
    sb.sh("ip netns exec b socat TCP-LISTEN:7100,reuseaddr SYSTEM:'echo hi' >/dev/null 2>&1 &");
    sb.wait_until("listener in b", || {
        sb.sh("ip netns exec b ss -Hltn").contains(":7100")
    });
    let (ok, out) = sb.sh_status(&format!(
        "ip netns exec a socat -T1 - TCP:{b_addr}:7100,connect-timeout=1 </dev/null"
    ));
    assert!(!ok || out.trim().is_empty(), "a connected to b: {out}");
    // Upstream cannot open a connection into a namespace, even with a route to it.
    sb.sh(&format!(
        "ip netns exec upstream ip route add {POOL} via {UPLINK_ADDR}"
    ));
    let (ok, out) = sb.sh_status(&format!(
        "ip netns exec upstream socat -T1 - TCP:{b_addr}:7100,connect-timeout=1 </dev/null"
    ));
    assert!(
        !ok || out.trim().is_empty(),
        "upstream connected into b: {out}"
    );
    // ... while the namespace itself still reaches upstream.
    sb.start_echo_peer(7002);
    assert_eq!(sb.peer_seen_from("a", 7002).as_deref(), Some(UPLINK_ADDR));
    let _ = a;
}

#[test]
fn rule_count_does_not_grow_with_namespaces() {
    let sb = Sandbox::new();
    let mut c = sb.client();
    let (rules0, _) = sb.table_shape();
    create(&mut c, "n0");
    let (rules1, sets1) = sb.table_shape();
    // Pipelined: 99 more.
    for i in 1..100 {
        c.send(json!({"op":"create","name":format!("n{i}")}));
    }
    for _ in 1..100 {
        let r = c.recv().expect("response");
        assert_eq!(r["ok"], true, "{r}");
    }
    let (rules100, sets100) = sb.table_shape();
    assert_eq!(rules0, rules1);
    assert_eq!(rules1, rules100);
    let count = |sets: &Vec<(String, Vec<String>)>, name: &str| {
        sets.iter().find(|(n, _)| n == name).map(|(_, e)| e.len())
    };
    assert_eq!(count(&sets1, "ns_ifaces"), Some(1));
    assert_eq!(count(&sets100, "ns_ifaces"), Some(100));
    assert_eq!(count(&sets100, "nat_saddrs"), Some(100));
    assert_eq!(sb.netns_files().len(), 100);
    assert_eq!(c.ok(json!({"op":"status"}))["namespaces"], 100);
}

#[test]
fn delete_leaves_no_trace() {
    let sb = Sandbox::new();
    let mut c = sb.client();
    let empty = sb.table_shape();
    let links_before = sb.host_links();
    let ns = create(&mut c, "gone");
    let host = ns["host_ifname"].as_str().unwrap().to_string();
    assert!(sb.host_links().contains(&host));
    assert_eq!(
        c.ok(json!({"op":"delete","name":"gone"})),
        json!({"name":"gone"})
    );
    // The netns file is gone at once, the elements too.
    assert!(sb.netns_files().is_empty());
    assert_eq!(sb.table_shape(), empty);
    // Both veth ends die with the namespace, asynchronously.
    sb.wait_until("host veth removal", || sb.host_links() == links_before);
    c.err(json!({"op":"get","name":"gone"}), "not_found");
    c.err(json!({"op":"delete","name":"gone"}), "not_found");
    let st = c.ok(json!({"op":"status"}));
    assert_eq!(st["namespaces"], 0);
    sb.wait_until("pool released", || {
        let st = c.ok(json!({"op":"status"}));
        st["pool"]["free"] == st["pool"]["size"]
    });
    // The name can be used again.
    create(&mut c, "gone");
}

#[test]
fn delete_then_create_of_the_same_name_in_one_pipeline_succeeds() {
    let sb = Sandbox::new();
    let mut c = sb.client();
    create(&mut c, "again");
    let d = c.send(json!({"op":"delete","name":"again"}));
    let cr = c.send(json!({"op":"create","name":"again"}));
    let mut got = BTreeMap::new();
    for _ in 0..2 {
        let r = c.recv().unwrap();
        got.insert(r["id"].as_u64().unwrap(), r);
    }
    assert_eq!(got[&d]["ok"], true, "{}", got[&d]);
    assert_eq!(got[&cr]["ok"], true, "{}", got[&cr]);
    assert_eq!(sb.netns_files(), vec!["again"]);
}

#[test]
fn bad_input_gets_its_code_and_changes_nothing() {
    let sb = Sandbox::new();
    let mut c = sb.client();
    create(&mut c, "live");
    c.ok(json!({"op":"create","name":"fixed","subnet":"198.18.4.0/30"}));
    let before = sb.snapshot();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"op":"create","name":"a/b"}), "invalid_name"),
        (json!({"op":"create","name":".."}), "invalid_name"),
        (json!({"op":"create","name":""}), "invalid_name"),
        (json!({"op":"create","name":"x".repeat(65)}), "invalid_name"),
        (json!({"op":"create","name":"a b"}), "invalid_name"),
        (json!({"op":"create","name":"café"}), "invalid_name"),
        (
            json!({"op":"create","name":"ok","ns_ifname":"bad/if"}),
            "invalid_name",
        ),
        (
            json!({"op":"create","name":"ok","host_ifname":"0123456789abcdef"}),
            "invalid_name",
        ),
        (
            json!({"op":"create","name":"ok","subnet":"198.18.5.1/30"}),
            "invalid_subnet",
        ),
        (
            json!({"op":"create","name":"ok","subnet":"198.18.5.0/32"}),
            "invalid_subnet",
        ),
        (
            json!({"op":"create","name":"ok","subnet":"198.18.5.0/24"}),
            "invalid_subnet",
        ),
        (
            json!({"op":"create","name":"ok","subnet":"2001:db8::/64"}),
            "invalid_subnet",
        ),
        (
            json!({"op":"create","name":"ok","subnet":"198.18.4.0/31"}),
            "subnet_in_use",
        ),
        (json!({"op":"create","name":"live"}), "exists"),
        (
            json!({"op":"create","name":"ok","host_ifname":"uplink0"}),
            "exists",
        ),
        (json!({"op":"delete","name":"nobody"}), "not_found"),
        (json!({"op":"get","name":"nobody"}), "not_found"),
        (json!({"op":"create","name":5}), "bad_request"),
        (
            json!({"op":"create","name":"ok","nat":"yes"}),
            "bad_request",
        ),
        (json!({"op":"create","name":"ok","extra":1}), "bad_request"),
        (json!({"op":"explode"}), "bad_request"),
        (json!({"name":"ok"}), "bad_request"),
    ];
    for (req, code) in cases {
        c.err(req.clone(), code);
        assert_eq!(sb.snapshot(), before, "{req} changed the kernel");
    }
    // Not JSON: id null, and the connection stays usable.
    c.send_raw(b"this is not json\n");
    let r = c.recv().unwrap();
    assert_eq!(r["id"], Value::Null);
    assert_eq!(r["error"]["code"], "bad_request");
    c.send_raw(b"[1,2,3]\n");
    assert_eq!(c.recv().unwrap()["error"]["code"], "bad_request");
    assert_eq!(c.ok(json!({"op":"get","name":"live"}))["name"], "live");
    assert_eq!(sb.snapshot(), before);
    // A line over 64 KiB: bad_request, then the connection is closed.
    let mut long = vec![b'x'; 70 * 1024];
    long.push(b'\n');
    c.send_raw(&long);
    let r = c.recv().unwrap();
    assert_eq!(r["error"]["code"], "bad_request");
    assert!(c.recv().is_none(), "connection should be closed");
    assert_eq!(sb.snapshot(), before);
}

#[test]
fn same_name_from_two_clients_exactly_one_wins() {
    let sb = Sandbox::new();
    for round in 0..10 {
        let name = format!("race{round}");
        let mut a = sb.client();
        let mut b = sb.client();
        a.send(json!({"op":"create","name":name}));
        b.send(json!({"op":"create","name":name}));
        let ra = a.recv().unwrap();
        let rb = b.recv().unwrap();
        let oks = [&ra, &rb].iter().filter(|r| r["ok"] == true).count();
        assert_eq!(oks, 1, "{ra} {rb}");
        let loser = if ra["ok"] == true { rb } else { ra };
        assert_eq!(loser["error"]["code"], "exists");
    }
    assert_eq!(sb.netns_files().len(), 10);
}

#[test]
fn foreign_tables_are_never_touched() {
    let mut sb = Sandbox::bare();
    sb.sh(
        "nft add table inet other && \
         nft add chain inet other fwdchain '{ type filter hook forward priority 10; policy accept; }' && \
         nft add rule inet other fwdchain ip saddr 198.18.99.0/24 counter drop && \
         nft add table ip legacy && nft add chain ip legacy c",
    );
    let foreign = |sb: &Sandbox| {
        sb.sh("nft --handle list table inet other; nft --handle list table ip legacy")
    };
    let before = foreign(&sb);
    sb.start_agent();
    let mut c = sb.client();
    for i in 0..5 {
        create(&mut c, &format!("f{i}"));
    }
    for i in 0..3 {
        c.ok(json!({"op":"delete","name":format!("f{i}")}));
    }
    assert_eq!(foreign(&sb), before);
    sb.stop_agent();
    assert_eq!(foreign(&sb), before);
    // A restart rewrites only its own table.
    sb.start_agent();
    assert_eq!(foreign(&sb), before);
}

#[test]
fn two_pipelining_clients_end_state_matches_acks() {
    let sb = Sandbox::new();
    let socket = sb.socket.clone();
    let workers: Vec<_> = ["p", "q"]
        .iter()
        .map(|prefix| {
            let socket = socket.clone();
            let prefix = prefix.to_string();
            std::thread::spawn(move || {
                let mut c = Client::connect(&socket);
                let mut sent = BTreeMap::new();
                // 200 requests: create i, and every third step delete an earlier one.
                let mut n = 0;
                let mut i = 0;
                while n < 200 {
                    let name = format!("{prefix}{i}");
                    sent.insert(c.send(json!({"op":"create","name":name})), ("create", name));
                    n += 1;
                    if i % 3 == 2 && n < 200 {
                        let victim = format!("{prefix}{}", i - 1);
                        sent.insert(
                            c.send(json!({"op":"delete","name":victim})),
                            ("delete", victim),
                        );
                        n += 1;
                    }
                    i += 1;
                }
                let mut replies = BTreeMap::new();
                for _ in 0..200 {
                    let r = c.recv().expect("every request gets a response");
                    let id = r["id"].as_u64().expect("numeric id");
                    assert!(sent.contains_key(&id), "unknown id {id}");
                    assert!(
                        replies.insert(id, r).is_none(),
                        "duplicate response for {id}"
                    );
                }
                // Replay acknowledged operations in send order.
                let mut alive = BTreeSet::new();
                for (id, (op, name)) in &sent {
                    assert_eq!(replies[id]["ok"], true, "{op} {name}: {}", replies[id]);
                    if *op == "create" {
                        alive.insert(name.clone());
                    } else {
                        alive.remove(name);
                    }
                }
                alive
            })
        })
        .collect();
    let mut expected = BTreeSet::new();
    for w in workers {
        expected.extend(w.join().expect("client thread"));
    }
    let mut c = sb.client();
    let listed: BTreeSet<String> = c.ok(json!({"op":"list"}))["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, expected);
    let files: BTreeSet<String> = sb.netns_files().into_iter().collect();
    assert_eq!(files, expected);
    assert_eq!(sb.set_elems("ns_ifaces").len(), expected.len());
}
