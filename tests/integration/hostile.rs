//! Issue 5 (part): hostile input, many clients, socket security, shutdown.

use crate::harness::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn raw_line(sb: &Sandbox, bytes: &[u8]) -> Value {
    let mut c = sb.client();
    c.send_raw(bytes);
    c.recv().expect("a response")
}

#[test]
fn hostile_lines_get_their_code_and_change_nothing() {
    let sb = Sandbox::new();
    let mut c = sb.client();
    c.ok(json!({"op":"create","name":"live","subnet":"198.18.8.0/30"}));
    let before = sb.snapshot();
    let deep = format!("{}1{}\n", "[".repeat(100_000 / 2), "]".repeat(100_000 / 2));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"\xff\xfe\xfd\n".to_vec(), "bad_request"),
        (
            b"{\"op\":\"create\",\"name\":\"\xc3\x28\"}\n".to_vec(),
            "bad_request",
        ),
        (b"null\n".to_vec(), "bad_request"),
        (b"42\n".to_vec(), "bad_request"),
        (b"\"create\"\n".to_vec(), "bad_request"),
        (
            format!("{}1{}\n", "[".repeat(200), "]".repeat(200)).into_bytes(),
            "bad_request",
        ),
        (
            format!("{}\n", "{\"a\":".repeat(1000)).into_bytes(),
            "bad_request",
        ),
        (
            br#"{"op":"create","name":["x"]}"#.iter().chain(b"\n").copied().collect(),
            "bad_request",
        ),
        (
            br#"{"op":"create","name":"x","mtu":"1500"}"#.iter().chain(b"\n").copied().collect(),
            "bad_request",
        ),
        (
            br#"{"op":"create","name":"x","mtu":-1}"#.iter().chain(b"\n").copied().collect(),
            "bad_request",
        ),
        (
            br#"{"op":"create","name":"x","subnet":12}"#.iter().chain(b"\n").copied().collect(),
            "bad_request",
        ),
        (
            br#"{"op":"create","name":"x","unknown":true}"#.iter().chain(b"\n").copied().collect(),
            "bad_request",
        ),
        (
            br#"{"op":"create","name":"a\u0000b"}"#.iter().chain(b"\n").copied().collect(),
            "invalid_name",
        ),
        (
            br#"{"op":"create","name":"../etc"}"#.iter().chain(b"\n").copied().collect(),
            "invalid_name",
        ),
        (
            br#"{"op":"create","name":"a/b"}"#.iter().chain(b"\n").copied().collect(),
            "invalid_name",
        ),
        (
            br#"{"op":"create","name":" a"}"#.iter().chain(b"\n").copied().collect(),
            "invalid_name",
        ),
        (
            "{\"op\":\"create\",\"name\":\"\u{0430}\"}\n"
                .as_bytes()
                .to_vec(),
            "invalid_name",
        ), // Cyrillic a
        (
            "{\"op\":\"create\",\"name\":\"ａ\"}\n".as_bytes().to_vec(),
            "invalid_name",
        ), // fullwidth a
        (
            format!("{{\"op\":\"create\",\"name\":\"{}\"}}\n", "n".repeat(65)).into_bytes(),
            "invalid_name",
        ),
        (
            br#"{"op":"create","name":"x","subnet":"198.18.9.9/32"}"#
                .iter()
                .chain(b"\n")
                .copied()
                .collect(),
            "invalid_subnet",
        ),
        (
            br#"{"op":"create","name":"x","subnet":"198.18.0.0/16"}"#
                .iter()
                .chain(b"\n")
                .copied()
                .collect(),
            "invalid_subnet",
        ),
        (
            br#"{"op":"create","name":"x","subnet":"fe80::/64"}"#
                .iter()
                .chain(b"\n")
                .copied()
                .collect(),
            "invalid_subnet",
        ),
        (
            br#"{"op":"create","name":"x","subnet":"999.1.1.0/30"}"#
                .iter()
                .chain(b"\n")
                .copied()
                .collect(),
            "invalid_subnet",
        ),
        (
            br#"{"op":"create","name":"x","subnet":"198.18.8.0/31"}"#
                .iter()
                .chain(b"\n")
                .copied()
                .collect(),
            "subnet_in_use",
        ),
    ];
    for (line, code) in cases {
        let r = raw_line(&sb, &line);
        assert_eq!(r["ok"], false, "{:?}", String::from_utf8_lossy(&line));
        assert_eq!(
            r["error"]["code"],
            code,
            "{:?}: {r}",
            String::from_utf8_lossy(&line)
        );
        assert_eq!(
            sb.snapshot(),
            before,
            "{:?} changed the kernel",
            String::from_utf8_lossy(&line)
        );
    }
    // Very deep nesting within the size limit: refused, agent alive.
    if deep.len() < 64 * 1024 {
        assert_eq!(
            raw_line(&sb, deep.as_bytes())["error"]["code"],
            "bad_request"
        );
    }
    // 10 MB line: bad_request, connection closed, agent fine.
    let mut s = UnixStream::connect(&sb.socket).unwrap();
    let big = vec![b'a'; 10 << 20];
    let _ = s.write_all(&big); // the agent may close before reading it all
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.contains("bad_request"), "{out}");
    assert_eq!(
        sb.client().ok(json!({"op":"get","name":"live"}))["name"],
        "live"
    );
    assert_eq!(sb.snapshot(), before);
}

