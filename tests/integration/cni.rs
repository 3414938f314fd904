//! Issue 15: `attach`/`detach` of namespaces the agent did not make, and the CNI plugin
//! (`nsagent-cni`) driven by CNI environment variables for each verb, as a runtime does.

use crate::harness::*;
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};

const PORT: u16 = 7401;

/// A namespace a "runtime" made: `ip netns add` (a file in /run/netns, like podman's).
fn runtime_netns(sb: &Sandbox, name: &str) -> String {
    sb.sh(&format!("ip netns add {name}"));
    format!("/run/netns/{name}")
}

#[test]
fn attach_wires_a_foreign_namespace_and_detach_leaves_it_to_its_owner() {
    let mut sb = Sandbox::new();
    sb.start_echo_peer(PORT);
    let path = runtime_netns(&sb, "rt1");
    let links0 = sb.host_links().len();
    let mut c = sb.client();
    let a = c.ok(
        json!({"op":"attach","name":"c1","netns_path":path,"ns_ifname":"eth1",
                        "labels":{"team":"ci"}}),
    );
    assert_eq!(a["attached"], json!(true));
    assert_eq!(a["netns_path"], json!(path));
    let addr = a["address"].as_str().unwrap().to_string();
    assert!(sb.sh("ip -n rt1 -o addr show dev eth1").contains(&addr));
    assert_eq!(
        sb.peer_seen_from("rt1", PORT).as_deref(),
        Some(UPLINK_ADDR),
        "NAT"
    );
    assert_eq!(sb.listed()["c1"]["attached"], json!(true));
    assert!(
        !sb.netns_files().contains(&"c1".to_string()),
        "no netns file of ours"
    );
    assert_eq!(c.ok(json!({"op":"check"}))["clean"], json!(true));

    // Hostile paths: refused, nothing changes.
    let links = sb.host_links().len();
    for bad in [
        "/etc/hostname",
        "/proc/self/ns/net", // the agent's own
        "/proc/self/ns/mnt",
        "/run/netns/none",
        "relative/path",
    ] {
        c.err(
            json!({"op":"attach","name":"x","netns_path":bad}),
            "bad_request",
        );
    }
    c.err(
        json!({"op":"attach","name":"x","netns_path":path,"bogus":1}),
        "bad_request",
    );
    // A second attachment to the same namespace: its index 2 is taken (one per namespace).
    c.err(
        json!({"op":"attach","name":"x","netns_path":path,"ns_ifname":"eth2"}),
        "bad_request",
    );
    assert_eq!(sb.host_links().len(), links);
    assert!(!sb.listed().contains_key("x"));
    c.err(json!({"op":"detach","name":"nothere"}), "not_found");

    // kill -9 and start: adopted as an attachment.
    sb.kill_agent();
    sb.start_agent();
    let listed = sb.listed();
    assert_eq!(listed["c1"]["attached"], json!(true));
    assert_eq!(listed["c1"]["labels"], json!({"team":"ci"}));
    assert_eq!(listed["c1"]["netns_path"], json!(path));

    // Detach: the veth pair goes, the runtime's namespace stays, and the connections of its
    // address are forgotten (after the answer, before the address can be reused).
    let tracked = |sb: &Sandbox| {
        let (_, out) = sb.sh_status(&format!("conntrack -L -s {addr} 2>/dev/null"));
        out.lines().filter(|l| l.contains(&addr)).count()
    };
    assert!(tracked(&sb) > 0, "the NAT check left an entry");
    let mut c = sb.client();
    c.ok(json!({"op":"detach","name":"c1"}));
    sb.wait_until("the veth pair to go", || sb.host_links().len() == links0);
    assert_eq!(
        tracked(&sb),
        0,
        "nothing of {addr} is left once its veth is gone"
    );
    assert!(sb.sh("ip netns list").contains("rt1"));
    assert!(!sb.sh("ip -n rt1 -o link show").contains("eth1"));

    // A created namespace is not detached; an attached one may be deleted (= detach).
    c.ok(json!({"op":"create","name":"own"}));
    c.err(json!({"op":"detach","name":"own"}), "bad_request");
    c.ok(json!({"op":"attach","name":"c2","netns_path":path}));
    c.ok(json!({"op":"delete","name":"c2"}));
    sb.wait_until("c2's veth to go", || sb.host_links().len() == links0 + 1);
    assert!(sb.sh("ip netns list").contains("rt1"));

    // The runtime destroys the namespace while the agent is down: nothing is left after.
    c.ok(json!({"op":"attach","name":"c3","netns_path":path}));
    drop(c);
    sb.kill_agent();
    sb.sh("ip netns del rt1");
    sb.wait_until("rt1's veth to die", || sb.host_links().len() == links0 + 1);
    sb.start_agent();
    assert!(!sb.listed().contains_key("c3"));
    assert!(!sb
        .sh("ls /run/.netns-nsagent-attached /run/.netns-nsagent-labels")
        .contains("c3"));
}

