//! The methods being compared. Each runs inside its own sandbox (see `sandbox`).

use crate::check;
use crate::sandbox::{self, cpu, peak_rss_mib, percentiles, run, run_stdin, self_cpu, wait_links};
use crate::Opts;
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SOCKET: &str = "/run/nsagent/nsagent.sock";
const POOL_BASE: u32 = 0x6440_0000; // 100.64.0.0
const FREE_LIMIT: Duration = Duration::from_secs(600);

/// The i-th /30: (subnet, gateway, address).
fn addrs(i: usize) -> (String, Ipv4Addr, Ipv4Addr) {
    let net = POOL_BASE + 4 * i as u32;
    (
        format!("{}/30", Ipv4Addr::from(net)),
        Ipv4Addr::from(net + 1),
        Ipv4Addr::from(net + 2),
    )
}

struct Agent {
    child: Child,
}

impl Agent {
    fn start(opts: &Opts) -> anyhow::Result<Agent> {
        Agent::start_with(opts, &[])
    }

    fn start_with(opts: &Opts, extra: &[&str]) -> anyhow::Result<Agent> {
        let bin = opts.agent_bin.clone().context("--agent-bin")?;
        let child = Command::new(&bin)
            .args([
                "run",
                "--socket",
                SOCKET,
                "--pool",
                &opts.pool,
                "--log-level",
                "warn",
                "--pool6",
                &opts.pool6,
            ])
            .args(extra)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("start {bin}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(SOCKET).is_err() {
            if Instant::now() > deadline {
                bail!("agent did not start");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Agent { child })
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, and wait: a stopped agent removes its warm namespaces (a killed one keeps them
    /// for its next start).
    fn terminate(mut self) -> anyhow::Result<()> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn call(req: Value) -> anyhow::Result<Value> {
    Conn::open()?.call(req)
}

/// One connection kept open, as a platform's daemon keeps it: one request at a time.
struct Conn {
    wr: UnixStream,
    rd: BufReader<UnixStream>,
}

impl Conn {
    fn open() -> anyhow::Result<Conn> {
        let wr = UnixStream::connect(SOCKET)?;
        let rd = BufReader::new(wr.try_clone()?);
        Ok(Conn { wr, rd })
    }

    fn call(&mut self, req: Value) -> anyhow::Result<Value> {
        Ok(self.timed(req)?.0)
    }

    /// The answer, and the time from writing the request to having the answer's line: the
    /// round trip through the socket, without this client's JSON work.
    fn timed(&mut self, req: Value) -> anyhow::Result<(Value, f64)> {
        let mut line = serde_json::to_vec(&req)?;
        line.push(b'\n');
        let mut out = String::with_capacity(4096);
        let t = Instant::now();
        self.wr.write_all(&line)?;
        self.rd.read_line(&mut out)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        Ok((serde_json::from_str(&out)?, ms))
    }
}

/// Outcome of pushing requests through the socket.
struct Drive {
    latencies_ms: Vec<f64>,
    /// Completion time of every successful request, since the start.
    done: Vec<Duration>,
    errors: Vec<Value>,
    elapsed: Duration,
}

/// Closed loop: each client keeps up to `window` requests in flight on its own connection.
fn drive(per_client: Vec<Vec<Value>>, window: usize) -> anyhow::Result<Drive> {
    let start = Instant::now();
    let handles: Vec<_> = per_client
        .into_iter()
        .map(|reqs| {
            std::thread::spawn(
                move || -> anyhow::Result<(Vec<f64>, Vec<Duration>, Vec<Value>)> {
                    let mut s = UnixStream::connect(SOCKET)?;
                    let mut rd = BufReader::new(s.try_clone()?);
                    let mut sent: HashMap<u64, Instant> = HashMap::new();
                    let (mut lat, mut done, mut errs) = (vec![], vec![], vec![]);
                    let mut next = 0;
                    let mut line = String::new();
                    while next < reqs.len() || !sent.is_empty() {
                        let mut buf = Vec::new();
                        while next < reqs.len() && sent.len() < window {
                            let mut r = reqs[next].clone();
                            r["id"] = json!(next);
                            serde_json::to_writer(&mut buf, &r)?;
                            buf.push(b'\n');
                            sent.insert(next as u64, Instant::now());
                            next += 1;
                        }
                        if !buf.is_empty() {
                            s.write_all(&buf)?;
                        }
                        line.clear();
                        if rd.read_line(&mut line)? == 0 {
                            bail!("agent closed the connection");
                        }
                        let v: Value = serde_json::from_str(&line)?;
                        let id = v["id"].as_u64().context("id")?;
                        let t0 = sent.remove(&id).context("unknown id")?;
                        lat.push(t0.elapsed().as_secs_f64() * 1e3);
                        if v["ok"] == true {
                            done.push(start.elapsed());
                        } else {
                            errs.push(v);
                        }
                    }
                    Ok((lat, done, errs))
                },
            )
        })
        .collect();
    let mut out = Drive {
        latencies_ms: vec![],
        done: vec![],
        errors: vec![],
        elapsed: Duration::ZERO,
    };
    for h in handles {
        let (l, d, e) = h.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
        out.latencies_ms.extend(l);
        out.done.extend(d);
        out.errors.extend(e);
    }
    out.elapsed = start.elapsed();
    out.done.sort();
    Ok(out)
}

fn split(names: &[String], clients: usize, op: &str) -> Vec<Vec<Value>> {
    let mut per = vec![vec![]; clients.max(1)];
    for (i, n) in names.iter().enumerate() {
        per[i % clients.max(1)].push(json!({"op": op, "name": n}));
    }
    per
}

fn ensure_ok(d: &Drive, what: &str) -> anyhow::Result<()> {
    if let Some(e) = d.errors.first() {
        bail!("{} {what} failed, first: {e}", d.errors.len());
    }
    Ok(())
}

/// Open loop: requests leave on a fixed schedule whatever the answers; latency is measured from
/// the scheduled time (no coordinated omission).
fn open_loop(names: &[String], rate: u32) -> anyhow::Result<Vec<f64>> {
    let s = UnixStream::connect(SOCKET)?;
    let rd = BufReader::new(s.try_clone()?);
    let n = names.len();
    let start = Instant::now() + Duration::from_millis(20);
    let at = move |i: usize| start + Duration::from_secs_f64(i as f64 / rate as f64);
    let reader = std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
        let mut rd = rd;
        let mut lat = vec![];
        let mut line = String::new();
        for _ in 0..n {
            line.clear();
            rd.read_line(&mut line)?;
            let now = Instant::now();
            let v: Value = serde_json::from_str(&line)?;
            if v["ok"] != true {
                bail!("open-loop create failed: {v}");
            }
            let i = v["id"].as_u64().context("id")? as usize;
            lat.push(now.duration_since(at(i)).as_secs_f64() * 1e3);
        }
        Ok(lat)
    });
    let mut s = s;
    for (i, name) in names.iter().enumerate() {
        let t = at(i);
        let now = Instant::now();
        if t > now {
            std::thread::sleep(t - now);
        }
        let mut line = serde_json::to_vec(&json!({"id": i, "op": "create", "name": name}))?;
        line.push(b'\n');
        s.write_all(&line)?;
    }
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))?
}

