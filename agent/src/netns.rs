//! Named network namespaces as files under the netns directory (like `ip netns`), made on the
//! calling thread: unshare(CLONE_NEWNET) + bind mount, then straight back to the host namespace.
//! No fork, no helper process: the kernel work is all there is.

use crate::model::{beside_netns_dir, Mark, LO_IFINDEX};
use crate::netlink::{NetlinkError, Request, Rtnl};
use netlink_packet_route::RouteNetlinkMessage;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::stat::{Mode, SFlag};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("netns file {0} already exists")]
    Exists(PathBuf),
    #[error("{what}: {err}")]
    Sys { what: String, err: nix::Error },
    #[error("netlink socket in the new namespace: {0}")]
    Socket(#[from] NetlinkError),
    /// A path a client gave that the agent will not wire (not a network namespace, or its own).
    #[error("{0}")]
    Refused(String),
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

    /// The warm pool's directory for the netns directory `netns_dir`: a private tmpfs beside
    /// it, so that warm namespaces are in no listing and their mounts propagate nowhere. What an
    /// earlier agent left there is kept: start-up recovery adopts it back into the pool.
    pub fn prepare_warm(netns_dir: &Path) -> Result<Self, NetnsError> {
        let dir = beside_netns_dir(netns_dir, "warm");
        private_tmpfs(&dir)?;
        let host = open(
            THREAD_NETNS,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(sys("open host netns"))?;
        Ok(NetnsDir {
            dir,
            host,
            watch: None,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the name `name` in `to`: the empty file a namespace is mounted or moved onto, made
    /// with O_EXCL, so that it is the name's lock as well (a second creator gets EEXIST).
    pub fn reserve_in(to: &NetnsDir, name: &str) -> Result<(), NetnsError> {
        let path = to.path(name);
        // mknod of a regular file: an O_EXCL create without a descriptor to close.
        match nix::sys::stat::mknod(&path, SFlag::S_IFREG, Mode::empty(), 0) {
            Ok(()) => Ok(()),
            Err(nix::Error::EEXIST) => Err(NetnsError::Exists(path)),
            Err(e) => Err(sys(format!("create {}", path.display()))(e)),
        }
    }

    /// Moves the namespace `from` of this directory onto the file [`NetnsDir::reserve_in`]
    /// made for `name` in `to`: one MS_MOVE of its mount (allowed because this directory is a
    /// private mount; a rename of a mount point is EBUSY). The empty file it leaves here is the
    /// caller's to remove ([`NetnsDir::remove_moved`]). On error the namespace is where it was
    /// and the reserved file is removed.
    pub fn move_to(&self, from: &str, to: &NetnsDir, name: &str) -> Result<(), NetnsError> {
        let (src, dst) = (self.path(from), to.path(name));
        let moved = mount(
            Some(&src),
            &dst,
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        );
        if let Err(e) = moved {
            let _ = std::fs::remove_file(&dst);
            return Err(sys(format!("move {} to {}", src.display(), dst.display()))(
                e,
            ));
        }
        // `src` is a plain empty file now: the caller removes it after the answer.
        Ok(())
    }

    /// Removes the plain file a [`NetnsDir::move_to`] left (after a crash, recovery removes
    /// whatever in the warm directory is not a namespace).
    pub fn remove_moved(&self, name: &str) {
        if let Err(e) = std::fs::remove_file(self.path(name)) {
            tracing::debug!(name, error = %e, "remove a moved warm namespace's file");
        }
    }

    /// Removes a file [`NetnsDir::reserve_in`] made and nothing was moved onto.
    pub fn unreserve(&self, name: &str) {
        let _ = std::fs::remove_file(self.path(name));
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
        NetnsDir::reserve_in(self, name)?;
        let made = self.away(|| {
            unshare(CloneFlags::CLONE_NEWNET).map_err(sys("unshare(CLONE_NEWNET)"))?;
            Self::mark_and_mount(name, &path)
        });
        made.inspect_err(|_| self.remove_path(&path))
    }

    /// A network namespace someone else made, named by `path` (`/proc/PID/ns/net`, a file a
    /// runtime bind-mounted): an fd for placing links into it and a socket inside it. Refused
    /// unless the file is a network namespace, and never the agent's own.
    pub fn open_foreign(&self, path: &Path) -> Result<NewNetns, NetnsError> {
        let refuse =
            |why: &str| NetnsError::Refused(format!("netns_path {}: {why}", path.display()));
        let fd = open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| refuse(&format!("cannot open it ({e})")))?;
        let nsfs = nix::sys::statfs::fstatfs(&fd)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC);
        // NS_GET_NSTYPE (linux/nsfs.h): which kind of namespace an nsfs file is.
        const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
        // SAFETY: an ioctl without arguments on an fd we own.
        let kind = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
        if !nsfs || kind != libc::CLONE_NEWNET {
            return Err(refuse("not a network namespace"));
        }
        let id = |f: &OwnedFd| nix::sys::stat::fstat(f).map(|s| (s.st_dev, s.st_ino));
        if id(&fd).ok() == id(&self.host).ok() {
            return Err(refuse("the agent's own network namespace"));
        }
        let rtnl = self.away(|| {
            setns(&fd, CloneFlags::CLONE_NEWNET)
                .map_err(sys(format!("setns {}", path.display())))?;
            Ok(Rtnl::open_small()?)
        })?;
        Ok(NewNetns { fd, rtnl })
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
    /// Whether `name`'s file is there and a network namespace (nsfs).
    pub fn is_namespace(&self, name: &str) -> bool {
        is_namespace_file(&self.path(name))
    }

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
        self.inspect_path(&self.path(name), f)
    }

    /// [`NetnsDir::inspect`] of the namespace at any path (an attached one's).
    pub fn inspect_path<T>(
        &self,
        path: &Path,
        f: impl FnOnce(&mut Rtnl) -> Result<T, NetlinkError>,
    ) -> Result<T, NetnsError> {
        let name = path.display();
        let file = std::fs::File::open(path).map_err(|e| NetnsError::Sys {
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
        remove_file(path);
    }

    /// [`NetnsDir::remove`] for many names at once, on up to [`UNMOUNT_THREADS`] threads: every
    /// unmount waits for an RCU grace period, which the kernel's namespace clean-up can stretch
    /// to milliseconds, and unmounts that wait together share one
    /// (docs/kernel.md#an-unmount-waits-for-an-rcu-grace-period).
    pub fn remove_all(&self, names: &[&str]) {
        let paths: Vec<PathBuf> = names.iter().map(|n| self.path(n)).collect();
        if paths.len() < 2 {
            paths.iter().for_each(|p| remove_file(p));
            return;
        }
        let per = paths.len().div_ceil(UNMOUNT_THREADS);
        std::thread::scope(|s| {
            for chunk in paths.chunks(per) {
                let spawned = std::thread::Builder::new()
                    .name("unmount".into())
                    .spawn_scoped(s, move || chunk.iter().for_each(|p| remove_file(p)));
                if spawned.is_err() {
                    // No thread to be had: do this share here, one by one.
                    chunk.iter().for_each(|p| remove_file(p));
                }
            }
        });
    }
}

/// Whether `path` is a namespace file (nsfs).
pub fn is_namespace_file(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// Most threads [`NetnsDir::remove_all`] unmounts on.
pub const UNMOUNT_THREADS: usize = 32;

/// Unmounts and unlinks one netns file; what is already gone is fine.
fn remove_file(path: &Path) {
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

fn io(what: String) -> impl FnOnce(std::io::Error) -> NetnsError {
    move |e: std::io::Error| NetnsError::Sys {
        what,
        err: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

/// Makes `base` a private tmpfs of the agent's, so that the mounts in it propagate nowhere. The
/// tmpfs is reused, never unmounted: mounting it under a shared `/run` copies it into every
/// mount namespace that receives `/run`'s mounts (e.g. systemd services), and those copies
/// stay, so it is mounted once per boot, not per start.
fn private_tmpfs(base: &Path) -> Result<(), NetnsError> {
    std::fs::create_dir_all(base).map_err(io(format!("create {}", base.display())))?;
    let private = |base: &Path| {
        mount(
            None::<&str>,
            base,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
    };
    // EINVAL: not a mount point yet.
    if private(base).is_err() {
        mount(
            Some("tmpfs"),
            base,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("mode=0700"),
        )
        .map_err(sys(format!("mount tmpfs on {}", base.display())))?;
        private(base).map_err(sys(format!("make {} private", base.display())))?;
    }
    Ok(())
}

/// Deleted namespaces kept alive until they can die together: each is bind-mounted into the
/// current generation (a tmpfs of its own) when its netns file is removed, and one lazy unmount
/// of the generation lets the kernel have all of them at once. The kernel's clean-up of a dying
/// namespace visits every namespace still alive, so namespaces that die in one batch skip each
/// other: a mass delete costs what its survivors cost, not the square of its size
/// (docs/kernel.md#deleting-in-one-kernel-batch).
///
/// Mounts, not fds: a host's open-file limit is often below the number of namespaces it runs.
/// A crash leaves the generation mounted; the next start releases it.
pub struct Graveyard {
    base: PathBuf,
    generation: u64,
    held: usize,
    since: Option<std::time::Instant>,
}

impl Graveyard {
    /// Next to the netns directory, a private tmpfs ([`private_tmpfs`]). What an earlier agent
    /// left held there (it crashed) is released first.
    pub fn open(netns_dir: &Path) -> Result<Self, NetnsError> {
        let base = beside_netns_dir(netns_dir, "dying");
        private_tmpfs(&base)?;
        let entries = std::fs::read_dir(&base).map_err(io(format!("read {}", base.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = umount2(&path, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(&path);
        }
        Ok(Graveyard {
            base,
            generation: 0,
            held: 0,
            since: None,
        })
    }

    fn current(&self) -> PathBuf {
        self.base.join(self.generation.to_string())
    }

    /// Keeps the namespace mounted at `path` alive past the removal of that file. `false`: it
    /// could not (e.g. the host's mount limit), and the namespace dies when its file goes.
    pub fn hold(&mut self, path: &Path) -> bool {
        let gen = self.current();
        if self.held == 0 {
            let made = std::fs::create_dir(&gen)
                .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)));
            let mounted = made.and_then(|()| {
                mount(
                    Some("tmpfs"),
                    &gen,
                    Some("tmpfs"),
                    MsFlags::empty(),
                    Some("mode=0700"),
                )
            });
            if let Err(e) = mounted {
                tracing::debug!(path = %gen.display(), error = %e, "cannot start a graveyard generation");
                let _ = std::fs::remove_dir(&gen);
                return false;
            }
            self.since = Some(std::time::Instant::now());
        }
        // Numbered, not named: a name can be deleted, made and deleted again meanwhile.
        let target = gen.join(self.held.to_string());
        let held = std::fs::File::create(&target)
            .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
            .and_then(|_| {
                mount(
                    Some(path),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
            });
        match held {
            Ok(()) => {
                self.held += 1;
                true
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "cannot hold a deleted namespace");
                if self.held == 0 {
                    self.release();
                }
                false
            }
        }
    }

    /// How many are held, and since when.
    pub fn held(&self) -> (usize, Option<std::time::Instant>) {
        (self.held, self.since)
    }

    /// Lets every held namespace die at once: one lazy unmount of the generation drops all of
    /// its mounts in one kernel call. Returns how many it released.
    pub fn release(&mut self) -> usize {
        if self.since.is_none() {
            return 0;
        }
        let gen = self.current();
        if let Err(e) = umount2(&gen, MntFlags::MNT_DETACH) {
            if e != nix::Error::EINVAL && e != nix::Error::ENOENT {
                tracing::warn!(path = %gen.display(), error = %e, "release the graveyard");
            }
        }
        let _ = std::fs::remove_dir(&gen);
        let n = std::mem::take(&mut self.held);
        self.since = None;
        self.generation += 1;
        n
    }
}

impl Drop for Graveyard {
    fn drop(&mut self) {
        self.release();
    }
}
