//! Issue 14: labels (round trip, selectors, kept across restarts and `kill -9`) and the watch
//! stream (ordered events for every watcher; a watcher that does not read is cut off).

use crate::cli;
use crate::harness::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn names(v: &Value) -> Vec<String> {
    v["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .map(|n| n["name"].as_str().unwrap_or("").to_string())
        .collect()
}

fn labels_of(sb: &Sandbox) -> BTreeMap<String, Value> {
    sb.listed()
        .into_iter()
        .map(|(k, v)| (k, v["labels"].clone()))
        .collect()
}

#[test]
fn labels_round_trip_select_and_survive_restarts() {
    let mut sb = Sandbox::new();
    let mut c = sb.client();
    let a = c.ok(json!({"op":"create","name":"a","labels":{"team":"ci","job":"42"}}));
    assert_eq!(a["labels"], json!({"job":"42","team":"ci"}));
    c.ok(json!({"op":"create","name":"b","labels":{"team":"ci","job":"43"}}));
    let plain = c.ok(json!({"op":"create","name":"c"}));
    assert_eq!(plain["labels"], json!({}), "no labels: an empty object");
    assert_eq!(c.ok(json!({"op":"get","name":"a"}))["labels"], a["labels"]);

    let sel = |c: &mut Client, s: Value| names(&c.ok(json!({"op":"list","selector":s})));
    assert_eq!(sel(&mut c, json!({"team":"ci"})), ["a", "b"]);
    assert_eq!(sel(&mut c, json!({"team":"ci","job":"43"})), ["b"]);
    assert_eq!(sel(&mut c, json!({"team":"cd"})), Vec::<String>::new());
    assert_eq!(sel(&mut c, json!({})), ["a", "b", "c"]);

    // Bad labels and selectors change nothing.
    for bad in [
        json!({"-x":"1"}),
        json!({"a b":"1"}),
        json!({"k": "v".repeat(256)}),
        json!({"k": 1}),
        Value::Object((0..33).map(|i| (format!("k{i}"), json!(""))).collect()),
    ] {
        c.err(
            json!({"op":"create","name":"d","labels":bad.clone()}),
            "bad_request",
        );
        c.err(json!({"op":"list","selector":bad.clone()}), "bad_request");
        c.err(
            json!({"op":"update","name":"a","labels":bad}),
            "bad_request",
        );
    }
    assert!(!sb.netns_files().contains(&"d".to_string()));
    assert_eq!(c.ok(json!({"op":"get","name":"a"}))["labels"], a["labels"]);

    // update replaces the set; null removes it.
    let u = c.ok(json!({"op":"update","name":"b","labels":{"team":"cd"}}));
    assert_eq!(u["labels"], json!({"team":"cd"}));
    assert_eq!(sel(&mut c, json!({"team":"ci"})), ["a"]);
    c.ok(json!({"op":"update","name":"c","labels":{"x":"y"}}));
    c.ok(json!({"op":"update","name":"c","labels":null}));
    assert_eq!(c.ok(json!({"op":"get","name":"c"}))["labels"], json!({}));

    // SIGTERM and start, then kill -9 and start: the same labels.
    let before = labels_of(&sb);
    drop(c);
    sb.stop_agent();
    sb.start_agent();
    assert_eq!(labels_of(&sb), before, "after a restart");
    sb.kill_agent();
    sb.start_agent();
    assert_eq!(labels_of(&sb), before, "after kill -9");
    let mut c = sb.client();
    assert_eq!(sel(&mut c, json!({"team":"ci"})), ["a"]);

    // A deleted namespace's labels go with it: the name comes back bare.
    c.ok(json!({"op":"delete","name":"a"}));
    sb.wait_until("a's name to be free", || {
        sb.client().call(json!({"op":"create","name":"a"}))["ok"] == json!(true)
    });
    assert_eq!(c.ok(json!({"op":"get","name":"a"}))["labels"], json!({}));

    // The CLI: -l on add, set, list and del.
    cli::ok(&sb, &["add", "web", "-l", "team=qa", "-l", "job=7"]);
    cli::ok(&sb, &["add", "web2", "-l", "team=qa"]);
    let listed = cli::ok(&sb, &["list", "-l", "team=qa", "--json"]);
    let listed: Value = serde_json::from_str(&listed.stdout).expect("json");
    assert_eq!(names(&listed), ["web", "web2"]);
    let shown = cli::ok(&sb, &["show", "web"]);
    assert!(shown.stdout.contains("job=7,team=qa"), "{}", shown.stdout);
    cli::ok(&sb, &["set", "web2", "-l", "team=qa", "-l", "tier=2"]);
    assert_eq!(sel(&mut c, json!({"tier":"2"})), ["web2"]);
    cli::ok(&sb, &["del", "-l", "job=7"]);
    assert_eq!(sel(&mut c, json!({"team":"qa"})), ["web2"]);
    let bad = cli::nsagent(&sb, &["add", "x", "-l", "=bad"]);
    assert!(
        bad.code == 2 && bad.stderr.contains("label"),
        "{}",
        bad.stderr
    );
    assert!(!sb.netns_files().contains(&"x".to_string()));
}

/// Reads event lines until `n` events have come (answers to requests are skipped).
fn events(c: &mut Client, n: usize) -> Vec<(String, String)> {
    let mut out = vec![];
    while out.len() < n {
        let v = c.recv().expect("an event");
        if let Some(e) = v["event"].as_str() {
            assert!(v["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
            let name = v["namespace"]["name"].as_str().unwrap_or("").to_string();
            out.push((e.to_string(), name));
        }
    }
    out
}

#[test]
fn two_watchers_see_the_same_ordered_events_and_a_selector_filters() {
    let sb = Sandbox::new();
    let mut w1 = sb.client();
    let mut w2 = sb.client();
    let mut picky = sb.client();
    assert_eq!(w1.ok(json!({"op":"watch"})), json!({"watching":true}));
    assert_eq!(w2.ok(json!({"op":"watch"})), json!({"watching":true}));
    picky.ok(json!({"op":"watch","selector":{"pick":"yes"}}));
    w1.err(json!({"op":"watch"}), "bad_request");

    // 100 creates, then 100 deletes, pipelined from two other clients.
    let mut writers = vec![sb.client(), sb.client()];
    for i in 0..100 {
        let labels = if i % 10 == 0 {
            json!({"pick":"yes"})
        } else {
            json!({})
        };
        writers[i % 2].send(json!({"op":"create","name":format!("e{i}"),"labels":labels}));
    }
    for w in &mut writers {
        for _ in 0..50 {
            assert_eq!(w.recv().expect("answer")["ok"], json!(true));
        }
    }
    for i in 0..100 {
        writers[i % 2].send(json!({"op":"delete","name":format!("e{i}")}));
    }
    for w in &mut writers {
        for _ in 0..50 {
            assert_eq!(w.recv().expect("answer")["ok"], json!(true));
        }
    }
    let seen1 = events(&mut w1, 200);
    let seen2 = events(&mut w2, 200);
    assert_eq!(
        seen1, seen2,
        "both watchers, the same events in the same order"
    );
    for i in 0..100 {
        let name = format!("e{i}");
        let c = seen1
            .iter()
            .position(|e| *e == ("created".to_string(), name.clone()));
        let d = seen1
            .iter()
            .position(|e| *e == ("deleted".to_string(), name.clone()));
        assert!(c.is_some() && d.is_some() && c < d, "{name}: {c:?} {d:?}");
    }
    // Only the selected ones, both ways.
    let picked = events(&mut picky, 20);
    assert!(picked
        .iter()
        .all(|(_, n)| n.trim_start_matches('e').parse::<u32>().unwrap() % 10 == 0));

    // Updates and removals from outside are events too; other requests are still answered.
    let mut c = sb.client();
    c.ok(json!({"op":"create","name":"x"}));
    c.ok(json!({"op":"update","name":"x","nat":false}));
    // A request on the watching connection: its answer comes among the events.
    let id = w1.send(json!({"op":"ping"}));
    sb.sh("ip netns del x");
    let mut seen = vec![];
    let mut answered = false;
    while seen.len() < 3 || !answered {
        let v = w1.recv().expect("a line");
        match v["event"].as_str() {
            Some(e) => seen.push((
                e.to_string(),
                v["namespace"]["name"].as_str().unwrap_or("").to_string(),
            )),
            None => {
                assert_eq!(
                    (v["id"].clone(), v["ok"].clone()),
                    (json!(id), json!(true)),
                    "{v}"
                );
                answered = true;
            }
        }
    }
    assert_eq!(
        seen,
        [
            ("created".to_string(), "x".to_string()),
            ("updated".to_string(), "x".to_string()),
            ("removed_externally".to_string(), "x".to_string())
        ]
    );
}

#[test]
fn a_watcher_that_never_reads_is_cut_off_and_nobody_waits_for_it() {
    let sb = Sandbox::new();
    let mut stuck = sb.client();
    stuck.ok(json!({"op":"watch"}));
    // More events than its buffer, the socket and the writer queue hold: label updates are
    // the cheapest events (a file each), and long ones fill the socket sooner.
    let mut c = sb.client();
    c.ok(json!({"op":"create","name":"u"}));
    let n = 6000;
    let long = "v".repeat(255);
    for chunk in 0..n / 500 {
        // In chunks, reading the answers: a client that only writes stalls itself.
        for i in 0..500 {
            let labels = json!({"i": (chunk * 500 + i).to_string(), "pad": long});
            c.send(json!({"op":"update","name":"u","labels": labels}));
        }
        for _ in 0..500 {
            let r = c.recv().expect("answer");
            assert_eq!(r["ok"], json!(true), "{r}");
        }
    }
    // Every update was answered with the watcher stuck; now it reads: what was queued, then
    // `overflow`, then the end of the connection.
    let mut last = Value::Null;
    let mut count = 0;
    while let Some(v) = stuck.recv() {
        last = v;
        count += 1;
    }
    assert_eq!(last, json!({"event":"overflow"}), "after {count} lines");
    assert!(count < n, "{count}");
    assert!(sb.client().ok(json!({"op":"status"}))["namespaces"] == json!(1));
}

#[test]
fn the_cli_prints_events_as_they_happen() {
    use std::io::BufRead;
    let sb = Sandbox::new();
    let mut child = std::process::Command::new("nsenter")
        .args([
            "-t",
            &sb.pid.to_string(),
            "-m",
            "-n",
            "--",
            BIN,
            "watch",
            "-l",
            "team=ci",
        ])
        .env("NSAGENT_SOCKET", &sb.socket)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("nsagent watch");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The watch is registered once its answer came: wait for it through creates it must see.
    let mut c = sb.client();
    c.ok(json!({"op":"create","name":"other"}));
    let mut seen = String::new();
    for i in 0..50 {
        c.ok(json!({"op":"create","name":format!("w{i}"),"labels":{"team":"ci"}}));
        if let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
            seen = l;
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.contains(" created w") && seen.contains("team=ci"),
        "{seen:?}"
    );
    assert!(!seen.contains("other"));
}
