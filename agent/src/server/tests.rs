//! The server over a real Unix socket against the fake driver: the protocol, pipelining,
//! backpressure and shutdown, without root and without a kernel.

use super::*;
use crate::cli::{CliError, Client};
use crate::cmd::{Create, Delete, Get, GetStatus, List, Ping};
use crate::driver::Fake;
use crate::model::Subnet;
use crate::pool::Pool;
use indicatif::ProgressBar;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// An agent on a temporary socket, with a fake kernel.
struct TestAgent {
    socket: PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
    server: Option<std::thread::JoinHandle<()>>,
    executor: Option<std::thread::JoinHandle<()>>,
}

impl TestAgent {
    fn start(name: &str, fake: Fake, queue_capacity: usize, tune: impl FnOnce(&mut Front)) -> Self {
        let dir =
            std::env::temp_dir().join(format!("nsagent-server-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let metrics = Arc::new(Metrics::new("test", "test").unwrap());
        let (queue, jobs) = crossbeam_channel::bounded::<Job>(queue_capacity);
        let pool = Pool::new(Subnet::parse_pool("100.64.0.0/16").unwrap(), 30).unwrap();
        let info = executor::Info {
            version: "test",
            table: "t".into(),
            uplink: None,
            dirs: crate::model::Dirs {
                netns: "/run/netns".into(),
                etc_netns: "/etc/netns".into(),
            },
            started: Instant::now(),
        };
        let limits = executor::Limits {
            max_batch: 64,
            max_pending: 100,
            cleanup_on_exit: false,
            warm: 0,
            check_every: None,
        };
        let ex = Executor::new(fake, info, limits, pool, None, metrics.clone());
        let shared = Arc::new(std::sync::Mutex::new(ex));
        let direct = shared.clone();
        let executor = std::thread::spawn(move || Executor::run(&shared, jobs));
        let limits = Limits {
            min_prefix: 30,
            min_prefix6: None,
        };
        let mut front = Front::new(metrics, Default::default(), queue, direct, limits);
        tune(&mut front);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let server = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(listener).unwrap();
                serve(listener, front, Access::default(), stop_rx, SHUTDOWN_DRAIN).await;
            });
        });
        TestAgent {
            socket,
            stop,
            server: Some(server),
            executor: Some(executor),
        }
    }

    fn client(&self) -> Client {
        Client::connect(&self.socket).unwrap()
    }

    /// Raw lines in, raw lines out.
    fn raw(&self, lines: &str, answers: usize) -> Vec<serde_json::Value> {
        let mut s = UnixStream::connect(&self.socket).unwrap();
        s.write_all(lines.as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        (0..answers)
            .map(|_| {
                let mut l = String::new();
                r.read_line(&mut l).unwrap();
                serde_json::from_str(&l).unwrap()
            })
            .collect()
    }

    /// Stops like SIGTERM does, and waits for the server and the executor to end.
    fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(s) = self.server.take() {
            s.join().unwrap();
        }
        if let Some(e) = self.executor.take() {
            e.join().unwrap();
        }
    }
}

fn create(name: &str) -> Create {
    Create {
        name: name.into(),
        ..Create::default()
    }
}

fn code(e: CliError) -> String {
    match e {
        CliError::Agent(a) => a.code,
        other => panic!("not an agent error: {other}"),
    }
}

#[test]
fn every_op_round_trips_through_the_typed_client() {
    let agent = TestAgent::start("ops", Fake::default(), 64, |_| {});
    let mut c = agent.client();
    assert_eq!(c.call(&Ping {}).unwrap().version, "test");
    let ns = c.call(&create("a")).unwrap();
    assert_eq!(ns.subnet.to_string(), "100.64.0.0/30");
    assert_eq!(ns.netns_path, "/run/netns/a");
    assert_eq!(
        c.call(&Get { name: "a".into() }).unwrap().address,
        ns.address
    );
    assert_eq!(code(c.call(&create("a")).unwrap_err()), "exists");
    let st = c.call(&GetStatus {}).unwrap();
    assert_eq!((st.namespaces, st.pool.free), (1, st.pool.size - 1));
    assert_eq!(
        c.call(&List { selector: None }).unwrap().namespaces,
        vec![ns]
    );
    assert_eq!(c.call(&Delete { name: "a".into() }).unwrap().name, "a");
    assert_eq!(
        code(c.call(&Get { name: "a".into() }).unwrap_err()),
        "not_found"
    );
    let bad = Create {
        name: "a/b".into(),
        ..Create::default()
    };
    assert_eq!(code(c.call(&bad).unwrap_err()), "invalid_name");
    agent.stop();
}

#[test]
fn raw_lines_get_one_answer_each_with_their_id() {
    let agent = TestAgent::start("raw", Fake::default(), 64, |_| {});
    let out = agent.raw(
        "{\"id\":\"x\",\"op\":\"nope\"}\nnot json\n\n{\"id\":7,\"op\":\"ping\",\"x\":1}\r\n{\"id\":8,\"op\":\"ping\"}\n",
        4,
    );
    let got: Vec<(serde_json::Value, serde_json::Value)> = out
        .iter()
        .map(|a| (a["id"].clone(), a["error"]["code"].clone()))
        .collect();
    use serde_json::json;
    assert!(got.contains(&(json!("x"), json!("bad_request"))), "{got:?}");
    assert!(
        got.contains(&(json!(null), json!("bad_request"))),
        "{got:?}"
    );
    assert!(got.contains(&(json!(7), json!("bad_request"))), "{got:?}");
    assert!(got.contains(&(json!(8), json!(null))), "{got:?}");
    agent.stop();
}

