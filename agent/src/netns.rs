//! Named network namespaces as files under the netns directory (like `ip netns`), made on the
//! calling thread: unshare(CLONE_NEWNET) + bind mount, then straight back to the host namespace.
//! No fork, no helper process: the kernel work is all there is.

use crate::model::{Mark, LO_IFINDEX};
use crate::netlink::{NetlinkError, Request, Rtnl};
use netlink_packet_route::RouteNetlinkMessage;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::stat::Mode;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("netns file {0} already exists")]
    Exists(PathBuf),
    #[error("{what}: {err}")]
    Sys { what: String, err: nix::Error },
    #[error("netlink socket in the new namespace: {0}")]
    Socket(#[from] NetlinkError),
}

fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> NetnsError {
    let what = what.into();
    move |err| NetnsError::Sys { what, err }
}

const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// A namespace just made: its file, an fd for placing links into it, and a netlink socket
/// inside it for configuring them.
pub struct NewNetns {
    pub fd: OwnedFd,
    pub rtnl: Rtnl,
}

pub struct NetnsDir {
    dir: PathBuf,
    host: OwnedFd,
    /// Deletions in the directory: how a `ip netns del` by someone else is noticed.
    watch: Option<Inotify>,
}

impl NetnsDir {
    /// Creates the directory and makes it a shared mount point, as `ip netns` does, so namespaces
    /// mounted here are visible from other mount namespaces (e.g. systemd services, containers).
    /// Remembers the calling thread's network namespace as "the host".
    pub fn prepare(dir: &Path) -> Result<Self, NetnsError> {
        std::fs::create_dir_all(dir).map_err(|e| NetnsError::Sys {
            what: format!("create {}", dir.display()),
            err: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
        if mount(None::<&str>, dir, None::<&str>, shared, None::<&str>).is_err() {
            // Not a mount point yet: bind it onto itself, then share it.
            mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(sys(format!("bind-mount {} onto itself", dir.display())))?;
            mount(None::<&str>, dir, None::<&str>, shared, None::<&str>)
                .map_err(sys(format!("make {} a shared mount", dir.display())))?;
        }
        let host = open(
            THREAD_NETNS,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(sys("open host netns"))?;
        let watch = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .and_then(|i| {
                i.add_watch(dir, AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM)?;
                Ok(i)
            })
            .map_err(|e| tracing::warn!(error = %e, "cannot watch the netns directory"))
            .ok();
        Ok(NetnsDir {
            dir: dir.to_path_buf(),
            host,
            watch,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Names removed from the directory since the last call (by anyone, the agent included);
    /// names whose file exists again are left out.
    pub fn deleted(&mut self) -> Vec<String> {
        let Some(w) = &self.watch else { return vec![] };
        let mut out = vec![];
        while let Ok(events) = w.read_events() {
            if events.is_empty() {
                break;
            }
            for e in events {
                if let Some(n) = e.name.as_ref().and_then(|n| n.to_str()) {
                    out.push(n.to_string());
                }
            }
        }
        out.retain(|n| !self.path(n).exists());
        out
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Makes the named namespace. On error nothing is left behind and the thread is back home.
    pub fn create(&self, name: &str) -> Result<NewNetns, NetnsError> {
        let path = self.path(name);
        // O_EXCL: the file is the name's lock as well; a second creator gets EEXIST.
        match open(
            &path,
            OFlag::O_RDONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => drop(fd),
            Err(nix::Error::EEXIST) => return Err(NetnsError::Exists(path)),
            Err(e) => return Err(sys(format!("create {}", path.display()))(e)),
        }
        let made = self.away(|| {
            unshare(CloneFlags::CLONE_NEWNET).map_err(sys("unshare(CLONE_NEWNET)"))?;
            Self::mark_and_mount(name, &path)
        });
        made.inspect_err(|_| self.remove_path(&path))
    }

    /// Runs `f`, which may switch the calling thread into another network namespace, then
    /// brings the thread back to the host namespace. If it cannot come back, every later step
    /// would act in the wrong namespace: aborting is the only safe answer.
    fn away<T>(&self, f: impl FnOnce() -> Result<T, NetnsError>) -> Result<T, NetnsError> {
        let out = f();
        if let Err(e) = setns(&self.host, CloneFlags::CLONE_NEWNET) {
            tracing::error!(error = %e, "cannot return to the host network namespace");
            std::process::abort();
        }
        out
    }

    /// Inside a fresh namespace: marks it as ours, then gives it its name (the bind mount).
    fn mark_and_mount(name: &str, path: &Path) -> Result<NewNetns, NetnsError> {
        // Mark the namespace as ours before it gets a name: a crash after the bind mount must
        // leave something recovery can recognise (lo's ifalias).
        let mut rtnl = Rtnl::open_small()?;
        let mark = rtnetlink::LinkUnspec::new_with_index(LO_IFINDEX)
            .alias(Mark::lo(name))
            .build();
        if let Some(Err(e)) = rtnl
            .pipeline(vec![Request::change(RouteNetlinkMessage::SetLink(mark))])
            .pop()
        {
            return Err(NetnsError::Socket(e));
        }
        mount(
            Some(THREAD_NETNS),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys(format!("bind-mount netns onto {}", path.display())))?;
        let fd = open(
            THREAD_NETNS,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(sys("open new netns"))?;
        Ok(NewNetns { fd, rtnl })
    }

    /// Names in the directory, with whether each is a mounted network namespace.
    pub fn list(&self) -> std::io::Result<Vec<(String, bool)>> {
        let mut out = vec![];
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            let Some(name) = e.file_name().to_str().map(String::from) else {
                continue;
            };
            let nsfs = nix::sys::statfs::statfs(&e.path())
                .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
                .unwrap_or(false);
            out.push((name, nsfs));
        }
        Ok(out)
    }

    /// Runs `f` with a netlink socket inside the named namespace; the thread is back home after.
    pub fn inspect<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Rtnl) -> Result<T, NetlinkError>,
    ) -> Result<T, NetnsError> {
        let path = self.path(name);
        let file = std::fs::File::open(&path).map_err(|e| NetnsError::Sys {
            what: format!("open {}", path.display()),
            err: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        let mut rtnl = self.away(|| {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(sys(format!("setns {name}")))?;
            Ok(Rtnl::open_small()?)
        })?;
        Ok(f(&mut rtnl)?)
    }

    /// Unmounts and unlinks the namespace's file. The kernel then frees the namespace, and the
    /// veth pair with it, in the background (once nobody else holds it open).
    pub fn remove(&self, name: &str) {
        self.remove_path(&self.path(name));
    }

    fn remove_path(&self, path: &Path) {
        if let Err(e) = umount2(path, MntFlags::MNT_DETACH) {
            if e != nix::Error::EINVAL && e != nix::Error::ENOENT {
                tracing::warn!(path = %path.display(), error = %e, "umount netns");
            }
        }
        if let Err(e) = std::fs::remove_file(path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "unlink netns");
            }
        }
    }
}

/// Lets one interface forward IPv6, and only it (`force_forwarding`, kernel 6.17+), instead of the
/// host-wide `conf/all/forwarding`. procfs is the kernel's only switch for this.
pub fn force_ipv6_forwarding(ifname: &str) -> std::io::Result<()> {
    std::fs::write(
        format!("/proc/sys/net/ipv6/conf/{ifname}/force_forwarding"),
        b"1",
    )
}

/// Turns on IPv4 forwarding in the agent's namespace. procfs is the kernel's only interface for
/// this switch (no netlink message sets it).
pub fn enable_ipv4_forwarding() -> std::io::Result<()> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", b"1")
}