/// One GET /metrics against the agent's default endpoint.
fn scrape() -> anyhow::Result<usize> {
    Ok(metrics_text()?.len())
}

fn metrics_text() -> anyhow::Result<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect("127.0.0.1:9477")?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn link_count() -> anyhow::Result<usize> {
    sandbox::link_count()
}

pub fn nsagent(opts: &Opts) -> anyhow::Result<Value> {
    check::start_listener()?;
    let links0 = link_count()?;
    let agent = Agent::start(opts)?;
    let names: Vec<String> = (0..opts.n).map(|i| format!("b{i}")).collect();

    let (u0, s0) = cpu(agent.pid());
    let creates = drive(split(&names, opts.clients, "create"), opts.window)?;
    let (u1, s1) = cpu(agent.pid());
    ensure_ok(&creates, "creates")?;
    let checked = check::check_all(&names, sandbox::UPLINK_ADDR)?;
    let status = call(json!({"op": "status"}))?;

    let t = Instant::now();
    let deletes = drive(split(&names, opts.clients, "delete"), opts.window)?;
    ensure_ok(&deletes, "deletes")?;
    let acked = t.elapsed();
    wait_links(links0, FREE_LIMIT)?;
    let gone = t.elapsed();

    // Open loop at a fixed offered rate.
    let ol_names: Vec<String> = (0..opts.rate_n).map(|i| format!("o{i}")).collect();
    let ol = open_loop(&ol_names, opts.rate)?;
    ensure_ok(
        &drive(split(&ol_names, opts.clients, "delete"), opts.window)?,
        "deletes",
    )?;
    wait_links(links0, FREE_LIMIT)?;

    // Lone creates on an idle agent.
    let lone = lone_creates(opts.lone, "l")?;
    // The same creates again while a scraper reads /metrics every 100 ms: scraping must not
    // slow churn down.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut scrapes = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if scrape().is_ok() {
                    scrapes += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            scrapes
        })
    };
    let s_names: Vec<String> = (0..opts.n).map(|i| format!("s{i}")).collect();
    let scraped = drive(split(&s_names, opts.clients, "create"), opts.window)?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let scrapes = scraper
        .join()
        .map_err(|_| anyhow::anyhow!("scraper panicked"))?;
    ensure_ok(&scraped, "creates while scraped")?;
    ensure_ok(
        &drive(split(&s_names, opts.clients, "delete"), opts.window)?,
        "deletes",
    )?;
    wait_links(links0, FREE_LIMIT)?;
    let rss = peak_rss_mib(agent.pid());
    Ok(json!({
        "scraped": {
            "creates_per_s": opts.n as f64 / scraped.elapsed.as_secs_f64(),
            "scrapes": scrapes,
        },
        "n": opts.n,
        "creates_per_s": opts.n as f64 / creates.elapsed.as_secs_f64(),
        "deletes_per_s": opts.n as f64 / gone.as_secs_f64(),
        "deletes_acked_per_s": opts.n as f64 / acked.as_secs_f64(),
        "latency_ms": percentiles(creates.latencies_ms),
        "delete_latency_ms": percentiles(deletes.latencies_ms),
        "cpu": {"user_s": u1 - u0, "sys_s": s1 - s0},
        "peak_rss_mib": rss,
        "batch_sizes": status["result"]["batch_sizes"],
        "check": format!("{checked}/{}", opts.n),
        "open_loop": {"rate": opts.rate, "n": opts.rate_n, "latency_ms": percentiles(ol)},
        "lone": {"n": opts.lone, "latency_ms": percentiles(lone)},
    }))
}