#[test]
fn create_and_delete_raced_from_two_connections() {
    let sb = Sandbox::new();
    for round in 0..10 {
        let name = format!("race{round}");
        let mut a = sb.client();
        let mut b = sb.client();
        a.send(json!({"op":"create","name":name}));
        b.send(json!({"op":"delete","name":name}));
        let ra = a.recv().unwrap();
        let rb = b.recv().unwrap();
        assert_eq!(ra["ok"], true, "{ra}");
        // Either the delete came first (not_found) or after (ok): the end state says which.
        let exists = sb.netns_files().contains(&name);
        match rb["ok"].as_bool() {
            Some(true) => assert!(!exists),
            _ => {
                assert_eq!(rb["error"]["code"], "not_found");
                assert!(exists);
            }
        }
    }
    // Delete while its create is still queued (same connection): sequential.
    let mut c = sb.client();
    let cr = c.send(json!({"op":"create","name":"q"}));
    let de = c.send(json!({"op":"delete","name":"q"}));
    let mut got = std::collections::HashMap::new();
    for _ in 0..2 {
        let r = c.recv().unwrap();
        got.insert(r["id"].as_u64().unwrap(), r);
    }
    assert_eq!(got[&cr]["ok"], true);
    assert_eq!(got[&de]["ok"], true);
    assert!(!sb.netns_files().contains(&"q".to_string()));
}

#[test]
fn many_clients_and_misbehaving_ones() {
    let sb = Sandbox::new();
    // Clients that connect and send nothing, send half a line, or never read.
    let _silent: Vec<UnixStream> = (0..20)
        .map(|_| UnixStream::connect(&sb.socket).unwrap())
        .collect();
    let mut half = UnixStream::connect(&sb.socket).unwrap();
    half.write_all(br#"{"op":"create","na"#).unwrap();
    let mut deaf = UnixStream::connect(&sb.socket).unwrap();
    let mut flood = Vec::new();
    for i in 0..20_000 {
        flood.extend_from_slice(format!("{{\"id\":{i},\"op\":\"ping\"}}\n").as_bytes());
    }
    deaf.set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = deaf.write_all(&flood);
    // 256 concurrent connections pipelining.
    let socket = sb.socket.clone();
    let workers: Vec<_> = (0..256)
        .map(|k| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&socket);
                let ids: Vec<u64> = (0..4)
                    .map(|i| {
                        if k % 16 == 0 && i == 0 {
                            c.send(json!({"op":"create","name":format!("many{k}")}))
                        } else {
                            c.send(json!({"op":"get","name":format!("many{k}")}))
                        }
                    })
                    .collect();
                let mut seen = vec![];
                for _ in &ids {
                    seen.push(c.recv().expect("response")["id"].as_u64().unwrap());
                }
                seen.sort();
                assert_eq!(seen, ids);
            })
        })
        .collect();
    for w in workers {
        w.join().expect("client");
    }
    assert_eq!(sb.client().ok(json!({"op":"status"}))["namespaces"], 16);
}

