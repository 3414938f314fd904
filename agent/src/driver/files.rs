//! What the agent keeps about a namespace that the kernel has no place for, one small JSON file
//! per namespace in a directory beside the netns directory, on the same tmpfs: it survives the
//! agent's restarts and `kill -9`, and goes with the namespaces at reboot. Only the agent reads
//! these files.
//!
//! - labels (`/run/.netns-nsagent-labels/NAME`): 32 key/value pairs do not fit an ifalias (255
//!   bytes, and it carries the ownership mark already);
//! - attachments (`/run/.netns-nsagent-attached/NAME`): which namespace file an `attach` wired,
//!   and which namespace that was (device and inode), so that a restart finds it again.

use crate::model::{labels, validate_name, Labels};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// Creates the directory (0700) if it is not there.
    pub fn open(dir: PathBuf) -> io::Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        Ok(FileStore { dir })
    }

    /// Stores `value` as `name`'s file, atomically (a reader sees the old one or the new one).
    pub fn write<T: Serialize>(&self, name: &str, value: &T) -> io::Result<()> {
        // Names start with a letter or digit: a dot file cannot be anyone's.
        let tmp = self.dir.join(format!(".{name}.tmp"));
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&serde_json::to_vec(value)?)?;
        }
        std::fs::rename(&tmp, self.dir.join(name))
    }

    /// `name`'s file, if it is there and parses; one that does not (not the agent's) says so.
    pub fn read<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        let path = self.dir.join(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "read");
                return None;
            }
        };
        serde_json::from_slice(&bytes)
            .inspect_err(|_| tracing::warn!(path = %path.display(), "not the agent's; ignored"))
            .ok()
    }

    /// Removes `name`'s file (none is fine).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        match std::fs::remove_file(self.dir.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Names that have a file.
    pub fn names(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| validate_name(n).is_ok())
            .collect()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `name`'s labels: none without a file, and none (said) if the file is not valid labels.
    pub fn labels(&self, name: &str) -> Labels {
        self.read::<Labels>(name)
            .filter(|l| labels::validate(l).is_ok())
            .unwrap_or_default()
    }

    /// Stores the labels of a namespace that is new under `name`. No labels need no file and no
    /// removal (a cold syscall on the claim path): a name without a namespace has no labels file,
    /// since a delete removes it and a start removes those of namespaces that are gone.
    pub fn new_labels(&self, name: &str, l: &Labels) -> io::Result<()> {
        match l.is_empty() {
            true => Ok(()),
            false => self.write(name, l),
        }
    }

    /// Stores `name`'s labels; none at all is no file.
    pub fn set_labels(&self, name: &str, l: &Labels) -> io::Result<()> {
        if l.is_empty() {
            self.remove(name)
        } else {
            self.write(name, l)
        }
    }
}

/// What an attachment's file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub netns_path: String,
    /// The namespace the path led to when it was attached (`st_dev`, `st_ino` of the nsfs
    /// file): a path like `/proc/PID/ns/net` may lead elsewhere later.
    pub dev: u64,
    pub ino: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_replace_and_remove() {
        let d = std::env::temp_dir().join(format!("nsagent-files-{}", std::process::id()));
        let s = FileStore::open(d.clone()).unwrap();
        let mut l = Labels::new();
        l.insert("team".into(), "ci".into());
        s.set_labels("a", &l).unwrap();
        assert_eq!(s.labels("a"), l);
        assert_eq!(s.names(), vec!["a".to_string()]);
        l.insert("job".into(), "42".into());
        s.set_labels("a", &l).unwrap();
        assert_eq!(s.labels("a"), l);
        s.set_labels("a", &Labels::new()).unwrap();
        assert!(s.labels("a").is_empty());
        assert!(s.names().is_empty());
        std::fs::write(d.join("b"), b"{\"-bad\":\"x\"}").unwrap();
        assert!(s.labels("b").is_empty(), "invalid labels are none");
        let at = Attachment {
            netns_path: "/proc/1/ns/net".into(),
            dev: 4,
            ino: 4026531840,
        };
        s.write("c", &at).unwrap();
        assert_eq!(s.read::<Attachment>("c"), Some(at));
        assert_eq!(s.read::<Attachment>("b"), None);
        s.remove("b").unwrap();
        s.remove("never").unwrap();
        std::fs::remove_dir_all(d).unwrap();
    }
}