struct Cni {
    code: i32,
    out: Value,
}

/// Runs the plugin once, as a runtime does: CNI_* variables, the configuration on stdin.
fn cni(sb: &Sandbox, command: &str, vars: &[(&str, &str)], stdin: &str) -> Cni {
    let mut cmd = Command::new("nsenter");
    cmd.args(["-t", &sb.pid.to_string(), "-m", "-n", "--"])
        .arg(CNI_BIN)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if !command.is_empty() {
        cmd.env("CNI_COMMAND", command);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run the plugin");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("plugin output");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Cni {
        code: out.status.code().unwrap_or(-1),
        out: if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        },
    }
}

#[test]
fn the_cni_plugin_implements_every_verb_of_the_spec() {
    let sb = Sandbox::new();
    sb.start_echo_peer(PORT);
    let netns = runtime_netns(&sb, "ctr1");
    let conf = json!({"cniVersion":"1.0.0","name":"testnet","type":"nsagent-cni",
                      "socket": sb.socket, "ipMasq": true,
                      "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}})
    .to_string();
    let vars = |id: &'static str, ns: &str| {
        vec![
            ("CNI_CONTAINERID", id.to_string()),
            ("CNI_NETNS", ns.to_string()),
            ("CNI_IFNAME", "eth0".to_string()),
            ("CNI_PATH", "/opt/cni/bin".to_string()),
        ]
    };
    let run = |cmd: &str, v: &[(&str, String)], stdin: &str| {
        let v: Vec<(&str, &str)> = v.iter().map(|(k, x)| (*k, x.as_str())).collect();
        cni(&sb, cmd, &v, stdin)
    };

    let v = run("VERSION", &[], &conf);
    assert_eq!(v.code, 0);
    assert!(v.out["supportedVersions"]
        .as_array()
        .unwrap()
        .contains(&json!("1.0.0")));

    let add = run("ADD", &vars("ctr-a", &netns), &conf);
    assert_eq!(add.code, 0, "{}", add.out);
    let r = &add.out;
    assert_eq!(r["cniVersion"], json!("1.0.0"));
    assert_eq!(r["interfaces"][1]["name"], json!("eth0"));
    assert_eq!(r["interfaces"][1]["sandbox"], json!(netns));
    for i in 0..2 {
        let mac = r["interfaces"][i]["mac"].as_str().unwrap_or("");
        assert_eq!(mac.len(), 17, "{r}");
    }
    let address = r["ips"][0]["address"].as_str().unwrap().to_string();
    assert!(address.ends_with("/30"), "{r}");
    assert_eq!(r["ips"][0]["interface"], json!(1));
    assert_eq!(r["routes"][0]["dst"], json!("0.0.0.0/0"));
    let ip = address.split('/').next().unwrap();
    assert!(sb.sh("ip -n ctr1 -o addr show dev eth0").contains(ip));
    assert_eq!(
        sb.peer_seen_from("ctr1", PORT).as_deref(),
        Some(UPLINK_ADDR)
    );
    let listed = sb.listed();
    let (name, ns) = listed.iter().next().expect("the attachment");
    assert!(name.starts_with("cni-"));
    assert_eq!(ns["ports"][0]["host_port"], json!(8080), "portMappings");
    assert_eq!(ns["labels"]["cni.dev/container-id"], json!("ctr-a"));

    // A retried ADD is the same attachment; CHECK passes, then fails when broken.
    let again = run("ADD", &vars("ctr-a", &netns), &conf);
    assert_eq!((again.code, &again.out["ips"]), (0, &r["ips"]));
    assert_eq!(run("CHECK", &vars("ctr-a", &netns), &conf).code, 0);
    sb.sh("ip -n ctr1 route del default");
    let broken = run("CHECK", &vars("ctr-a", &netns), &conf);
    assert_eq!(
        (broken.code, &broken.out["code"]),
        (1, &json!(101)),
        "{}",
        broken.out
    );
    assert_eq!(
        run("CHECK", &vars("ctr-x", &netns), &conf).out["code"],
        json!(3)
    );

    // DEL, twice: both succeed; the namespace stays.
    assert_eq!(run("DEL", &vars("ctr-a", &netns), &conf).code, 0);
    assert_eq!(run("DEL", &vars("ctr-a", &netns), &conf).code, 0);
    assert!(sb.listed().is_empty());
    assert!(sb.sh("ip netns list").contains("ctr1"));

    // GC keeps the valid attachments of this network only (no published port this time: two
    // containers cannot both have host port 8080).
    let other = runtime_netns(&sb, "ctr2");
    let mut plain: Value = serde_json::from_str(&conf).unwrap();
    plain.as_object_mut().unwrap().remove("runtimeConfig");
    let conf = plain.to_string();
    let a = run("ADD", &vars("ctr-a", &netns), &conf);
    assert_eq!(a.code, 0, "{}", a.out);
    let b = run("ADD", &vars("ctr-b", &other), &conf);
    assert_eq!(b.code, 0, "{}", b.out);
    let mut gc: Value = serde_json::from_str(&conf).unwrap();
    gc["cni.dev/valid-attachments"] = json!([{"containerID":"ctr-a","ifname":"eth0"}]);
    assert_eq!(run("GC", &[], &gc.to_string()).code, 0);
    let left: Vec<Value> = sb.listed().into_values().collect();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["labels"]["cni.dev/container-id"], json!("ctr-a"));

    // STATUS, and the errors of the spec.
    assert_eq!(run("STATUS", &[], &conf).code, 0);
    let mut gone: Value = serde_json::from_str(&conf).unwrap();
    gone["socket"] = json!("/run/none.sock");
    let st = run("STATUS", &[], &gone.to_string());
    assert_eq!((st.code, &st.out["code"]), (1, &json!(50)));
    let add = run("ADD", &vars("ctr-c", &other), &gone.to_string());
    assert_eq!(
        add.out["code"],
        json!(11),
        "agent unreachable: try again later"
    );
    assert_eq!(
        run("ADD", &vars("ctr-c", &other), "{not json").out["code"],
        json!(6)
    );
    assert_eq!(run("", &vars("ctr-c", &other), &conf).out["code"], json!(4));
    let v9 = json!({"cniVersion":"9.9.9","name":"testnet","type":"nsagent-cni"}).to_string();
    assert_eq!(
        run("ADD", &vars("ctr-c", &other), &v9).out["code"],
        json!(1)
    );
    let no_netns = run("ADD", &vars("ctr-c", ""), &conf);
    assert_eq!(no_netns.out["code"], json!(4), "{}", no_netns.out);
    let mut ipam: Value = serde_json::from_str(&conf).unwrap();
    ipam["ipam"] = json!({"type":"host-local","subnet":"10.9.0.0/24"});
    let ipam = run("ADD", &vars("ctr-c", &other), &ipam.to_string());
    assert_eq!(ipam.out["code"], json!(7), "{}", ipam.out);
    let hostile = run("ADD", &vars("ctr-c", "/etc/hostname"), &conf);
    assert_eq!(hostile.out["code"], json!(100), "{}", hostile.out);
    assert_eq!(sb.listed().len(), 1, "nothing was added by the failures");
}
