//! The client subcommands (`nsagent add|del|list|show|status|exec`), run as real processes inside
//! the sandbox against the sandbox's agent; and the generated completion scripts and man page.

use crate::harness::*;
use serde_json::{json, Value};
use std::process::{Command, Stdio};

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `nsagent ARGS` inside the sandbox, with NSAGENT_SOCKET pointing at its agent.
pub fn nsagent(sb: &Sandbox, args: &[&str]) -> Run {
    let out = Command::new("nsenter")
        .args(["-t", &sb.pid.to_string(), "-m", "-n", "--", BIN])
        .args(args)
        .env("NSAGENT_SOCKET", &sb.socket)
        .stdin(Stdio::null())
        .output()
        .expect("run nsenter");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs and expects exit 0.
pub fn ok(sb: &Sandbox, args: &[&str]) -> Run {
    let r = nsagent(sb, args);
    assert_eq!(r.code, 0, "nsagent {args:?}: {}{}", r.stdout, r.stderr);
    r
}

fn json_of(r: &Run) -> Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.stdout))
}

#[test]
fn cli_add_show_list_status_as_tables_and_json() {
    let sb = Sandbox::new();
    let mut c = sb.client();
    let r = ok(&sb, &["add", "web"]);
    assert!(r.stdout.contains("netns path:"), "{}", r.stdout);
    assert!(r.stdout.contains("/run/netns/web"), "{}", r.stdout);
    let web = c.ok(json!({"op":"get","name":"web"}));
    assert!(r.stdout.contains(web["subnet"].as_str().unwrap()));

    // Options reach the agent; --json prints the protocol's result object.
    let r = ok(
        &sb,
        &[
            "add",
            "plain",
            "--subnet",
            "198.18.7.0/30",
            "--no-nat",
            "--mtu",
            "1400",
            "--json",
        ],
    );
    let plain = json_of(&r);
    assert_eq!(plain, c.ok(json!({"op":"get","name":"plain"})));
    assert_eq!(plain["subnet"], "198.18.7.0/30");
    assert_eq!(plain["nat"], false);
    assert_eq!(plain["mtu"], 1400);

    // show: aligned "key:  value" lines, or the namespace object.
    let r = ok(&sb, &["show", "plain"]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines
        .iter()
        .any(|l| l.starts_with("name:") && l.ends_with(" plain")));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("nat:") && l.ends_with(" no")));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("mtu:") && l.ends_with(" 1400")));
    let col = |l: &str| l.len() - l.split_once(':').unwrap().1.trim_start().len();
    assert!(
        lines.iter().all(|l| col(l) == col(lines[0])),
        "values not aligned:\n{}",
        r.stdout
    );
    assert_eq!(json_of(&ok(&sb, &["show", "web", "--json"])), web);

    // list: a header and one row per namespace, columns aligned; --json is the list result.
    let r = ok(&sb, &["list"]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert!(lines[0].starts_with("NAME"), "{}", r.stdout);
    let subnet_col = lines[0].find("SUBNET").unwrap();
    assert!(lines[1].starts_with("plain "));
    assert!(lines[2].starts_with("web "));
    assert_eq!(&lines[1][subnet_col..subnet_col + 13], "198.18.7.0/30");
    assert_eq!(
        &lines[2][subnet_col..],
        lines[2][subnet_col..].trim_start(),
        "{}",
        r.stdout
    );
    assert!(lines[2][subnet_col..].starts_with(web["subnet"].as_str().unwrap()));
    assert_eq!(
        json_of(&ok(&sb, &["list", "--json"])),
        c.ok(json!({"op":"list"}))
    );

    // status
    let st = json_of(&ok(&sb, &["status", "--json"]));
    assert_eq!(st["namespaces"], 2);
    assert_eq!(st["uplink"], "uplink0");
    let r = ok(&sb, &["status"]);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("namespaces:") && l.ends_with(" 2")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains(POOL), "{}", r.stdout);

    // del of one name.
    let r = ok(&sb, &["del", "web", "--json"]);
    assert_eq!(json_of(&r), json!({"name":"web"}));
    assert_eq!(sb.netns_files(), vec!["plain"]);
}

#[test]
fn cli_bulk_add_and_delete_by_prefix() {
    let sb = Sandbox::new();
    ok(&sb, &["add", "keep"]);
    let r = ok(&sb, &["add", "--count", "50", "--prefix", "job-"]);
    // stderr is not a terminal: no progress bar, one summary line.
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.starts_with("created 50 namespaces"),
        "{}",
        r.stderr
    );
    let mut expected: Vec<String> = (0..50).map(|i| format!("job-{i}")).collect();
    expected.push("keep".into());
    expected.sort();
    assert_eq!(sb.netns_files(), expected);
    assert_eq!(sb.set_elems("ns_ifaces").len(), 51);

    let r = ok(&sb, &["del", "--prefix", "job-"]);
    assert!(
        r.stderr.starts_with("deleted 50 namespaces"),
        "{}",
        r.stderr
    );
    assert_eq!(sb.netns_files(), vec!["keep"]);
    // Nothing left to match: still fine.
    let r = ok(&sb, &["del", "--prefix", "job-"]);
    assert!(r.stderr.starts_with("deleted 0 namespaces"), "{}", r.stderr);

    // --json: one array of result objects, in name order.
    let made = json_of(&ok(
        &sb,
        &["add", "--count", "3", "--prefix", "j", "--json"],
    ));
    let names: Vec<&str> = made
        .as_array()
        .expect("array")
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["j0", "j1", "j2"]);
    let gone = json_of(&ok(&sb, &["del", "j0", "j1", "j2", "--json"]));
    assert_eq!(gone, json!([{"name":"j0"},{"name":"j1"},{"name":"j2"}]));

    // A partial failure: the rest is done, each failure is reported, exit 1.
    ok(&sb, &["add", "p1"]);
    let r = nsagent(&sb, &["add", "--count", "3", "--prefix", "p"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("nsagent: exists: "), "{}", r.stderr);
    assert!(r.stderr.contains("created 2 of 3"), "{}", r.stderr);
    assert_eq!(sb.netns_files(), vec!["keep", "p0", "p1", "p2"]);
}

