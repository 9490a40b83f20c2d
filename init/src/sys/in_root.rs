//! A directory whose paths are resolved inside it, as they would be after `chroot` to it: every
//! lookup is openat2(2) with `RESOLVE_IN_ROOT` (absolute symlinks start again at the directory, `..`
//! never climbs above it) and `RESOLVE_NO_MAGICLINKS` (no `/proc/self/fd` tricks). Writes never
//! follow a final symlink. This is how netinit writes into the new root, whose symlinks the image or
//! an `apkovl=` overlay chose.
//!
//! Only the syscalls live here; which files to write, and what to refuse, is `customize`'s.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// What a path names, without following a final symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A device node, a fifo or a socket: never written through.
    Special,
}

/// How [`InRoot::create`] opens a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// `O_TRUNC`: replace what the file held.
    Truncate,
    /// `O_APPEND`.
    Append,
}

/// An open directory that paths are resolved inside.
pub struct InRoot {
    fd: OwnedFd,
}

impl InRoot {
    /// open(2) of `dir`, `O_PATH | O_DIRECTORY`.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let fd = rustix::fs::open(dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(InRoot { fd })
    }

    fn openat2(&self, rel: &str, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
        let rel = if rel.is_empty() { "." } else { rel };
        loop {
            match rustix::fs::openat2(&self.fd, rel, flags | OFlags::CLOEXEC, mode, RESOLVE) {
                // openat2(2): EAGAIN when a concurrent rename raced the lookup; nothing renames here.
                Err(Errno::AGAIN | Errno::INTR) => continue,
                other => return other,
            }
        }
    }

    /// What `rel` is, its final symlink not followed; `None` when nothing is there:
    /// openat2(2) `O_PATH | O_NOFOLLOW`, then fstat(2).
    pub fn kind(&self, rel: &str) -> io::Result<Option<Kind>> {
        let fd = match self.openat2(rel, OFlags::PATH | OFlags::NOFOLLOW, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(Some(match FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Special,
        }))
    }

    /// The directory `rel` (symlinks followed inside the root), open for reading its entries or
    /// changing its mode: openat2(2) `O_RDONLY | O_DIRECTORY`.
    pub fn dir(&self, rel: &str) -> io::Result<OwnedFd> {
        Ok(self.openat2(rel, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?)
    }

    /// mkdirat(2) of the last component of `rel` in its parent, resolved inside the root. `EEXIST`
    /// is the caller's to judge.
    pub fn mkdir(&self, rel: &str, mode: u32) -> io::Result<()> {
        let (parent, name) = split(rel)?;
        let dir = self.openat2(parent, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
        Ok(rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(mode))?)
    }

    /// mkdir -p: creates the missing directories of `rel` (`a/b/c`, no `..`) with `mode`, each
    /// resolved inside the root. Existing ones, and symlinks to directories, stay as they are.
    pub fn create_dirs(&self, rel: &str, mode: u32) -> io::Result<()> {
        let mut end = 0;
        while end < rel.len() {
            end = rel[end..].find('/').map_or(rel.len(), |i| end + i);
            match self.mkdir(&rel[..end], mode) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(e),
            }
            end += 1;
        }
        Ok(())
    }

    /// Opens the regular file `rel` for writing, creating it with `mode`: openat2(2) with
    /// `O_WRONLY | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK`. A final symlink fails with `ELOOP`,
    /// a directory with `EISDIR`, a fifo without a reader with `ENXIO`; anything else that is not a
    /// regular file once open, with `EPERM`. (Callers look with [`InRoot::kind`] first, so as not to
    /// open a device node at all.)
    pub fn create(&self, rel: &str, mode: u32, how: Create) -> io::Result<File> {
        let how = match how {
            Create::Truncate => OFlags::TRUNC,
            Create::Append => OFlags::APPEND,
        };
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::NONBLOCK | how;
        let fd = self.openat2(rel, flags, Mode::from_raw_mode(mode))?;
        match FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) {
            FileType::RegularFile => Ok(File::from(fd)),
            _ => Err(Errno::PERM.into()),
        }
    }

    /// symlinkat(2): `rel` becomes a symlink holding `target` (never followed here).
    pub fn symlink(&self, target: &str, rel: &str) -> io::Result<()> {
        let (parent, name) = split(rel)?;
        let dir = self.openat2(parent, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
        Ok(rustix::fs::symlinkat(target, &dir, name)?)
    }

    /// linkat(2): `rel` becomes a hard link to `existing`, both resolved inside the root, neither's
    /// final symlink followed. The source is named through `/proc/self/fd` (linkat(2)'s way for an
    /// `O_PATH` descriptor without `CAP_DAC_READ_SEARCH`).
    pub fn hard_link(&self, existing: &str, rel: &str) -> io::Result<()> {
        let source = self.openat2(existing, OFlags::PATH | OFlags::NOFOLLOW, Mode::empty())?;
        let (parent, name) = split(rel)?;
        let dir = self.openat2(parent, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
        let proc_path = format!("/proc/self/fd/{}", source.as_raw_fd());
        Ok(rustix::fs::linkat(rustix::fs::CWD, proc_path.as_str(), &dir, name, AtFlags::SYMLINK_FOLLOW)?)
    }

    /// unlinkat(2) of `rel`, which must not be a directory.
    pub fn remove(&self, rel: &str) -> io::Result<()> {
        let (parent, name) = split(rel)?;
        let dir = self.openat2(parent, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
        Ok(rustix::fs::unlinkat(&dir, name, AtFlags::empty())?)
    }
}

/// fchown(2) then fchmod(2) (in that order: chown clears the setuid bit) of an open file.
pub fn set_owner_mode(fd: impl AsFd, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    let (uid, gid) = (rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(gid));
    rustix::fs::fchown(&fd, Some(uid), Some(gid))?;
    Ok(rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?)
}

/// fchmod(2) of an open file.
pub fn set_mode(fd: impl AsFd, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?)
}

/// futimens(2): the file's access and modification times, in seconds since 1970.
pub fn set_mtime(fd: impl AsFd, seconds: u64) -> io::Result<()> {
    let t = rustix::fs::Timespec { tv_sec: i64::try_from(seconds).unwrap_or(i64::MAX), tv_nsec: 0 };
    Ok(rustix::fs::futimens(&fd, &rustix::fs::Timestamps { last_access: t, last_modification: t })?)
}

/// `a/b/c` as (`a/b`, `c`); a path without a last name (``, `.`, `a/..`) is `EINVAL`.
fn split(rel: &str) -> io::Result<(&str, &str)> {
    let rel = rel.trim_end_matches('/');
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    match name {
        "" | "." | ".." => Err(Errno::INVAL.into()),
        _ => Ok((parent, name)),
    }
}
