//! Named network namespaces as files under the netns directory (like `ip netns`), made on the
//! calling thread: unshare(CLONE_NEWNET) + bind mount, then straight back to the host namespace.
//! No fork, no helper process: the kernel work is all there is.

use crate::netlink::{NetlinkError, Rtnl};
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
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
        Ok(NetnsDir {
            dir: dir.to_path_buf(),
            host,
        })
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
        let made = self.enter_new_and_mount(&path);
        // Whatever happened, the thread goes back to the host namespace. If it cannot, every
        // later step would act in the wrong namespace: stopping is the only safe answer.
        if let Err(e) = setns(&self.host, CloneFlags::CLONE_NEWNET) {
            tracing::error!(error = %e, "cannot return to the host network namespace");
            std::process::abort();
        }
        match made {
            Ok((fd, rtnl)) => Ok(NewNetns { fd, rtnl }),
            Err(e) => {
                self.remove_path(&path);
                Err(e)
            }
        }
    }

    fn enter_new_and_mount(&self, path: &Path) -> Result<(OwnedFd, Rtnl), NetnsError> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(sys("unshare(CLONE_NEWNET)"))?;
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
        let rtnl = Rtnl::open()?;
        Ok((fd, rtnl))
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

/// Turns on IPv4 forwarding in the agent's namespace. procfs is the kernel's only interface for
/// this switch (no netlink message sets it).
pub fn enable_ipv4_forwarding() -> std::io::Result<()> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", b"1")
}