/// Bucket rates (namespaces/s) from sorted completion times.
fn buckets(done: &[Duration], size: usize) -> Vec<f64> {
    let mut out = vec![];
    let mut prev = Duration::ZERO;
    for chunk in done.chunks(size) {
        let Some(last) = chunk.last() else { break };
        out.push(chunk.len() as f64 / (*last - prev).as_secs_f64());
        prev = *last;
    }
    out
}

/// Deletes `names` newest first, one bucket at a time, each timed until the kernel has freed its
/// links (one host link per namespace): the rate per bucket as the host empties.
fn delete_buckets(
    names: &[String],
    size: usize,
    links0: usize,
    mut delete: impl FnMut(&[String]) -> anyhow::Result<()>,
) -> anyhow::Result<(Vec<f64>, f64)> {
    let start = Instant::now();
    let mut rates = vec![];
    let mut left = names.len();
    while left > 0 {
        let from = left.saturating_sub(size);
        let t = Instant::now();
        delete(&names[from..left])?;
        wait_links(links0 + from, FREE_LIMIT)?;
        rates.push((left - from) as f64 / t.elapsed().as_secs_f64());
        left = from;
    }
    Ok((rates, names.len() as f64 / start.elapsed().as_secs_f64()))
}

/// Every 100th namespace must pass the NAT check: nothing is dropped to stay flat.
fn check_sample(names: &[String]) -> anyhow::Result<String> {
    let sample: Vec<String> = names.iter().step_by(100).cloned().collect();
    let ok = check::check_all(&sample, sandbox::UPLINK_ADDR)?;
    Ok(format!("{ok}/{}", sample.len()))
}

pub fn flat_nsagent(opts: &Opts) -> anyhow::Result<Value> {
    check::start_listener()?;
    let links0 = link_count()?;
    let agent = Agent::start(opts)?;
    let names: Vec<String> = (0..opts.flat).map(|i| format!("f{i}")).collect();
    let mem0 = sandbox::kernel_mem()?;
    let creates = drive(split(&names, opts.clients, "create"), opts.window)?;
    ensure_ok(&creates, "creates")?;
    let mem = sandbox::kernel_mem_growth(&mem0, &sandbox::kernel_mem()?, opts.flat);
    let rss = peak_rss_mib(agent.pid());
    let check = check_sample(&names)?;
    let (deletes, deletes_per_s) = delete_buckets(&names, opts.bucket, links0, |chunk| {
        ensure_ok(
            &drive(split(chunk, opts.clients, "delete"), opts.window)?,
            "deletes",
        )
    })?;
    Ok(json!({
        "n": opts.flat,
        "creates_per_s": opts.flat as f64 / creates.elapsed.as_secs_f64(),
        "deletes_per_s": deletes_per_s,
        "buckets": buckets(&creates.done, opts.bucket),
        "delete_buckets": deletes,
        "peak_rss_mib": rss,
        "kernel_mem": mem,
        "check": check,
    }))
}

