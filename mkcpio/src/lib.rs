//! A reproducible writer of "newc" (SVR4, magic `070701`) cpio archives, the format the Linux kernel
//! unpacks as an initramfs (`Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Reproducible means the archive depends only on what was added: entries are written sorted by path,
//! parents before children, with uid/gid 0, one fixed mtime and inode numbers counted from 1.
//! It deliberately does not read the file system, compress, or write hard links: the caller decides
//! what goes in, and compression is a separate layer around the writer.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};

/// What one archive entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    CharDevice { major: u32, minor: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: Kind,
    /// Permission bits only (`0o755`); the file type bits come from `kind`.
    perm: u32,
}

/// A path that cannot stand in an initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    Empty,
    NotRelative(String),
    DotComponent(String),
    /// The path, or one of its parents, was already added as something other than a directory.
    Conflict(String),
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Empty => write!(f, "an archive path is empty"),
            PathError::NotRelative(p) => write!(f, "archive path {p:?} must not start with '/'"),
            PathError::DotComponent(p) => {
                write!(f, "archive path {p:?} has an empty, '.' or '..' component")
            }
            PathError::Conflict(p) => write!(f, "archive path {p:?} was already added as another kind"),
        }
    }
}

impl std::error::Error for PathError {}

/// An archive being assembled in memory. Parent directories are added on demand (mode 0755).
#[derive(Debug, Clone, Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
    mtime: u32,
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

impl Archive {
    /// An empty archive whose entries all carry `mtime` (seconds since the epoch; 0 is usual,
    /// `SOURCE_DATE_EPOCH` is the other common choice).
    pub fn new(mtime: u32) -> Self {
        Archive { entries: BTreeMap::new(), mtime }
    }

    pub fn dir(&mut self, path: &str, perm: u32) -> Result<(), PathError> {
        self.add(path, Kind::Dir, perm)
    }

    pub fn file(&mut self, path: &str, perm: u32, data: Vec<u8>) -> Result<(), PathError> {
        self.add(path, Kind::File(data), perm)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), PathError> {
        self.add(path, Kind::Symlink(target.to_owned()), 0o777)
    }

    pub fn char_device(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> Result<(), PathError> {
        self.add(path, Kind::CharDevice { major, minor }, perm)
    }

    /// Adds or replaces `path`. Replacing a directory by another kind, or putting anything below a
    /// non-directory, is refused.
    pub fn add(&mut self, path: &str, kind: Kind, perm: u32) -> Result<(), PathError> {
        validate(path)?;
        let mut parent = String::new();
        for component in path.split('/').collect::<Vec<_>>().split_last().map_or(&[][..], |(_, p)| p) {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(component);
            match self.entries.get(&parent) {
                Some(Entry { kind: Kind::Dir, .. }) => {}
                Some(_) => return Err(PathError::Conflict(parent)),
                None => {
                    self.entries.insert(parent.clone(), Entry { kind: Kind::Dir, perm: 0o755 });
                }
            }
        }
        match (self.entries.get(path), &kind) {
            (Some(Entry { kind: Kind::Dir, .. }), Kind::Dir) | (None, _) => {}
            (Some(Entry { kind: Kind::Dir, .. }), _) | (Some(_), Kind::Dir) => {
                return Err(PathError::Conflict(path.to_owned()))
            }
            (Some(_), _) => {}
        }
        self.entries.insert(path.to_owned(), Entry { kind, perm: perm & 0o7777 });
        Ok(())
    }

    /// The paths in the order they will be written.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Each entry in the order it will be written: path, kind and permission bits.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Kind, u32)> {
        self.entries.iter().map(|(path, e)| (path.as_str(), &e.kind, e.perm))
    }

    /// Writes the archive, trailer included. The output is a pure function of the entries and mtime.
    pub fn write_to<W: Write>(&self, out: &mut W) -> io::Result<u64> {
        let mut written = 0u64;
        for (ino, (path, entry)) in (1u32..).zip(&self.entries) {
            let (mode, data, nlink, rdev): (u32, &[u8], u32, (u32, u32)) = match &entry.kind {
                Kind::Dir => (S_IFDIR, &[], 2, (0, 0)),
                Kind::File(data) => (S_IFREG, data, 1, (0, 0)),
                Kind::Symlink(target) => (S_IFLNK, target.as_bytes(), 1, (0, 0)),
                Kind::CharDevice { major, minor } => (S_IFCHR, &[], 1, (*major, *minor)),
            };
            let header = Header {
                ino,
                mode: mode | entry.perm,
                nlink,
                mtime: self.mtime,
                filesize: u32::try_from(data.len()).map_err(|_| {
                    io::Error::other(format!("{path}: larger than 4 GiB, which newc cannot hold"))
                })?,
                rdev,
            };
            written += write_entry(out, &header, path, data)?;
        }
        let trailer = Header { ino: 0, mode: 0, nlink: 1, mtime: 0, filesize: 0, rdev: (0, 0) };
        written += write_entry(out, &trailer, "TRAILER!!!", &[])?;
        Ok(written)
    }
}

fn validate(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.starts_with('/') {
        return Err(PathError::NotRelative(path.to_owned()));
    }
    if path.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(PathError::DotComponent(path.to_owned()));
    }
    Ok(())
}