#[test]
fn cli_exec_runs_a_command_inside_the_namespace() {
    let sb = Sandbox::new();
    ok(&sb, &["add", "box"]);
    let r = ok(&sb, &["exec", "box", "--", "cat", "/proc/net/dev"]);
    assert!(r.stdout.contains("eth0:"), "{}", r.stdout);
    assert!(!r.stdout.contains("uplink0"), "{}", r.stdout);
    // The address the agent reported is on eth0 in there (and arguments with dashes pass).
    let addr = sb.client().ok(json!({"op":"get","name":"box"}))["address"]
        .as_str()
        .unwrap()
        .to_string();
    let r = ok(
        &sb,
        &[
            "exec", "box", "ip", "-4", "-o", "addr", "show", "dev", "eth0",
        ],
    );
    assert!(r.stdout.contains(&addr), "{}", r.stdout);
    // The exit code is the command's.
    assert_eq!(
        nsagent(&sb, &["exec", "box", "--", "sh", "-c", "exit 7"]).code,
        7
    );
    // A command that does not exist: 127, like env(1).
    let r = nsagent(&sb, &["exec", "box", "--", "no-such-command-here"]);
    assert_eq!(r.code, 127, "{}", r.stderr);
    // A namespace that does not exist: the agent's error.
    let r = nsagent(&sb, &["exec", "nobody", "--", "true"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("nsagent: not_found: "), "{}", r.stderr);
}

#[test]
fn cli_exit_codes() {
    let sb = Sandbox::new();
    ok(&sb, &["add", "taken"]);
    // 1: the agent's error, with its code.
    let r = nsagent(&sb, &["show", "nobody"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("nsagent: not_found: "), "{}", r.stderr);
    assert!(r.stdout.is_empty());
    let r = nsagent(&sb, &["add", "taken"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("nsagent: exists: "), "{}", r.stderr);
    let r = nsagent(&sb, &["add", "bad/name"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with("nsagent: invalid_name: "),
        "{}",
        r.stderr
    );
    // 2: usage.
    for args in [
        &["list", "--bogus"][..],
        &["add", "x", "--mtu", "20"],
        &["add", "x", "--count", "3", "--prefix", "y"],
        &["del"],
        &["exec", "x"],
        &["frobnicate"],
    ] {
        let r = nsagent(&sb, args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
    }
    // 3: no agent at the socket; the message names it and says how to start one.
    let wrong = sb.dir.join("nope.sock");
    let wrong = wrong.to_str().unwrap();
    for args in [
        &["list", "--socket", wrong][..],
        &["add", "x", "--socket", wrong],
        &["exec", "--socket", wrong, "x", "--", "true"],
    ] {
        let r = nsagent(&sb, args);
        assert_eq!(r.code, 3, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(wrong), "{}", r.stderr);
        assert!(r.stderr.contains("nsagent run"), "{}", r.stderr);
    }
    // --socket wins over NSAGENT_SOCKET; nothing was created anywhere.
    assert_eq!(sb.netns_files(), vec!["taken"]);
}

/// The generated files in deploy/ match what the binary prints. Set NSAGENT_REGENERATE=1 to
/// rewrite them instead.
#[test]
fn generated_completions_and_man_page_are_current() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let cases: [(&[&str], &str); 4] = [
        (&["completions", "bash"], "completions/nsagent.bash"),
        (&["completions", "zsh"], "completions/_nsagent"),
        (&["completions", "fish"], "completions/nsagent.fish"),
        (&["man"], "man/nsagent.1"),
    ];
    let regenerate = std::env::var_os("NSAGENT_REGENERATE").is_some();
    for (args, file) in cases {
        let out = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run nsagent");
        assert!(out.status.success(), "nsagent {args:?}: {out:?}");
        let generated = String::from_utf8(out.stdout).expect("UTF-8");
        let path = deploy.join(file);
        if regenerate {
            std::fs::write(&path, &generated).expect("write generated file");
            continue;
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            generated == checked_in,
            "deploy/{file} is out of date with `nsagent {}`: regenerate with \
             NSAGENT_REGENERATE=1 cargo test --test integration generated_",
            args.join(" ")
        );
    }
}