/// The naive floor: the same kernel work without the agent's choices — one namespace at a time,
/// IPv6 autoconfiguration left on, one nft transaction per namespace.
pub fn flat_floor(opts: &Opts) -> anyhow::Result<Value> {
    use nsagent::driver::{Driver, KernelDriver};
    use nsagent::model::{Namespace, NamespaceSpec, Subnet};
    check::start_listener()?;
    let links0 = link_count()?;
    let dir = nsagent::driver::NetnsDir::prepare(Path::new("/run/netns"))?;
    let metrics = std::sync::Arc::new(metrics::Metrics::new("bench", "bench")?);
    let dirs = nsagent::model::Dirs {
        netns: "/run/netns".into(),
        etc_netns: "/run/etc-netns".into(),
    };
    let etc = nsagent::driver::EtcNetns::new(dirs.etc_netns.clone());
    let mut drv = KernelDriver::new(dir, etc, "floor".into(), metrics)?.naive();
    // What the agent does at start-up: a router forwards.
    std::fs::write("/proc/sys/net/ipv4/ip_forward", b"1")?;
    let spec = nft::TableSpec::new("floor", true);
    drv.nft_socket()
        .run_all_or_nothing(nft::Transaction::replace_table(
            &spec,
            &[nft::Elem::Uplink("uplink0".into())],
        )?)?;
    let mem0 = sandbox::kernel_mem()?;
    let start = Instant::now();
    let mut done = vec![];
    let mut made = vec![];
    for i in 0..opts.flat {
        let (subnet, _, _) = addrs(i);
        let subnet = Subnet::parse_for_namespace(&subnet, 30)?;
        let spec = NamespaceSpec {
            name: format!("f{i}"),
            subnet: Some(subnet),
            ipv6: false,
            subnet6: None,
            conf: nsagent::model::Conf::default(),
            ns_ifname: "eth0".into(),
            host_ifname: None,
            mtu: None,
        };
        let ns = Namespace::plan(&spec, subnet, None, &dirs);
        if let Some(Err(e)) = drv.create(std::slice::from_ref(&ns)).pop() {
            bail!("floor create {i}: {}", e.error);
        }
        let elems = vec![
            nft::ElemOp::Add(nft::Elem::NsIface(ns.host_ifname.clone())),
            nft::ElemOp::Add(nft::Elem::NatSaddr(ns.address)),
        ];
        if let Some(Err(e)) = drv.nft(&[elems]).pop() {
            bail!("floor nft {i}: {e}");
        }
        done.push(start.elapsed());
        made.push(ns);
    }
    let elapsed = start.elapsed();
    let mem = sandbox::kernel_mem_growth(&mem0, &sandbox::kernel_mem()?, opts.flat);
    let names: Vec<String> = made.iter().map(|ns| ns.name.clone()).collect();
    let check = check_sample(&names)?;
    let (deletes, deletes_per_s) = delete_buckets(&names, opts.bucket, links0, |chunk| {
        let from = made.len() - chunk.len();
        drv.remove(&made[from..]);
        made.truncate(from);
        Ok(())
    })?;
    Ok(json!({
        "n": opts.flat,
        "creates_per_s": opts.flat as f64 / elapsed.as_secs_f64(),
        "deletes_per_s": deletes_per_s,
        "buckets": buckets(&done, opts.bucket),
        "delete_buckets": deletes,
        "kernel_mem": mem,
        "check": check,
    }))
}

const NFT_BASE: &str = "add table inet bench
add chain inet bench forward { type filter hook forward priority 0; policy accept; }
add chain inet bench postrouting { type nat hook postrouting priority 100; policy accept; }
";