struct Header {
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    filesize: u32,
    rdev: (u32, u32),
}

/// One newc record: 110 bytes of header, the NUL-terminated name padded to 4 bytes, the data padded to 4.
fn write_entry<W: Write>(out: &mut W, h: &Header, name: &str, data: &[u8]) -> io::Result<u64> {
    let namesize = name.len() + 1;
    let fields =
        [h.ino, h.mode, 0, 0, h.nlink, h.mtime, h.filesize, 0, 0, h.rdev.0, h.rdev.1, namesize as u32, 0];
    let mut header = String::with_capacity(110);
    header.push_str("070701");
    for field in fields {
        header.push_str(&format!("{field:08X}"));
    }
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    let name_pad = pad4(110 + namesize);
    out.write_all(&[0u8; 4][..1 + name_pad])?;
    out.write_all(data)?;
    let data_pad = pad4(data.len());
    out.write_all(&[0u8; 3][..data_pad])?;
    Ok((110 + namesize + name_pad + data.len() + data_pad) as u64)
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(a: &Archive) -> Vec<u8> {
        let mut out = Vec::new();
        let n = a.write_to(&mut out).unwrap();
        assert_eq!(n as usize, out.len());
        out
    }

    #[test]
    fn empty_archive_is_only_the_trailer() {
        let out = bytes(&Archive::new(0));
        let expected = "07070100000000000000000000000000000000000000010000000000000000000000000000000000000000000000000000000B00000000TRAILER!!!\0\0\0\0";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn records_are_aligned_to_four_bytes() {
        for name in ["a", "ab", "abc", "abcd", "abcde"] {
            for len in 0..6 {
                let mut a = Archive::new(0);
                a.file(name, 0o644, vec![7; len]).unwrap();
                let out = bytes(&a);
                assert_eq!(out.len() % 4, 0, "{name} {len}");
                let trailer = out.windows(6).rposition(|w| w == b"070701").unwrap();
                assert_eq!(trailer % 4, 0, "{name} {len}");
            }
        }
    }

    #[test]
    fn parents_are_created_and_sorted_first() {
        let mut a = Archive::new(0);
        a.file("lib/modules/6.1/kernel/loop.ko", 0o644, vec![1]).unwrap();
        a.file("init", 0o755, vec![2]).unwrap();
        a.char_device("dev/console", 0o600, 5, 1).unwrap();
        let paths: Vec<_> = a.paths().collect();
        assert_eq!(
            paths,
            [
                "dev",
                "dev/console",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/6.1",
                "lib/modules/6.1/kernel",
                "lib/modules/6.1/kernel/loop.ko"
            ]
        );
    }

    #[test]
    fn output_does_not_depend_on_insertion_order() {
        let mut a = Archive::new(0);
        a.file("b", 0o644, b"x".to_vec()).unwrap();
        a.file("a/c", 0o644, b"y".to_vec()).unwrap();
        let mut b = Archive::new(0);
        b.file("a/c", 0o644, b"y".to_vec()).unwrap();
        b.file("b", 0o644, b"x".to_vec()).unwrap();
        assert_eq!(bytes(&a), bytes(&b));
    }

    #[test]
    fn header_fields() {
        let mut a = Archive::new(0x1234);
        a.char_device("console", 0o600, 5, 1).unwrap();
        let out = bytes(&a);
        let field = |i: usize| std::str::from_utf8(&out[6 + 8 * i..14 + 8 * i]).unwrap().to_owned();
        assert_eq!(field(0), "00000001"); // ino
        assert_eq!(field(1), format!("{:08X}", 0o020_600)); // mode
        assert_eq!(field(5), "00001234"); // mtime
        assert_eq!(field(9), "00000005"); // rdevmajor
        assert_eq!(field(10), "00000001"); // rdevminor
        assert_eq!(field(11), "00000008"); // namesize, NUL included
    }

    #[test]
    fn bad_paths_are_refused() {
        let check = |path: &str, expected: PathError| {
            assert_eq!(Archive::new(0).file(path, 0o644, vec![]), Err(expected));
        };
        check("", PathError::Empty);
        check("/init", PathError::NotRelative("/init".into()));
        check("a//b", PathError::DotComponent("a//b".into()));
        check("a/../b", PathError::DotComponent("a/../b".into()));
        check("./a", PathError::DotComponent("./a".into()));
    }

    #[test]
    fn conflicts_are_refused() {
        let mut a = Archive::new(0);
        a.file("etc", 0o644, vec![]).unwrap();
        assert_eq!(a.file("etc/hosts", 0o644, vec![]), Err(PathError::Conflict("etc".into())));
        assert_eq!(a.dir("etc", 0o755), Err(PathError::Conflict("etc".into())));
        let mut b = Archive::new(0);
        b.dir("etc", 0o755).unwrap();
        assert_eq!(b.file("etc", 0o644, vec![]), Err(PathError::Conflict("etc".into())));
        b.dir("etc", 0o700).unwrap();
        b.file("etc/x", 0o644, vec![1]).unwrap();
        b.file("etc/x", 0o644, vec![2]).unwrap();
    }
}