#[test]
fn pipelined_requests_are_all_answered_and_keep_their_order_per_name() {
    let agent = TestAgent::start("pipeline", Fake::default(), 4096, |_| {});
    let mut c = agent.client();
    let names: Vec<String> = (0..500).map(|i| format!("n{i}")).collect();
    let out = c
        .pipeline(
            names.iter().map(|n| create(n)).collect(),
            &ProgressBar::hidden(),
        )
        .unwrap();
    assert!(out.iter().all(Result::is_ok));
    // Requests naming the same namespace take effect in the order they were sent, even a
    // create that must wait for the kernel to free the name's previous namespace.
    let out = agent.raw(
        concat!(
            "{\"id\":1,\"op\":\"create\",\"name\":\"z\"}\n",
            "{\"id\":2,\"op\":\"delete\",\"name\":\"z\"}\n",
            "{\"id\":3,\"op\":\"create\",\"name\":\"z\",\"nat\":false}\n",
            "{\"id\":4,\"op\":\"get\",\"name\":\"z\"}\n",
            "{\"id\":5,\"op\":\"create\",\"name\":\"n0\"}\n",
        ),
        5,
    );
    let mut by_id: Vec<(u64, serde_json::Value)> = out
        .into_iter()
        .map(|a| (a["id"].as_u64().unwrap(), a))
        .collect();
    by_id.sort_by_key(|(id, _)| *id);
    let oks: Vec<bool> = by_id.iter().map(|(_, a)| a["ok"] == true).collect();
    assert_eq!(oks, [true, true, true, true, false]);
    assert_eq!(by_id[3].1["result"]["nat"], false, "the second create's");
    assert_eq!(by_id[4].1["error"]["code"], "exists");
    assert_eq!(
        c.call(&List { selector: None }).unwrap().namespaces.len(),
        501
    );
    agent.stop();
}

#[test]
fn a_full_queue_answers_busy_and_loses_nothing() {
    let fake = Fake {
        create_delay: Duration::from_millis(30),
        ..Fake::default()
    };
    let agent = TestAgent::start("busy", fake, 1, |f| {
        f.queue_wait = Duration::from_millis(50)
    });
    // Several connections, so that requests compete for the one queue slot.
    let clients: Vec<_> = (0..4)
        .map(|k| {
            let socket = agent.socket.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&socket).unwrap();
                let reqs = (0..20).map(|i| create(&format!("c{k}-{i}"))).collect();
                c.pipeline(reqs, &ProgressBar::hidden()).unwrap()
            })
        })
        .collect();
    let mut ok = 0;
    let mut busy = 0;
    for t in clients {
        for r in t.join().unwrap() {
            match r {
                Ok(_) => ok += 1,
                Err(e) if e.code == "busy" => busy += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
    }
    assert_eq!(ok + busy, 80);
    assert!(busy > 0 && ok > 0, "ok {ok}, busy {busy}");
    // What was acknowledged exists; what was refused does not.
    let listed = agent
        .client()
        .call(&List { selector: None })
        .unwrap()
        .namespaces
        .len();
    assert_eq!(listed, ok);
    agent.stop();
}

#[test]
fn shutdown_answers_what_was_sent_then_closes() {
    let fake = Fake {
        create_delay: Duration::from_millis(5),
        ..Fake::default()
    };
    let agent = TestAgent::start("shutdown", fake, 4096, |_| {});
    let mut s = UnixStream::connect(&agent.socket).unwrap();
    let lines: String = (0..50)
        .map(|i| format!("{{\"id\":{i},\"op\":\"create\",\"name\":\"s{i}\"}}\n"))
        .collect();
    s.write_all(lines.as_bytes()).unwrap();
    // Make sure the server has read the lines before it is told to stop.
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut first = String::new();
    r.read_line(&mut first).unwrap();
    let socket = agent.socket.clone();
    agent.stop();
    let mut answered = 1;
    let mut line = String::new();
    while r.read_line(&mut line).unwrap() > 0 {
        let a: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(a["ok"], true, "{line}");
        answered += 1;
        line.clear();
    }
    assert_eq!(answered, 50);
    assert!(UnixStream::connect(&socket).is_err(), "no longer accepting");
}

#[test]
fn a_client_that_does_not_read_stalls_only_itself_and_gets_every_answer_whole() {
    let agent = TestAgent::start("stall", Fake::default(), 4096, |_| {});
    agent.client().call(&create("a")).unwrap();
    // Far more answers than the socket and the writer's queue hold: the server stops reading
    // this connection, so the client's writes block until it reads.
    let n = 20_000;
    let s = UnixStream::connect(&agent.socket).unwrap();
    let mut w = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let lines: String = (0..n)
            .map(|i| format!("{{\"id\":{i},\"op\":\"get\",\"name\":\"a\"}}\n"))
            .collect();
        w.write_all(lines.as_bytes()).unwrap();
    });
    std::thread::sleep(Duration::from_millis(300));
    // Meanwhile everyone else is answered.
    agent.client().call(&Ping {}).unwrap();
    let mut r = BufReader::new(s);
    let mut seen = vec![false; n];
    let mut line = String::new();
    for _ in 0..n {
        line.clear();
        r.read_line(&mut line).unwrap();
        let a: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(a["result"]["name"], "a", "{line}");
        seen[a["id"].as_u64().unwrap() as usize] = true;
    }
    assert!(seen.iter().all(|s| *s));
    sender.join().unwrap();
    agent.stop();
}
