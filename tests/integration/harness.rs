//! Sandboxes for integration tests: every test gets a fresh mount + network namespace with an
//! "upstream" namespace behind an uplink veth, runs the real agent inside it, and inspects the
//! kernel with independent tools (`ip -j`, `nft -j`) run inside the same sandbox.
//! Nothing here touches the host's interfaces, routes, /run/netns or firewall.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_nsagent");
pub const CNI_BIN: &str = env!("CARGO_BIN_EXE_nsagent-cni");
/// Addresses: the uplink link is 198.18.0.0/30, namespaces come from 100.64.0.0/16.
pub const UPLINK_ADDR: &str = "198.18.0.1";
pub const UPSTREAM_ADDR: &str = "198.18.0.2";
pub const POOL: &str = "100.64.0.0/16";

const SETUP: &str = include_str!("../../scripts/sandbox-net.sh");

pub struct Sandbox {
    holder: Child,
    pub pid: u32,
    pub dir: PathBuf,
    pub socket: PathBuf,
    agent: Option<Child>,
    pub extra_args: Vec<String>,
    pub extra_env: Vec<(String, String)>,
}

impl Sandbox {
    /// A sandbox with the agent running with its defaults (plus a test pool).
    pub fn new() -> Sandbox {
        let sb = Sandbox::bare();
        let mut sb = sb;
        sb.start_agent();
        sb
    }

