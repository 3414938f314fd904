//! Issue 6 (part): configuration file, log format, systemd integration.

use crate::harness::*;
use serde_json::json;
use std::process::Command;

fn check_config(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("run")
        .args(args)
        .arg("--check-config")
        .env_remove("NSAGENT_POOL")
        .envs(env.iter().copied())
        .output()
        .expect("run nsagent");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_file_precedence_and_errors() {
    let dir = std::env::temp_dir().join(format!("nsagent-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("nsagent.toml");
    std::fs::write(
        &file,
        "# test\npool = \"198.18.32.0/20\"\nprefix_len = 31\nallow_uid = [1000, 1001]\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    // file > default
    let (code, out, err) = check_config(&["--config", f], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pool = \"198.18.32.0/20\""), "{out}");
    assert!(out.contains("prefix_len = 31"), "{out}");
    assert!(out.contains("allow_uid = [1000, 1001]"), "{out}");
    // env > file
    let (_, out, _) = check_config(&["--config", f], &[("NSAGENT_POOL", "100.64.0.0/16")]);
    assert!(out.contains("pool = \"100.64.0.0/16\""), "{out}");
    // flag > env > file
    let (_, out, _) = check_config(
        &["--config", f, "--pool", "100.65.0.0/16"],
        &[("NSAGENT_POOL", "100.64.0.0/16")],
    );
    assert!(out.contains("pool = \"100.65.0.0/16\""), "{out}");
    // Unknown keys name the key and the line.
    std::fs::write(&file, "pool = \"198.18.32.0/20\"\n\nbogus_key = 1\n").unwrap();
    let (code, _, err) = check_config(&["--config", f], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("{f}:3: unknown key `bogus_key`")),
        "{err}"
    );
    // Invalid values are refused by --check-config.
    std::fs::write(&file, "pool = \"198.18.32.1/20\"\n").unwrap();
    let (code, _, err) = check_config(&["--config", f], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--pool"), "{err}");
    // An explicit file that does not exist is an error.
    let (code, _, err) = check_config(&["--config", "/nonexistent/nsagent.toml"], &[]);
    assert_ne!(code, 0, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_file_drives_the_agent_and_logs_can_be_json() {
    let mut sb = Sandbox::bare();
    let file = sb.dir.join("nsagent.toml");
    std::fs::write(
        &file,
        "pool = \"198.18.64.0/24\"\nlog_format = \"json\"\nlog_level = \"info\"\n",
    )
    .unwrap();
    // The harness passes --pool 100.64.0.0/16 as a flag, which must win over the file.
    sb.extra_args = vec!["--config".into(), file.to_string_lossy().into_owned()];
    sb.start_agent();
    let mut c = sb.client();
    assert_eq!(c.ok(json!({"op":"status"}))["pool"]["cidr"], POOL);
    c.ok(json!({"op":"create","name":"j"}));
    sb.stop_agent();
    let log = sb.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "nsagent ready"),
        "{log}"
    );
}

#[test]
fn readiness_is_notified_to_systemd() {
    let mut sb = Sandbox::bare();
    let notify = sb.dir.join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    sb.extra_env = vec![(
        "NOTIFY_SOCKET".into(),
        notify.to_string_lossy().into_owned(),
    )];
    sb.start_agent();
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).expect("READY=1 from the agent");
    assert_eq!(&buf[..n], b"READY=1");
    sb.stop_agent();
    let n = sock.recv(&mut buf).expect("STOPPING=1 from the agent");
    assert_eq!(&buf[..n], b"STOPPING=1");
}

#[test]
fn systemd_unit_verifies() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let unit = std::fs::read_to_string(format!("{root}/deploy/systemd/nsagent.service")).unwrap();
    // Point ExecStart at the binary under test so that verify can check it exists.
    let dir = std::env::temp_dir().join(format!("nsagent-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("nsagent.service");
    std::fs::write(&path, unit.replace("/usr/bin/nsagent", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains("nsagent.service:"),
        "warnings about the unit: {text}"
    );
}

#[test]
fn kubernetes_manifests_are_well_formed() {
    // No cluster and no kubeconform here: parse the manifests and check the fields the agent
    // depends on (a structural check, not a full schema validation).
    let root = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/kubernetes/daemonset.yaml"
    );
    let script = r#"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = {d["kind"]: d for d in docs}
ds = kinds["DaemonSet"]
assert ds["apiVersion"] == "apps/v1"
assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
pod = ds["spec"]["template"]["spec"]
assert pod["hostNetwork"] is True
c = pod["containers"][0]
assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
mounts = {m["name"]: m for m in c["volumeMounts"]}
assert mounts["netns"]["mountPath"] == "/run/netns"
assert mounts["netns"]["mountPropagation"] == "Bidirectional"
assert c["securityContext"]["privileged"] is True  # required by Bidirectional propagation
vols = {v["name"]: v for v in pod["volumes"]}
assert set(mounts) <= set(vols)
ann = ds["spec"]["template"]["metadata"]["annotations"]
assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == "9477"
print("ok")
"#;
    let out = Command::new("python3")
        .args(["-c", script, root])
        .output()
        .expect("python3 (apt-get install python3-yaml)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn readme_documents_every_run_flag_and_metric() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let help = Command::new(BIN)
        .args(["run", "--help"])
        .output()
        .expect("nsagent run --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let flags: Vec<&str> = help
        .split_whitespace()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-'))
        .filter(|w| !matches!(*w, "--help" | "--check-config"))
        .collect();
    assert!(flags.len() > 10, "{help}");
    for f in flags {
        assert!(
            readme.contains(&format!("`{f}`")),
            "README's flag table lacks {f}"
        );
    }
    // Every metric the agent exports is documented.
    let docs = std::fs::read_to_string(format!("{root}/docs/metrics.md")).unwrap();
    let sb = Sandbox::new();
    let (_, body) = sb.http("GET", 9477, "/metrics");
    for line in body.lines().filter(|l| l.starts_with("# TYPE nsagent_")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            docs.contains(&format!("`{name}`")),
            "docs/metrics.md lacks {name}"
        );
    }
}
