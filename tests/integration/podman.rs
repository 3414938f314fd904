//! Issue 15 with a real runtime: Debian's podman 4.3, CNI backend, rootful, its storage,
//! configuration and plugin directory in the sandbox's directory, running containers of an
//! image imported from a busybox rootfs (there is no registry). runc, not crun: crun refuses
//! this machine's hybrid cgroup layout.

use crate::harness::*;
use serde_json::json;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const PORT: u16 = 7501;
const IMAGE: &str = "localhost/nsagent-busybox";

struct Podman {
    /// The sandbox's holder process.
    pid: u32,
    dir: PathBuf,
}

impl Podman {
    fn new(sb: &Sandbox) -> Podman {
        let dir = sb.dir.join("podman");
        for d in ["bin", "net.d", "root", "run", "rootfs/bin"] {
            std::fs::create_dir_all(dir.join(d)).expect("podman dirs");
        }
        std::os::unix::fs::symlink(CNI_BIN, dir.join("bin/nsagent-cni")).expect("plugin symlink");
        let conflist = json!({"cniVersion":"1.0.0","name":"nsagent","plugins":[
            {"type":"nsagent-cni","socket":sb.socket,"ipMasq":true,
             "capabilities":{"portMappings":true}}]});
        std::fs::write(dir.join("net.d/10-nsagent.conflist"), conflist.to_string())
            .expect("conflist");
        let d = dir.display().to_string();
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\n\
                 # The agent's hard limits are below podman's defaults.\n\
                 default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
                 [network]\n\
                 network_backend = \"cni\"\n\
                 cni_plugin_dirs = [\"{d}/bin\"]\n\
                 network_config_dir = \"{d}/net.d\"\n\
                 [engine]\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"none\"\n\
                 runtime = \"runc\"\n"
            ),
        )
        .expect("containers.conf");
        std::fs::write(
            dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{d}/root\"\nrunroot = \"{d}/run\"\n"
            ),
        )
        .expect("storage.conf");
        std::fs::copy("/bin/busybox", dir.join("rootfs/bin/busybox")).expect("busybox-static");
        for tool in ["sh", "nc", "ip", "sleep", "echo", "cat"] {
            std::os::unix::fs::symlink("busybox", dir.join("rootfs/bin").join(tool))
                .expect("busybox link");
        }
        let pm = Podman { pid: sb.pid, dir };
        let (ok, out) = pm.sh(&format!("tar -C {d}/rootfs -c . | podman import - {IMAGE}"));
        assert!(ok, "podman import: {out}");
        pm
    }

    /// A shell command inside the sandbox with podman configured.
    fn sh(&self, script: &str) -> (bool, String) {
        let out = Command::new("nsenter")
            .args([
                "-t",
                &self.pid.to_string(),
                "-m",
                "-n",
                "--",
                "sh",
                "-c",
                script,
            ])
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .stdin(Stdio::null())
            .output()
            .expect("run podman");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    fn ok(&self, args: &str) -> String {
        let (ok, out) = self.sh(&format!("timeout 60 podman {args}"));
        assert!(ok, "podman {args}: {out}");
        out
    }
}

#[test]
fn podman_containers_get_their_network_from_nsagent_cni() {
    let mut sb = Sandbox::new();
    sb.start_echo_peer(PORT);
    let pm = Podman::new(&sb);
    let links0 = sb.host_links().len();

    // A container gets its address and reaches upstream through NAT (the listener sees the
    // uplink's address); --rm leaves nothing behind.
    let out = pm.ok(&format!(
        "run --rm --network nsagent {IMAGE} sh -c 'ip -o -4 addr show dev eth0; nc {UPSTREAM_ADDR} {PORT} </dev/null'"
    ));
    assert!(out.contains("inet 100.64."), "{out}");
    assert_eq!(out.lines().last(), Some(UPLINK_ADDR), "{out}");
    assert!(sb.listed().is_empty(), "--rm detached it");

    // A published port reaches a listener in the container.
    pm.ok(&format!(
        "run -d --name srv --network nsagent -p 8080:80 {IMAGE} sh -c 'while true; do echo hello | nc -l -p 80; done'"
    ));
    let listed = sb.listed();
    let srv = listed.values().next().expect("the container's attachment");
    assert_eq!(srv["attached"], json!(true));
    assert_eq!(srv["ports"][0]["host_port"], json!(8080));
    sb.wait_until("the published port to answer", || {
        sb.sh_status(&format!(
            "ip netns exec upstream socat -T2 - TCP:{UPLINK_ADDR}:8080,connect-timeout=2 </dev/null"
        ))
        .1
        .contains("hello")
    });
    pm.ok("rm -f srv");
    assert!(sb.listed().is_empty());
    sb.wait_until("its veth to go", || sb.host_links().len() == links0);
    assert!(sb.set_elems("ns_ifaces").is_empty(), "no element left");
    assert_eq!(
        sb.sh("ls /run/.netns-nsagent-attached /run/.netns-nsagent-labels | grep -c cni- || true")
            .trim(),
        "0",
        "no file left"
    );

    // The agent killed between ADD and DEL: after its restart the DEL still leaves nothing.
    pm.ok(&format!(
        "run -d --name c2 --network nsagent {IMAGE} sleep 1000"
    ));
    sb.kill_agent();
    sb.start_agent();
    assert_eq!(sb.listed().len(), 1, "the attachment was adopted");
    pm.ok("rm -f c2");
    assert!(sb.listed().is_empty());
    sb.wait_until("c2's veth to go", || sb.host_links().len() == links0);
    assert!(sb.set_elems("ns_ifaces").is_empty());
}