#[test]
fn socket_permissions_and_peer_credentials() {
    let mut sb = Sandbox::bare();
    sb.extra_args = vec!["--socket-mode".into(), "0666".into()];
    sb.start_agent();
    let mode = sb.sh(&format!("stat -c %a {}", sb.socket.display()));
    assert_eq!(mode.trim(), "666");
    // An unprivileged peer gets one error line and is counted.
    let as_nobody = |sb: &Sandbox| {
        let out = std::process::Command::new("setpriv")
            .args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                "socat",
                "-t2",
                "-",
                &format!("UNIX-CONNECT:{}", sb.socket.display()),
            ])
            .stdin(std::process::Stdio::piped())
            .output()
            .expect("setpriv");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = as_nobody(&sb);
    assert!(out.contains("forbidden"), "{out}");
    assert_eq!(
        sb.metric(r#"nsagent_socket_rejected_total{reason="peer_credentials"}"#),
        Some(1.0)
    );
    // Allowed by uid.
    sb.stop_agent();
    sb.extra_args = vec![
        "--socket-mode".into(),
        "0666".into(),
        "--allow-uid".into(),
        "65534".into(),
    ];
    sb.start_agent();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo '{{\"id\":1,\"op\":\"ping\"}}' | setpriv --reuid 65534 --regid 65534 --clear-groups socat -t2 - UNIX-CONNECT:{}",
            sb.socket.display()
        ))
        .output()
        .expect("setpriv");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"ok\":true"));
    // Default mode is 0660.
    sb.stop_agent();
    sb.extra_args = vec![];
    sb.start_agent();
    assert_eq!(
        sb.sh(&format!("stat -c %a {}", sb.socket.display())).trim(),
        "660"
    );
}

#[test]
fn a_second_agent_refuses_and_a_stale_socket_is_replaced() {
    let mut sb = Sandbox::new();
    let out = std::process::Command::new("nsenter")
        .args([
            "-t",
            &sb.pid.to_string(),
            "-m",
            "-n",
            "--",
            BIN,
            "run",
            "--metrics-addr",
            "off",
            "--socket",
        ])
        .arg(&sb.socket)
        .output()
        .expect("second agent");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already listening"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sb.client().ok(json!({"op":"ping"}))["version"].is_string());
    // kill -9 leaves the socket file behind; the next start replaces it.
    sb.kill_agent();
    assert!(sb.socket.exists());
    sb.start_agent();
    sb.client().ok(json!({"op":"ping"}));
}

#[test]
fn sigterm_answers_what_was_sent_and_keeps_namespaces() {
    let mut sb = Sandbox::new();
    let mut c = sb.client();
    for i in 0..30 {
        c.send(json!({"op":"create","name":format!("t{i}")}));
    }
    std::thread::sleep(Duration::from_millis(5));
    sb.stop_agent();
    let mut ok = 0;
    while let Some(r) = c.recv() {
        assert_eq!(r["ok"], true, "{r}");
        ok += 1;
    }
    assert_eq!(ok, 30, "every request sent before SIGTERM is answered");
    assert_eq!(sb.netns_files().len(), 30, "namespaces stay");
    assert!(!sb.socket.exists());
}

#[test]
fn cleanup_on_exit_removes_everything() {
    let mut sb = Sandbox::bare();
    let links0 = sb.host_links();
    sb.extra_args = vec!["--cleanup-on-exit".into()];
    sb.start_agent();
    let mut c = sb.client();
    for i in 0..10 {
        c.ok(json!({"op":"create","name":format!("c{i}")}));
    }
    drop(c);
    sb.stop_agent();
    assert!(sb.netns_files().is_empty());
    assert!(
        !sb.sh_status("nft list table inet nsagent").0,
        "table deleted"
    );
    sb.wait_until("veths gone", || sb.host_links() == links0);
}