/// Fastest iproute2 path: one `ip -batch` for the host side (peer born inside the netns), one
/// `ip -n NS -batch` per namespace, one `nft -f` for all rules.
pub fn ipbatch(opts: &Opts) -> anyhow::Result<Value> {
    check::start_listener()?;
    let links0 = link_count()?;
    let n = opts.n;
    let names: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
    let (cu0, cs0) = self_cpu();
    let t = Instant::now();
    let mut host = String::new();
    let mut rules = String::from(NFT_BASE);
    for (i, name) in names.iter().enumerate() {
        let (subnet, gw, _) = addrs(i);
        host.push_str(&format!(
            "netns add {name}\nlink add h{i} type veth peer name eth0 netns {name}\naddr add {gw}/30 dev h{i}\nlink set h{i} up\n"
        ));
        rules.push_str(&format!(
            "add rule inet bench postrouting ip saddr {subnet} oifname uplink0 masquerade\n\
             add rule inet bench forward iifname uplink0 oifname h{i} accept\n\
             add rule inet bench forward iifname h{i} oifname uplink0 accept\n"
        ));
    }
    run_stdin(&["ip", "-batch", "-"], &host)?;
    for (i, name) in names.iter().enumerate() {
        let (_, gw, addr) = addrs(i);
        run_stdin(
            &["ip", "-n", name, "-batch", "-"],
            &format!("addr add {addr}/30 dev eth0\nlink set eth0 up\nlink set lo up\nroute add default via {gw}\n"),
        )?;
    }
    run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    run_stdin(&["nft", "-f", "-"], &rules)?;
    let setup = t.elapsed();
    let (cu1, cs1) = self_cpu();
    let checked = check::check_all(&names, sandbox::UPLINK_ADDR)?;
    let t = Instant::now();
    let mut del = String::new();
    for (i, name) in names.iter().enumerate() {
        del.push_str(&format!("link del h{i}\nnetns del {name}\n"));
    }
    run_stdin(&["ip", "-batch", "-"], &del)?;
    run(&["nft", "delete", "table", "inet", "bench"])?;
    wait_links(links0, FREE_LIMIT)?;
    let teardown = t.elapsed();
    Ok(json!({
        "n": n,
        "creates_per_s": n as f64 / setup.as_secs_f64(),
        "deletes_per_s": n as f64 / teardown.as_secs_f64(),
        "cpu": {"user_s": cu1 - cu0, "sys_s": cs1 - cs0},
        "check": format!("{checked}/{n}"),
    }))
}

/// The shell recipe: one process per step, rules per namespace, rules found by handle to delete.
pub fn shell(opts: &Opts) -> anyhow::Result<Value> {
    check::start_listener()?;
    let links0 = link_count()?;
    let n = opts.n;
    let names: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
    run_stdin(&["nft", "-f", "-"], NFT_BASE)?;
    let mut lat = vec![];
    let (cu0, cs0) = self_cpu();
    let t = Instant::now();
    for (i, name) in names.iter().enumerate() {
        let t1 = Instant::now();
        let (subnet, gw, addr) = addrs(i);
        let (h, p) = (format!("h{i}"), format!("p{i}"));
        let (gw, addr) = (format!("{gw}/30"), format!("{addr}/30"));
        let gw_only = gw.trim_end_matches("/30");
        let c = format!("comment \"{name}\"");
        run(&["ip", "netns", "add", name])?;
        run(&["ip", "link", "add", &h, "type", "veth", "peer", "name", &p])?;
        run(&["ip", "link", "set", &p, "netns", name])?;
        run(&[
            "ip", "netns", "exec", name, "ip", "addr", "add", &addr, "dev", &p,
        ])?;
        run(&["ip", "netns", "exec", name, "ip", "link", "set", &p, "up"])?;
        run(&["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"])?;
        run(&[
            "ip", "netns", "exec", name, "ip", "route", "add", "default", "via", gw_only,
        ])?;
        run(&["ip", "addr", "add", &gw, "dev", &h])?;
        run(&["ip", "link", "set", &h, "up"])?;
        run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        run(&["sh", "-c", &format!("nft add rule inet bench postrouting ip saddr {subnet} oifname uplink0 masquerade {c}")])?;
        run(&[
            "sh",
            "-c",
            &format!("nft add rule inet bench forward iifname uplink0 oifname {h} accept {c}"),
        ])?;
        run(&[
            "sh",
            "-c",
            &format!("nft add rule inet bench forward iifname {h} oifname uplink0 accept {c}"),
        ])?;
        lat.push(t1.elapsed().as_secs_f64() * 1e3);
    }
    let setup = t.elapsed();
    let (cu1, cs1) = self_cpu();
    let checked = check::check_all(&names, sandbox::UPLINK_ADDR)?;
    let t = Instant::now();
    for (i, name) in names.iter().enumerate() {
        for chain in ["forward", "postrouting"] {
            let out = Command::new("nft")
                .args(["-a", "list", "chain", "inet", "bench", chain])
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let tag = format!("comment \"{name}\"");
            for line in text.lines().filter(|l| l.contains(&tag)) {
                if let Some(handle) = line.rsplit("# handle ").next() {
                    run(&[
                        "nft",
                        "delete",
                        "rule",
                        "inet",
                        "bench",
                        chain,
                        "handle",
                        handle.trim(),
                    ])?;
                }
            }
        }
        run(&["ip", "link", "del", &format!("h{i}")])?;
        run(&["ip", "netns", "del", name])?;
    }
    wait_links(links0, FREE_LIMIT)?;
    let teardown = t.elapsed();
    Ok(json!({
        "n": n,
        "creates_per_s": n as f64 / setup.as_secs_f64(),
        "deletes_per_s": n as f64 / teardown.as_secs_f64(),
        "latency_ms": percentiles(lat),
        "cpu": {"user_s": cu1 - cu0, "sys_s": cs1 - cs0},
        "check": format!("{checked}/{n}"),
    }))
}