    /// A sandbox without the agent.
    pub fn bare() -> Sandbox {
        let dir = std::env::temp_dir().join(format!(
            "nsagent-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test dir");
        let holder = Command::new("unshare")
            .args([
                "--mount",
                "--net",
                "--propagation",
                "private",
                "sleep",
                "infinity",
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn unshare (tests need root)");
        let pid = holder.id();
        let sb = Sandbox {
            holder,
            pid,
            socket: dir.join("nsagent.sock"),
            dir,
            agent: None,
            extra_args: vec![],
            extra_env: vec![],
        };
        // unshare execs sleep once the namespaces exist: wait for that.
        let me = std::fs::read_link("/proc/self/ns/net").expect("own netns");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(format!("/proc/{pid}/ns/net")).ok() == Some(me.clone()) {
            assert!(Instant::now() < deadline, "sandbox did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        sb.sh(SETUP);
        sb
    }

    pub fn start_agent(&mut self) {
        let log = std::fs::File::create(self.dir.join("agent.log")).expect("log file");
        let child = Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "-n", "--", BIN, "run"])
            .arg("--socket")
            .arg(&self.socket)
            .args(["--pool", POOL])
            .args(&self.extra_args)
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn agent");
        self.agent = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.agent.as_mut().map(|c| c.try_wait()) {
                panic!("agent exited at start-up ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "agent did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the agent with SIGTERM and waits for it.
    pub fn stop_agent(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// Runs a shell command inside the sandbox; panics on failure.
    pub fn sh(&self, script: &str) -> String {
        let out = self.sh_status(script);
        assert!(out.0, "command failed: {script}\n{}", out.1);
        out.1
    }

    /// Runs a shell command inside the sandbox's mount and network namespaces.
    fn run_in(&self, script: &str) -> std::process::Output {
        let pid = self.pid.to_string();
        Command::new("nsenter")
            .args(["-t", &pid, "-m", "-n", "--", "sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter")
    }

    /// Runs a shell command inside the sandbox: (success, stdout + stderr).
    pub fn sh_status(&self, script: &str) -> (bool, String) {
        let out = self.run_in(script);
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// Runs an oracle that prints JSON on stdout. Dumps interrupted by concurrent changes
    /// (iproute2 warns "Dump was interrupted") are retried, not trusted.
    pub fn json(&self, script: &str) -> Value {
        for _ in 0..20 {
            let out = self.run_in(script);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("interrupted") {
                continue;
            }
            assert!(out.status.success(), "command failed: {script}\n{stderr}");
            let stdout = String::from_utf8_lossy(&out.stdout);
            return serde_json::from_str(&stdout).unwrap_or_else(|e| {
                let head: String = stdout.chars().take(300).collect();
                panic!("{script}: not JSON ({e}): {head}")
            });
        }
        panic!("{script}: dump kept being interrupted");
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket)
    }

    /// Names of the netns files.
    pub fn netns_files(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .sh("ls /run/netns")
            .split_whitespace()
            .filter(|n| *n != "upstream")
            .map(String::from)
            .collect();
        v.sort();
        v
    }

    /// Host-side links other than lo and the uplink.
    pub fn host_links(&self) -> Vec<String> {
        let links = self.json("ip -j link show");
        let mut v: Vec<String> = links
            .as_array()
            .expect("ip -j link")
            .iter()
            .filter_map(|l| l["ifname"].as_str().map(String::from))
            .filter(|n| n != "lo" && n != "uplink0")
            .collect();
        v.sort();
        v
    }

    /// The agent's table as nft prints it in JSON.
    pub fn table(&self) -> Value {
        self.json("nft -j list table inet nsagent")
    }

    /// (rules, elements of each set) of the agent's table.
    pub fn table_shape(&self) -> (usize, Vec<(String, Vec<String>)>) {
        let t = self.table();
        let items = t["nftables"].as_array().expect("nftables array");
        let rules = items.iter().filter(|i| i.get("rule").is_some()).count();
        let mut sets = vec![];
        for i in items {
            if let Some(s) = i.get("set").or_else(|| i.get("map")) {
                let mut elems: Vec<String> = s
                    .get("elem")
                    .and_then(|e| e.as_array())
                    .map(|a| {
                        a.iter()
                            .map(|e| {
                                e.as_str()
                                    .map(String::from)
                                    .unwrap_or_else(|| e.to_string())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                elems.sort();
                sets.push((s["name"].as_str().unwrap_or("").to_string(), elems));
            }
        }
        sets.sort();
        (rules, sets)
    }

    pub fn set_elems(&self, set: &str) -> Vec<String> {
        self.table_shape()
            .1
            .into_iter()
            .find(|(n, _)| n == set)
            .map(|(_, e)| e)
            .unwrap_or_default()
    }

    /// Everything a request could change: links, netns files and /etc/netns, the whole
    /// ruleset, the qdiscs.
    pub fn snapshot(&self) -> (Vec<String>, Vec<String>, String) {
        let mut files = self.netns_files();
        files.extend(
            self.sh("find /etc/netns -mindepth 1")
                .lines()
                .map(String::from),
        );
        (
            self.host_links(),
            files,
            self.sh("nft list ruleset; tc qdisc show"),
        )
    }

    /// Waits until `f` holds (kernel clean-up is asynchronous, and slower while other tests'
    /// sandboxes are being freed), panicking after 30 s.
    pub fn wait_until(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a TCP listener in the upstream namespace that answers each connection with the
    /// peer address it saw.
    pub fn start_echo_peer(&self, port: u16) {
        self.sh(&format!(
            "ip netns exec upstream socat TCP-LISTEN:{port},reuseaddr,fork SYSTEM:'echo $SOCAT_PEERADDR' >/dev/null 2>&1 &"
        ));
        self.wait_until("listener", || {
            self.sh("ip netns exec upstream ss -Hltn")
                .contains(&format!(":{port}"))
        });
    }

    /// Connects from inside a namespace to the upstream listener; returns the peer address the
    /// listener saw, or None if the connection failed.
    pub fn peer_seen_from(&self, ns: &str, port: u16) -> Option<String> {
        let (ok, out) = self.sh_status(&format!(
            "ip netns exec {ns} socat -T2 - TCP:{UPSTREAM_ADDR}:{port},connect-timeout=2 </dev/null"
        ));
        let out = out.trim().to_string();
        (ok && !out.is_empty()).then_some(out)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Kill everything left in the sandbox's network namespace (listeners), then the holder:
        // with the last process gone, the mount namespace and every netns in it are freed.
        let _ = Command::new("nsenter")
            .args([
                "-t",
                &self.pid.to_string(),
                "-m",
                "-n",
                "--",
                "sh",
                "-c",
                "ip netns pids upstream 2>/dev/null | xargs -r kill -9",
            ])
            .status();
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A protocol client on one connection.
pub struct Client {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
}

impl Client {
    pub fn connect(path: &std::path::Path) -> Client {
        let stream = UnixStream::connect(path).expect("connect to agent");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Client {
            stream,
            reader,
            next_id: 1,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends a request (adding an id) without waiting; returns the id.
    pub fn send(&mut self, mut req: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        req["id"] = json!(id);
        let mut line = serde_json::to_vec(&req).expect("encode");
        line.push(b'\n');
        self.send_raw(&line);
        id
    }

    /// Reads one response line; None at EOF.
    pub fn recv(&mut self) -> Option<Value> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read response");
        if n == 0 {
            return None;
        }
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad response {line:?}: {e}")))
    }

    /// One request, one response.
    pub fn call(&mut self, req: Value) -> Value {
        let id = self.send(req);
        let resp = self.recv().expect("response");
        assert_eq!(resp["id"], json!(id), "response id");
        resp
    }

    /// Calls and expects success; returns the result.
    pub fn ok(&mut self, req: Value) -> Value {
        let r = self.call(req.clone());
        assert_eq!(r["ok"], json!(true), "{req} failed: {r}");
        r["result"].clone()
    }

    /// Calls and expects the given error code.
    pub fn err(&mut self, req: Value, code: &str) -> Value {
        let r = self.call(req.clone());
        assert_eq!(r["ok"], json!(false), "{req} should fail: {r}");
        assert_eq!(r["error"]["code"], json!(code), "{req}: {r}");
        r
    }
}

impl Sandbox {
    /// One HTTP/1.1 request to 127.0.0.1:`port` inside the sandbox's network namespace, from a
    /// thread of this process that joins it: (status, body).
    pub fn http(&self, method: &str, port: u16, path: &str) -> (u16, String) {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let (pid, method, path) = (self.pid, method.to_string(), path.to_string());
        std::thread::spawn(move || {
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("sandbox netns");
            // SAFETY: setns on this thread only, with an fd we hold open.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns into the sandbox");
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            write!(
                s,
                "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            )
            .expect("send");
            let mut out = String::new();
            s.read_to_string(&mut out).expect("read");
            let status: u16 = out
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("bad response: {out}"));
            let body = out
                .split_once("\r\n\r\n")
                .map(|x| x.1.to_string())
                .unwrap_or_default();
            (status, body)
        })
        .join()
        .expect("http thread")
    }

    /// The value of one sample (exact name with labels) in the agent's exposition.
    pub fn metric(&self, sample: &str) -> Option<f64> {
        let (_, body) = self.http("GET", 9477, "/metrics");
        body.lines().find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == sample).then(|| value.parse().ok()).flatten()
        })
    }
}

impl Sandbox {
    /// `kill -9` the agent: no chance to clean up anything.
    pub fn kill_agent(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Names, subnets and nat flags the agent reports.
    pub fn listed(&self) -> std::collections::BTreeMap<String, Value> {
        let mut c = self.client();
        c.ok(json!({"op":"list"}))["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .map(|n| (n["name"].as_str().unwrap_or("").to_string(), n.clone()))
            .collect()
    }
}
