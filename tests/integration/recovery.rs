//! Issue 5 (part): the kernel is the source of truth across restarts and external changes.

use crate::harness::*;
use serde_json::json;
use std::collections::BTreeSet;

#[test]
fn restart_adopts_whole_namespaces_without_recreating_them() {
    let mut sb = Sandbox::new();
    let mut c = sb.client();
    for i in 0..20 {
        c.ok(json!({"op":"create","name":format!("r{i}"),"nat": i % 3 != 0}));
    }
    c.ok(json!({"op":"create","name":"fixed","subnet":"198.18.6.0/31","mtu":1400,"ns_ifname":"veth9"}));
    let before = sb.listed();
    let links_before = sb.json("ip -j link show");
    let table_before = sb.table_shape();
    drop(c);
    sb.kill_agent();
    sb.start_agent();
    assert_eq!(sb.listed(), before, "same namespaces, same choices");
    // Not re-created: the very same links (ifindex and all).
    assert_eq!(sb.json("ip -j link show"), links_before);
    assert_eq!(sb.table_shape(), table_before);
    assert_eq!(
        sb.metric(r#"nsagent_recovery_total{action="adopted"}"#),
        Some(21.0)
    );
    // Works at once: delete an adopted one, create new ones (no subnet collisions).
    let mut c = sb.client();
    c.ok(json!({"op":"delete","name":"r1"}));
    let fresh = c.ok(json!({"op":"create","name":"new"}));
    // (r1's subnet may be handed out again once the kernel has removed r1's link.)
    assert!(!before
        .iter()
        .any(|(name, n)| name != "r1" && n["subnet"] == fresh["subnet"]));
    c.err(json!({"op":"create","name":"r2"}), "exists");
    c.err(
        json!({"op":"create","name":"x","subnet":"198.18.6.0/30"}),
        "subnet_in_use",
    );
    // An adopted namespace still reaches upstream through NAT.
    sb.start_echo_peer(7300);
    assert_eq!(sb.peer_seen_from("r4", 7300).as_deref(), Some(UPLINK_ADDR));
}

#[test]
fn half_built_state_is_removed_and_foreign_state_kept() {
    let mut sb = Sandbox::new();
    let mut c = sb.client();
    c.ok(json!({"op":"create","name":"keep"}));
    drop(c);
    sb.stop_agent();
    // A marked veth without its namespace; a marked namespace without its veth; a namespace
    // that is somebody else's.
    sb.sh("ip link add nsvdead type veth peer name nsvdead-p && ip link set nsvdead alias nsagent:dead");
    sb.sh("ip netns add half && ip -n half link set lo alias nsagent:half");
    sb.sh("ip netns add foreign");
    sb.start_agent();
    assert_eq!(
        sb.listed().keys().cloned().collect::<Vec<_>>(),
        vec!["keep"]
    );
    sb.wait_until("half-built veth removed", || {
        !sb.host_links().contains(&"nsvdead".to_string())
    });
    assert_eq!(sb.netns_files(), vec!["foreign", "keep"]);
    // The veth with no namespace file goes in the background, after start-up.
    sb.wait_until("both counted", || {
        sb.metric(r#"nsagent_recovery_total{action="removed"}"#) == Some(2.0)
    });
}

#[test]
fn external_deletions_are_noticed_and_cleaned_up() {
    let sb = Sandbox::new();
    let mut c = sb.client();
    let a = c.ok(json!({"op":"create","name":"by-link"}));
    c.ok(json!({"op":"create","name":"by-netns"}));
    c.ok(json!({"op":"create","name":"stays"}));
    let free0 = c.ok(json!({"op":"status"}))["pool"]["free"]
        .as_u64()
        .unwrap();
    // Someone deletes a host veth by hand, someone else a netns file.
    sb.sh(&format!(
        "ip link del {}",
        a["host_ifname"].as_str().unwrap()
    ));
    sb.sh("ip netns del by-netns");
    sb.wait_until("agent notices", || {
        let mut c = sb.client();
        c.call(json!({"op":"get","name":"by-link"}))["ok"] == false
            && c.call(json!({"op":"get","name":"by-netns"}))["ok"] == false
    });
    let mut c = sb.client();
    c.err(json!({"op":"get","name":"by-link"}), "not_found");
    c.err(json!({"op":"get","name":"by-netns"}), "not_found");
    // The rest of each is gone: netns file, veth, elements; the pool got the subnets back.
    assert_eq!(sb.netns_files(), vec!["stays"]);
    sb.wait_until("veths gone", || sb.host_links().len() == 1);
    assert_eq!(sb.set_elems("ns_ifaces").len(), 1);
    sb.wait_until("pool freed", || {
        sb.client().ok(json!({"op":"status"}))["pool"]["free"].as_u64() == Some(free0 + 2)
    });
    assert_eq!(
        sb.metric(r#"nsagent_recovery_total{action="external"}"#),
        Some(2.0)
    );
    // Both names can be created again.
    c.ok(json!({"op":"create","name":"by-link"}));
    c.ok(json!({"op":"create","name":"by-netns"}));
}

/// Under churn from several clients, `kill -9` the agent at random moments, restart it, and
/// check the host against what was acknowledged.
#[test]
fn kill_minus_nine_under_churn_loses_and_leaks_nothing() {
    let mut sb = Sandbox::new();
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    // name -> Some(true) acked alive, Some(false) acked deleted, None: unknown (in flight at a kill).
    let mut known: std::collections::BTreeMap<String, Option<bool>> = Default::default();
    for round in 0..20 {
        let socket = sb.socket.clone();
        let kill_after = std::time::Duration::from_millis(50 + rand(250));
        let clients: Vec<_> = (0..3)
            .map(|k| {
                let socket = socket.clone();
                std::thread::spawn(move || {
                    // Each client: pipelined creates and deletes of its own names; records what
                    // was sent and what was acknowledged before the connection died.
                    let mut acked = vec![];
                    let Ok(s) = std::os::unix::net::UnixStream::connect(&socket) else {
                        return (vec![], acked);
                    };
                    let mut sent = vec![];
                    let mut w = s.try_clone().expect("clone");
                    let mut r = std::io::BufReader::new(s);
                    use std::io::{BufRead, Write};
                    for i in 0..60 {
                        let name = format!("k{round}-{k}-{}", i / 2);
                        let op = if i % 2 == 0 { "create" } else { "delete" };
                        // Delete only every other created name.
                        if op == "delete" && (i / 2) % 2 == 0 {
                            continue;
                        }
                        let line =
                            format!("{}\n", json!({"id": sent.len(), "op": op, "name": name}));
                        if w.write_all(line.as_bytes()).is_err() {
                            break;
                        }
                        sent.push((op, name));
                    }
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match r.read_line(&mut line) {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                            break;
                        };
                        if let Some(id) = v["id"].as_u64() {
                            acked.push((id as usize, v["ok"] == true));
                        }
                        if acked.len() == sent.len() {
                            break;
                        }
                    }
                    (sent, acked)
                })
            })
            .collect();
        std::thread::sleep(kill_after);
        sb.kill_agent();
        for c in clients {
            let (sent, acked) = c.join().expect("client");
            let acked: std::collections::HashMap<usize, bool> = acked.into_iter().collect();
            for (id, (op, name)) in sent.iter().enumerate() {
                match (acked.get(&id), *op) {
                    (Some(true), "create") => {
                        known.insert(name.clone(), Some(true));
                    }
                    (Some(true), _) => {
                        known.insert(name.clone(), Some(false));
                    }
                    (Some(false), _) => {}
                    (None, _) => {
                        known.insert(name.clone(), None);
                    }
                }
            }
        }
        sb.start_agent();
        let listed = sb.listed();
        for (name, state) in &known {
            match state {
                Some(true) => assert!(
                    listed.contains_key(name),
                    "round {round}: acked create {name} lost"
                ),
                Some(false) => assert!(
                    !listed.contains_key(name),
                    "round {round}: acked delete {name} came back"
                ),
                None => {}
            }
        }
        // Nothing exists that the agent does not report, and the reverse.
        let names: BTreeSet<String> = listed.keys().cloned().collect();
        let files: BTreeSet<String> = sb.netns_files().into_iter().collect();
        assert_eq!(files, names, "round {round}: netns files vs. reported");
        let ifnames: BTreeSet<String> = listed
            .values()
            .map(|n| n["host_ifname"].as_str().unwrap().to_string())
            .collect();
        sb.wait_until("dying links gone", || {
            sb.host_links().into_iter().collect::<BTreeSet<_>>() == ifnames
        });
        let elems: BTreeSet<String> = sb.set_elems("ns_ifaces").into_iter().collect();
        assert_eq!(elems, ifnames, "round {round}: elements vs. reported");
        // The pool has no leaked addresses.
        sb.wait_until("pool settles", || {
            let st = sb.client().ok(json!({"op":"status"}));
            st["pool"]["free"].as_u64().unwrap() + names.len() as u64
                == st["pool"]["size"].as_u64().unwrap()
        });
        // Unknown outcomes are now known.
        for (name, state) in known.iter_mut() {
            if state.is_none() {
                *state = Some(names.contains(name));
            }
        }
    }
    // Survivors work: pick a few and check the data path.
    sb.start_echo_peer(7400);
    let alive: Vec<String> = sb.listed().keys().take(3).cloned().collect();
    for name in alive {
        assert_eq!(
            sb.peer_seen_from(&name, 7400).as_deref(),
            Some(UPLINK_ADDR),
            "{name}"
        );
    }
}

#[test]
fn a_restart_with_a_thousand_namespaces_adopts_them_all() {
    let mut sb = Sandbox::new();
    let mut c = sb.client();
    for i in 0..1000 {
        c.send(json!({"op":"create","name":format!("t{i}"),"nat": i % 2 == 0}));
    }
    for _ in 0..1000 {
        let r = c.recv().expect("response");
        assert_eq!(r["ok"], true, "{r}");
    }
    let before = sb.listed();
    let links_before = sb.json("ip -j link show");
    drop(c);
    sb.kill_agent();
    sb.start_agent();
    assert_eq!(
        sb.metric(r#"nsagent_recovery_total{action="adopted"}"#),
        Some(1000.0)
    );
    assert_eq!(sb.listed(), before);
    assert_eq!(
        sb.json("ip -j link show"),
        links_before,
        "nothing re-created"
    );
    assert_eq!(sb.set_elems("ns_ifaces").len(), 1000);
    assert_eq!(sb.set_elems("nat_saddrs").len(), 500);
    // Creates and deletes work at once.
    let mut c = sb.client();
    c.ok(json!({"op":"delete","name":"t7"}));
    c.ok(json!({"op":"create","name":"after"}));
    assert_eq!(c.ok(json!({"op":"status"}))["namespaces"], 1000);
}

/// Deleted namespaces are held so that a burst of deletes dies in one kernel batch
/// (docs/kernel.md#deleting-in-one-kernel-batch). Whatever happens next — a pause, the same
/// name created again, SIGTERM, `kill -9` — they are handed to the kernel, and nothing held
/// stays mounted.
#[test]
fn deleted_namespaces_are_released_whatever_happens() {
    let mut sb = Sandbox::new();
    // Mounts below the graveyard (generations and the namespaces they hold), and the graveyard.
    let mounts = |sb: &Sandbox| {
        let out = sb.sh("cut -d' ' -f5 /proc/self/mountinfo");
        let below = out
            .lines()
            .filter(|m| m.starts_with("/run/.netns-nsagent-dying/"))
            .count();
        let base = out
            .lines()
            .filter(|m| *m == "/run/.netns-nsagent-dying")
            .count();
        (below, base)
    };
    let mut c = sb.client();
    for i in 0..40 {
        c.send(json!({"op":"create","name":format!("g{i}")}));
    }
    for i in 0..40 {
        c.send(json!({"op":"delete","name":format!("g{i}")}));
    }
    for _ in 0..80 {
        let r = c.recv().expect("response");
        assert_eq!(r["ok"], true, "{r}");
    }
    // Acknowledged deletes are gone for everyone at once; the kernel gets them after a pause.
    assert!(sb.netns_files().is_empty());
    c.err(json!({"op":"get","name":"g3"}), "not_found");
    sb.wait_until("a pause releases them", || {
        sb.host_links().is_empty() && mounts(&sb) == (0, 1)
    });
    // A name deleted and created again at once.
    c.ok(json!({"op":"create","name":"again"}));
    c.ok(json!({"op":"delete","name":"again"}));
    let again = c.ok(json!({"op":"create","name":"again"}));
    assert_eq!(sb.netns_files(), vec!["again"]);
    // Deleted just before a `kill -9`: the next start releases them.
    for i in 0..10 {
        c.ok(json!({"op":"create","name":format!("k{i}")}));
    }
    for i in 0..10 {
        c.send(json!({"op":"delete","name":format!("k{i}")}));
    }
    for _ in 0..10 {
        assert_eq!(c.recv().expect("response")["ok"], true);
    }
    drop(c);
    sb.kill_agent();
    sb.start_agent();
    let only_again = vec![again["host_ifname"].as_str().unwrap().to_string()];
    sb.wait_until("released after kill -9", || {
        sb.host_links() == only_again && mounts(&sb) == (0, 1)
    });
    assert_eq!(
        sb.listed().keys().cloned().collect::<Vec<_>>(),
        vec!["again"]
    );
    // Deleted just before SIGTERM: released at exit.
    sb.client().ok(json!({"op":"delete","name":"again"}));
    sb.stop_agent();
    assert_eq!(mounts(&sb), (0, 1));
    sb.wait_until("released at exit", || sb.host_links().is_empty());
}

/// A deleted namespace that a process inside keeps alive keeps its veth. After a restart no
/// netns file leads to that veth: start-up's background link dump finds it and removes it
/// (docs/kernel.md#the-host-veth-seen-from-inside).
#[test]
fn a_veth_no_namespace_file_leads_to_is_removed_after_a_restart() {
    let mut sb = Sandbox::new();
    let mut c = sb.client();
    let held = c.ok(json!({"op":"create","name":"held"}));
    c.ok(json!({"op":"create","name":"stays"}));
    sb.sh("ip netns exec held sleep 1000 >/dev/null 2>&1 & echo $! > /run/held.pid");
    // The process must be inside before the file goes, or nothing holds the namespace.
    sb.wait_until("the process inside", || {
        !sb.sh("ip netns pids held").trim().is_empty()
    });
    c.ok(json!({"op":"delete","name":"held"}));
    let veth = held["host_ifname"].as_str().unwrap().to_string();
    // Give the agent time to hand the namespace to the kernel: the veth stays all the same.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(sb.host_links().contains(&veth));
    drop(c);
    sb.kill_agent();
    sb.start_agent();
    assert_eq!(
        sb.listed().keys().cloned().collect::<Vec<_>>(),
        vec!["stays"]
    );
    sb.wait_until("the held namespace's veth removed", || {
        !sb.host_links().contains(&veth)
    });
    sb.wait_until("counted", || {
        sb.metric(r#"nsagent_recovery_total{action="removed"}"#) == Some(1.0)
    });
    // Its name and subnet can be used again.
    let again = sb.client().ok(json!({"op":"create","name":"held"}));
    assert_eq!(again["host_ifname"], veth);
    sb.sh("kill $(cat /run/held.pid)");
}