/// Rules in the agent's table (nft as the oracle).
fn rule_count() -> anyhow::Result<usize> {
    let out = Command::new("nft")
        .args(["-j", "list", "table", "inet", "nsagent"])
        .output()?;
    let v: Value = serde_json::from_slice(&out.stdout)?;
    Ok(v["nftables"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|i| i.get("rule").is_some()).count()))
}

/// Creates with two published ports and a rate limit each, against plain creates on the same
/// agent: plain, featured, plain (the featured run is compared with the mean of the plain ones
/// around it, so that drift does not favour either).
pub fn features(opts: &Opts) -> anyhow::Result<Value> {
    bracketed(opts, |i, r| {
        let port = 10000 + 2 * i;
        r["ports"] = json!([
            {"proto": "tcp", "host_port": port, "port": 80},
            {"proto": "tcp", "host_port": port + 1, "port": 443},
        ]);
        r["bandwidth"] = json!({"ingress_bps": 100_000_000u64, "egress_bps": 100_000_000u64});
    })
}

/// Dual-stack creates against IPv4-only ones (`"ipv6": false`) on one agent with an IPv6 pool,
/// bracketed the same way.
pub fn dual(opts: &Opts) -> anyhow::Result<Value> {
    let mut opts = opts.clone();
    if opts.pool6 == "none" {
        opts.pool6 = "fd00:1::/48".into();
    }
    bracketed_with(&opts, |_, r| r["ipv6"] = json!(false), |_, _| {})
}

/// Plain, changed, plain creates on one agent (each round deleted and freed before the next);
/// `change` alters the middle round's requests.
fn bracketed(opts: &Opts, change: impl Fn(u32, &mut Value)) -> anyhow::Result<Value> {
    bracketed_with(opts, |_, _| {}, change)
}

fn bracketed_with(
    opts: &Opts,
    plain: impl Fn(u32, &mut Value),
    featured: impl Fn(u32, &mut Value),
) -> anyhow::Result<Value> {
    let links0 = link_count()?;
    let _agent = Agent::start(opts)?;
    let round = |label: &str, alter: &dyn Fn(u32, &mut Value)| -> anyhow::Result<(f64, usize)> {
        let names: Vec<String> = (0..opts.n).map(|i| format!("{label}{i}")).collect();
        let mut per = split(&names, opts.clients, "create");
        let mut i = 0u32;
        for reqs in &mut per {
            for r in reqs {
                alter(i, r);
                i += 1;
            }
        }
        let d = drive(per, opts.window)?;
        ensure_ok(&d, "creates")?;
        let rules = rule_count()?;
        let del = drive(split(&names, opts.clients, "delete"), opts.window)?;
        ensure_ok(&del, "deletes")?;
        wait_links(links0, FREE_LIMIT)?;
        Ok((opts.n as f64 / d.elapsed.as_secs_f64(), rules))
    };
    let (p1, plain_rules) = round("p", &plain)?;
    let (fe, featured_rules) = round("f", &featured)?;
    let (p2, _) = round("q", &plain)?;
    let mean = (p1 + p2) / 2.0;
    Ok(json!({
        "n": opts.n,
        "plain_runs": [p1, p2],
        "plain_creates_per_s": mean,
        "featured_creates_per_s": fe,
        "ratio": fe / mean,
        "plain_rules": plain_rules,
        "featured_rules": featured_rules,
    }))
}

/// How many warm namespaces the agent has ready.
/// The pool's fill, from the metrics endpoint: a `status` poll every few milliseconds would
/// be commands for the executor, which refill yields to.
fn warm_ready() -> anyhow::Result<u64> {
    metric("nsagent_warm_ready")
}

