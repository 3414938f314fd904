//! Issue 4: the metrics endpoint, checked with promtool and a real Prometheus server.

use crate::harness::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[test]
fn endpoints_and_exposition() {
    let sb = Sandbox::new();
    assert_eq!(sb.http("GET", 9477, "/healthz").0, 200);
    assert_eq!(sb.http("GET", 9477, "/readyz").0, 200);
    assert_eq!(sb.http("GET", 9477, "/nope").0, 404);
    assert_eq!(sb.http("POST", 9477, "/metrics").0, 405);
    let (status, body) = sb.http("GET", 9477, "/metrics");
    assert_eq!(status, 200);
    // promtool (from Debian's prometheus package) must accept the exposition.
    let file = sb.dir.join("metrics.txt");
    std::fs::write(&file, &body).expect("write");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", file.display()))
        .output()
        .expect("promtool (apt-get install prometheus)");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "nsagent_build_info{",
        "nsagent_queue_capacity 4096",
        "nsagent_nft_rules 18",
        "nsagent_pool_addresses 65536",
        "process_resident_memory_bytes",
    ] {
        assert!(body.contains(name), "missing {name}");
    }
}

#[test]
fn counters_match_what_the_protocol_acknowledged() {
    let sb = Sandbox::new();
    let mut c = sb.client();
    for i in 0..7 {
        c.ok(json!({"op":"create","name":format!("m{i}")}));
    }
    for i in 0..3 {
        c.ok(json!({"op":"delete","name":format!("m{i}")}));
    }
    c.err(json!({"op":"delete","name":"nobody"}), "not_found");
    c.err(json!({"op":"create","name":"a/b"}), "invalid_name");
    c.send_raw(b"not json\n");
    assert_eq!(c.recv().unwrap()["error"]["code"], "bad_request");
    // Responses are written before the counters move by a hair; scrape until they settle.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let get = |s: &str| sb.metric(s).unwrap_or(-1.0);
        let ok = get(r#"nsagent_commands_total{op="create",outcome="ok"}"#) == 7.0
            && get(r#"nsagent_commands_total{op="delete",outcome="ok"}"#) == 3.0
            && get(r#"nsagent_commands_total{op="delete",outcome="not_found"}"#) == 1.0
            && get(r#"nsagent_commands_total{op="create",outcome="invalid_name"}"#) == 1.0
            && get(r#"nsagent_commands_total{op="invalid",outcome="bad_request"}"#) == 1.0
            && get("nsagent_namespaces") == 4.0
            // 4 namespaces with nat: 2 elements each, plus the uplink.
            && get("nsagent_nft_elements") == 9.0
            && get("nsagent_socket_connections") == 1.0;
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never matched:\n{}",
            sb.http("GET", 9477, "/metrics").1
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Reading does not reset anything.
    assert_eq!(
        sb.metric(r#"nsagent_commands_total{op="create",outcome="ok"}"#),
        Some(7.0)
    );
    assert!(sb.metric("nsagent_batch_size_count").unwrap_or(0.0) >= 1.0);
    assert!(
        sb.metric(r#"nsagent_nft_transactions_total{outcome="ok"}"#)
            .unwrap_or(0.0)
            >= 10.0
    );
}

#[test]
fn a_real_prometheus_scrapes_the_agent() {
    let sb = Sandbox::new();
    let mut c = sb.client();
    for i in 0..5 {
        c.ok(json!({"op":"create","name":format!("p{i}")}));
    }
    c.ok(json!({"op":"delete","name":"p0"}));
    let conf = sb.dir.join("prometheus.yml");
    std::fs::write(
        &conf,
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n\
         scrape_configs:\n  - job_name: nsagent\n    static_configs: [{targets: ['127.0.0.1:9477']}]\n",
    )
    .expect("config");
    let pidfile = sb.dir.join("prometheus.pid");
    sb.sh(&format!(
        "prometheus --config.file={} --storage.tsdb.path={} --web.listen-address=127.0.0.1:9090 >{} 2>&1 & echo $! > {}",
        conf.display(),
        sb.dir.join("tsdb").display(),
        sb.dir.join("prometheus.log").display(),
        pidfile.display()
    ));
    let query = |q: &str| -> Option<Value> {
        let (status, body) = sb.http("GET", 9090, &format!("/api/v1/query?query={q}"));
        if status != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"].get(0).map(|r| r["value"][1].clone())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = sb.sh_status("ss -Hltn | grep -q 127.0.0.1:9090").0;
        if ready && query("up").as_ref().and_then(|v| v.as_str()) == Some("1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never saw the agent up: {}",
            std::fs::read_to_string(sb.dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while query("nsagent_namespaces")
        .as_ref()
        .and_then(|v| v.as_str())
        != Some("4")
    {
        assert!(
            Instant::now() < deadline,
            "nsagent_namespaces never reached 4 in Prometheus"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let pid = std::fs::read_to_string(&pidfile).unwrap_or_default();
    let _ = std::process::Command::new("kill").arg(pid.trim()).status();
}

#[test]
fn alerting_rules_and_dashboard_are_valid() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/prometheus");
    let out = std::process::Command::new("promtool")
        .args(["check", "rules", &format!("{root}/nsagent.rules.yml")])
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = std::process::Command::new("promtool")
        .args(["check", "config", &format!("{root}/prometheus.yml")])
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/grafana-dashboard.json")).expect("dashboard"),
    )
    .expect("dashboard is JSON");
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap_or("").to_string())
        .collect();
    for needed in [
        "nsagent_commands_total",
        "nsagent_command_duration_seconds_bucket",
        "nsagent_batch_size",
        "nsagent_queue_depth",
        "nsagent_namespaces",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(needed)),
            "dashboard lacks {needed}"
        );
    }
}