/// One unlabelled metric's value, from the metrics endpoint.
fn metric(name: &str) -> anyhow::Result<u64> {
    let body = metrics_text()?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .with_context(|| format!("no {name} in /metrics"))
}

/// Waits until the warm pool holds `n`; how long that took.
fn wait_warm(n: usize) -> anyhow::Result<Duration> {
    let t = Instant::now();
    while warm_ready()? < n as u64 {
        if t.elapsed() > FREE_LIMIT {
            bail!("the warm pool did not fill");
        }
        // Each poll is a connection and a whole exposition, on the two cores the refill needs:
        // polled every 5 ms, the refill after the burst ran at 0.77-0.96x the cold rate in six
        // runs, every 20 ms at 0.88-1.09x in three (benches/results/2026-12-07-warm-lone-direct.md);
        // 20 ms is ±2% of a refill of 1,000.
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(t.elapsed())
}

/// Lone creates on one open connection, 50 ms apart (each one's pool slot refilled before the
/// next), then deleted.
fn lone_creates(n: usize, prefix: &str) -> anyhow::Result<Vec<f64>> {
    let mut lat = vec![];
    let mut c = Conn::open()?;
    for i in 0..n {
        std::thread::sleep(Duration::from_millis(50));
        let (r, ms) = c.timed(json!({"op": "create", "name": format!("{prefix}{i}")}))?;
        lat.push(ms);
        if r["ok"] != true {
            bail!("lone create failed: {r}");
        }
    }
    for i in 0..n {
        call(json!({"op": "delete", "name": format!("{prefix}{i}")}))?;
    }
    Ok(lat)
}

/// A burst of `n` creates sent at once by `clients` pipelining clients (every request in
/// flight): latency percentiles and throughput.
fn burst(names: &[String], clients: usize) -> anyhow::Result<(Vec<f64>, f64)> {
    let per = split(names, clients, "create");
    let window = names.len().div_ceil(clients.max(1));
    let d = drive(per, window)?;
    ensure_ok(&d, "burst creates")?;
    let rate = names.len() as f64 / d.elapsed.as_secs_f64();
    Ok((d.latencies_ms, rate))
}

fn delete_all(names: &[String], opts: &Opts, links0: usize) -> anyhow::Result<()> {
    ensure_ok(
        &drive(split(names, opts.clients, "delete"), opts.window)?,
        "deletes",
    )?;
    wait_links(links0, FREE_LIMIT)
}

/// Issue 13: the warm pool against cold creates, one sandbox, the same requests: lone creates,
/// a burst of `--n` from 10 pipelining clients, the refill after it, an open-loop load during
/// refill, and what `--n` warm namespaces cost.
pub fn warm(opts: &Opts) -> anyhow::Result<Value> {
    check::start_listener()?;
    let n = opts.n;
    let clients = 10;
    let names: Vec<String> = (0..n).map(|i| format!("w{i}")).collect();
    // Each round its own names: a name just deleted waits for the kernel to free it.
    let round_names = |r: usize| -> Vec<String> { (0..n).map(|i| format!("r{r}-{i}")).collect() };
    let links0 = link_count()?;

    // Cold: --warm 0.
    // The machine is noisy (±30% run to run): rates are the median of `--runs` rounds.
    let rounds = opts.runs.max(1);
    let cold_lone;
    let (mut cold_lat, mut cold_rates) = (vec![], vec![]);
    {
        let _agent = Agent::start(opts)?;
        cold_lone = lone_creates(opts.lone, "l")?;
        wait_links(links0, FREE_LIMIT)?;
        for r in 0..rounds {
            let names = round_names(r);
            let (lat, rate) = burst(&names, clients)?;
            cold_lat.extend(lat);
            cold_rates.push(rate);
            delete_all(&names, opts, links0)?;
            // The kernel destroys the namespaces after their links are gone: let it finish.
            sandbox::wait_idle(Duration::from_secs(60));
        }
    }
    let (cold_burst, cold_rate) = (percentiles(cold_lat), crate::median(cold_rates.clone()));
    wait_links(links0, FREE_LIMIT)?;
    sandbox::wait_idle(Duration::from_secs(120));

    // Warm: --warm n. The first fill is a refill from empty.
    let mem0 = sandbox::kernel_mem()?;
    let agent = Agent::start_with(opts, &["--warm", &n.to_string()])?;
    let fill = wait_warm(n)?;
    let mem1 = sandbox::kernel_mem()?;
    let rss_full = peak_rss_mib(agent.pid());
    let direct0 = metric("nsagent_warm_claims_direct_total")?;
    let warm_lone = lone_creates(opts.lone, "l")?;
    let lone_direct = metric("nsagent_warm_claims_direct_total")? - direct0;
    // The socket round trip without kernel work: what no create can go below.
    let mut pings = vec![];
    let mut c = Conn::open()?;
    for _ in 0..opts.lone {
        std::thread::sleep(Duration::from_millis(50));
        pings.push(c.timed(json!({"op": "ping"}))?.1);
    }
    wait_warm(n)?;
    let (mut warm_lat, mut warm_rates, mut refill_rates) = (vec![], vec![], vec![]);
    for r in 0..rounds {
        let names = round_names(r);
        let (lat, rate) = burst(&names, clients)?;
        warm_lat.extend(lat);
        warm_rates.push(rate);
        // The refill after the burst, quiet.
        refill_rates.push(n as f64 / wait_warm(n)?.as_secs_f64());
        delete_all(&names, opts, links0 + n)?;
        wait_warm(n)?;
        sandbox::wait_idle(Duration::from_secs(60));
    }
    let (warm_burst, warm_rate) = (percentiles(warm_lat), crate::median(warm_rates.clone()));
    let refill_rate = crate::median(refill_rates.clone());
    // The burst again, then an open-loop load while the pool refills behind it.
    burst(&names, clients)?;
    let ol_names: Vec<String> = (0..opts.rate_n).map(|i| format!("o{i}")).collect();
    let ol = open_loop(&ol_names, opts.rate)?;
    let ol_hits = ol_names.len(); // every create answered ok (open_loop fails otherwise)
    let refill_after_load = wait_warm(n)?;
    let check = check::check_all(&names[..n.min(100)], sandbox::UPLINK_ADDR)?;
    let rss = peak_rss_mib(agent.pid());
    let all: Vec<String> = names.iter().chain(&ol_names).cloned().collect();
    delete_all(&all, opts, links0 + n)?;
    agent.terminate()?;
    wait_links(links0, FREE_LIMIT)?;

    let p = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let summary = json!({
        "n": n,
        "clients": clients,
        "ping_ms": percentiles(pings),
        "cold": {
            "lone_ms": percentiles(cold_lone),
            "burst_ms": cold_burst,
            "burst_per_s": cold_rate,
            "burst_per_s_rounds": cold_rates,
        },
        "warm": {
            "lone_ms": percentiles(warm_lone),
            "lone_direct": lone_direct,
            "burst_ms": warm_burst,
            "burst_per_s": warm_rate,
            "burst_per_s_rounds": warm_rates,
            "fill_from_empty_per_s": n as f64 / fill.as_secs_f64(),
            "refill_after_burst_per_s": refill_rate,
            "refill_after_burst_per_s_rounds": refill_rates,
            "refill_after_burst_and_load_s": refill_after_load.as_secs_f64(),
            "open_loop": {"rate": opts.rate, "n": ol_hits, "latency_ms": percentiles(ol)},
            "check": format!("{check}/{}", n.min(100)),
            "peak_rss_mib": rss,
            "rss_mib_full_pool": rss_full,
            "kernel_mem": sandbox::kernel_mem_growth(&mem0, &mem1, n),
        },
    });
    let (c, w) = (&summary["cold"], &summary["warm"]);
    eprintln!(
        "warm pool, n={n}: lone create p50/p99 {:.3}/{:.3} ms ({lone_direct} of {} direct; cold {:.3}/{:.3}, ping {:.3}/{:.3}); burst p99 {:.1} ms vs cold {:.1} ms (ratio {:.3}); burst {:.0}/s vs cold {:.0}/s (x{:.1}); refill after the burst {:.0}/s ({:.2}x cold); open loop {}/s during refill p99 {:.2} ms",
        p(&w["lone_ms"], "p50"), p(&w["lone_ms"], "p99"), opts.lone,
        p(&c["lone_ms"], "p50"), p(&c["lone_ms"], "p99"),
        p(&summary["ping_ms"], "p50"), p(&summary["ping_ms"], "p99"),
        p(&w["burst_ms"], "p99"), p(&c["burst_ms"], "p99"),
        p(&w["burst_ms"], "p99") / p(&c["burst_ms"], "p99"),
        warm_rate, cold_rate, warm_rate / cold_rate,
        p(w, "refill_after_burst_per_s"), p(w, "refill_after_burst_per_s") / cold_rate,
        opts.rate, p(&w["open_loop"]["latency_ms"], "p99"),
    );
    Ok(summary)
}
