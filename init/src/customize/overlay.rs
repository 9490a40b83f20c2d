//! Unpacking an `apkovl=` tarball (a tar.gz) into the new root, as `tar -xzf` run as root would,
//! but never outside it: every path is resolved inside the root ([`sys::InRoot`]), an entry whose
//! path or hard-link target climbs out with `..` is skipped, device nodes and fifos are skipped,
//! and setuid/setgid bits are cleared unless the tarball is signed by a trusted key. Owners,
//! modes and modification times are kept. The tar crate only parses; every write is here.
//!
//! It returns what it skipped, for the stage to log; it stops, with an error, only on a tarball it
//! cannot read or one that unpacks to more than [`LIMITS`].

use std::io::{self, Read};

use super::write::{create_dirs, normalize, writable};
use crate::sys::{self, Create, InRoot, Kind};

/// The most an overlay may unpack to: a gzip bomb stops here, not when RAM runs out.
pub struct Limits {
    pub entries: usize,
    pub bytes: u64,
}

pub const LIMITS: Limits = Limits { entries: 100_000, bytes: 256 << 20 };

/// Room in the decompressed stream for the headers of [`Limits::entries`] entries beyond their data.
const STREAM_SLACK: u64 = 64 << 20;

/// Why an entry was not unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Its path climbs out of the root.
    Outside,
    /// A hard link whose target climbs out of the root.
    LinkOutside,
    /// A character or block device node.
    Device,
    Fifo,
    /// An entry type an overlay has no business holding (sparse files, sockets...).
    Unsupported(u8),
    /// Its path is not UTF-8.
    BadName,
    /// Writing it failed or was refused (a directory in the way, a symlink...).
    Failed(String),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::Outside => f.write_str("its path leads outside the root"),
            Skip::LinkOutside => f.write_str("a hard link to a file outside the root"),
            Skip::Device => f.write_str("a device node"),
            Skip::Fifo => f.write_str("a fifo"),
            Skip::Unsupported(t) => write!(f, "an entry of tar type {:?}", char::from(*t)),
            Skip::BadName => f.write_str("its name is not UTF-8"),
            Skip::Failed(why) => f.write_str(why),
        }
    }
}

/// What unpacking did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    pub entries: usize,
    /// Each skipped entry's name and why.
    pub skipped: Vec<(String, Skip)>,
    /// Entries whose setuid/setgid bits were cleared (an unsigned tarball).
    pub cleared: usize,
}

/// Unpacks the tar.gz `bytes` into `root`. `signed`: the tarball carries a trusted signature, so
/// its setuid and setgid bits are kept.
pub fn unpack(bytes: &[u8], root: &InRoot, signed: bool, limits: &Limits) -> io::Result<Unpacked> {
    // The decompressed stream itself is bounded: the tar crate reads long names and pax headers
    // into memory before it yields their entry, so counting entries alone would not stop a bomb.
    let stream = flate2::read::GzDecoder::new(bytes).take(limits.bytes.saturating_add(STREAM_SLACK));
    let mut archive = tar::Archive::new(stream);
    let mut done = Unpacked::default();
    let mut budget = limits.bytes;
    for (n, entry) in archive.entries()?.enumerate() {
        if n >= limits.entries {
            return Err(io::Error::other(format!("it holds more than {} entries", limits.entries)));
        }
        let mut entry = entry?;
        let raw = entry.path_bytes();
        let Ok(name) = std::str::from_utf8(&raw).map(str::to_owned) else {
            done.skipped.push((String::from_utf8_lossy(&raw).into_owned(), Skip::BadName));
            continue;
        };
        let Some(rel) = normalize(&name) else {
            if name.split('/').any(|p| p == "..") {
                done.skipped.push((name, Skip::Outside));
            }
            continue; // `./`: the root itself
        };
        let size = entry.header().entry_size().unwrap_or(0);
        budget = budget
            .checked_sub(size)
            .ok_or_else(|| io::Error::other(format!("it unpacks to more than {} MiB", limits.bytes >> 20)))?;
        match one(&mut entry, &rel, root, signed) {
            Ok(Outcome::Done { cleared }) => {
                done.entries += 1;
                done.cleared += usize::from(cleared);
            }
            Ok(Outcome::Skipped(why)) => done.skipped.push((name, why)),
            Err(e) => done.skipped.push((name, Skip::Failed(e.to_string()))),
        }
    }
    Ok(done)
}

enum Outcome {
    Done { cleared: bool },
    Skipped(Skip),
}

/// The entry's permission bits, setuid/setgid cleared unless `signed`; and whether they were.
fn permissions(mode: u32, signed: bool) -> (u32, bool) {
    let mode = mode & 0o7777;
    match signed || mode & 0o6000 == 0 {
        true => (mode, false),
        false => (mode & !0o6000, true),
    }
}

fn one(entry: &mut tar::Entry<impl Read>, rel: &str, root: &InRoot, signed: bool) -> io::Result<Outcome> {
    let header = entry.header();
    let kind = header.entry_type();
    let (mode, cleared) = permissions(header.mode().unwrap_or(0o644), signed);
    let uid = header.uid().ok().and_then(|u| u32::try_from(u).ok()).unwrap_or(0);
    let gid = header.gid().ok().and_then(|g| u32::try_from(g).ok()).unwrap_or(0);
    let mtime = header.mtime().unwrap_or(0);
    let parent = rel.rsplit_once('/').map(|(p, _)| p);
    let make_parent = || parent.map_or(Ok(()), |p| create_dirs(root, p, 0o755));
    use tar::EntryType as T;
    match kind {
        T::Regular | T::Continuous => {
            make_parent()?;
            clear_the_way(root, rel)?;
            let file = root.create(rel, 0o600, Create::Truncate)?;
            io::copy(entry, &mut &file)?;
            sys::set_owner_mode(&file, uid, gid, mode)?;
            sys::set_mtime(&file, mtime)?;
        }
        T::Directory => {
            make_parent()?;
            create_dirs(root, rel, 0o755)?;
            let dir = root.dir(rel)?;
            sys::set_owner_mode(&dir, uid, gid, mode)?;
        }
        T::Symlink => {
            let Some(target) = entry.link_name_bytes() else { return Ok(Outcome::Skipped(Skip::BadName)) };
            let Ok(target) = std::str::from_utf8(&target).map(str::to_owned) else {
                return Ok(Outcome::Skipped(Skip::BadName));
            };
            make_parent()?;
            clear_the_way(root, rel)?;
            // Any target: the booted system and netinit alike resolve it inside the root.
            root.symlink(&target, rel)?;
        }
        T::Link => {
            let target = entry.link_name_bytes().map(|t| String::from_utf8_lossy(&t).into_owned());
            let Some(source) = target.as_deref().and_then(normalize) else {
                return Ok(Outcome::Skipped(Skip::LinkOutside));
            };
            make_parent()?;
            clear_the_way(root, rel)?;
            root.hard_link(&source, rel)?;
        }
        T::Char | T::Block => return Ok(Outcome::Skipped(Skip::Device)),
        T::Fifo => return Ok(Outcome::Skipped(Skip::Fifo)),
        other => return Ok(Outcome::Skipped(Skip::Unsupported(other.as_byte()))),
    }
    Ok(Outcome::Done { cleared })
}

/// Removes what stands where an entry goes, as `tar -x` does: a file, a symlink (never followed),
/// a device node. A directory stays, and the entry fails.
fn clear_the_way(root: &InRoot, rel: &str) -> io::Result<()> {
    match root.kind(rel)? {
        None => Ok(()),
        Some(Kind::Dir) => writable(root, rel),
        Some(_) => root.remove(rel),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    use super::super::write::tests::{special_node, Hostile};
    use super::*;

    /// One entry of a test tarball: its raw name, type, mode, link target and data.
    struct E<'a>(&'a str, tar::EntryType, u32, &'a str, &'a [u8]);

    /// A tar.gz of `entries`, names written raw (as a hostile archive would: `set_path` refuses `..`).
    fn tar_gz(entries: &[E]) -> Vec<u8> {
        let mut builder =
            tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for E(path, kind, mode, link, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(*mode);
            header.set_uid(1000);
            header.set_gid(1000);
            header.set_mtime(1_700_000_000);
            let old = header.as_old_mut();
            old.name[..path.len()].copy_from_slice(path.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    use tar::EntryType as T;

    fn unpack_in(h: &Hostile, bytes: &[u8], signed: bool) -> Unpacked {
        unpack(bytes, &h.in_root(), signed, &LIMITS).unwrap()
    }

    fn names(u: &Unpacked) -> Vec<(&str, String)> {
        u.skipped.iter().map(|(n, why)| (n.as_str(), why.to_string())).collect()
    }

    #[test]
    fn an_overlay_unpacks_with_its_owners_modes_and_times() {
        let h = Hostile::new("ovl-plain");
        let bytes = tar_gz(&[
            E("etc/", T::Directory, 0o755, "", b""),
            E("etc/motd", T::Regular, 0o640, "", b"hello\n"),
            E("etc/apk/world", T::Regular, 0o644, "", b"openssh\n"),
            E("etc/issue", T::Symlink, 0o777, "/etc/motd", b""),
            E("etc/motd.bak", T::Link, 0o640, "etc/motd", b""),
        ]);
        let u = unpack_in(&h, &bytes, false);
        assert_eq!((u.entries, names(&u), u.cleared), (5, vec![], 0));
        let motd = std::fs::metadata(h.root.join("etc/motd")).unwrap();
        assert_eq!(std::fs::read_to_string(h.root.join("etc/motd")).unwrap(), "hello\n");
        assert_eq!(motd.permissions().mode() & 0o7777, 0o640);
        assert_eq!(motd.mtime(), 1_700_000_000);
        if rustix::process::geteuid().is_root() {
            assert_eq!((motd.uid(), motd.gid()), (1000, 1000));
        }
        assert_eq!(std::fs::read_link(h.root.join("etc/issue")).unwrap().to_str(), Some("/etc/motd"));
        assert_eq!(std::fs::metadata(h.root.join("etc/motd.bak")).unwrap().ino(), motd.ino());
        assert!(unpack(b"not gzip", &h.in_root(), false, &LIMITS).is_err());
    }

    #[test]
    fn nothing_lands_outside_the_root() {
        let h = Hostile::new("ovl-out");
        std::fs::write(h.outside.join("secret"), "keep").unwrap();
        let secret = h.outside.join("secret");
        // The image's own symlinks out: an absolute one to a directory, a relative one climbing out.
        symlink(&h.outside, h.root.join("etc/conf.d")).unwrap();
        symlink("../../../../../../..", h.root.join("etc/up")).unwrap();
        let bytes = tar_gz(&[
            E("../escaped", T::Regular, 0o644, "", b"x"),
            E("etc/../../escaped", T::Regular, 0o644, "", b"x"),
            E("etc/conf.d/net", T::Regular, 0o644, "", b"through an absolute link"),
            E("etc/up/top", T::Regular, 0o644, "", b"through a relative link"),
            // A symlink entry out, then a file written through it.
            E("etc/out", T::Symlink, 0o777, h.outside.to_str().unwrap(), b""),
            E("etc/out/planted", T::Regular, 0o644, "", b"x"),
            // A hard link to a file outside, by `..` and by an absolute path through a symlink.
            E("etc/stolen", T::Link, 0o644, "../outside/secret", b""),
            E("etc/stolen2", T::Link, 0o644, secret.to_str().unwrap(), b""),
        ]);
        let inside = h.root.join(h.outside.strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inside).unwrap();
        let u = unpack_in(&h, &bytes, false);
        let outside_entries: Vec<_> =
            std::fs::read_dir(&h.outside).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(outside_entries, vec!["secret"], "nothing new outside");
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "keep");
        assert_eq!(std::fs::metadata(&secret).unwrap().nlink(), 1, "never hard-linked from the overlay");
        assert_eq!(std::fs::read_to_string(inside.join("net")).unwrap(), "through an absolute link");
        assert_eq!(std::fs::read_to_string(h.root.join("top")).unwrap(), "through a relative link");
        assert_eq!(std::fs::read_to_string(inside.join("planted")).unwrap(), "x");
        let skipped = names(&u);
        assert_eq!(skipped[0], ("../escaped", "its path leads outside the root".into()));
        assert_eq!(skipped[1], ("etc/../../escaped", "its path leads outside the root".into()));
        assert_eq!(skipped[2], ("etc/stolen", "a hard link to a file outside the root".into()));
        // The absolute link target is resolved inside the root, where there is no such file.
        assert_eq!(skipped[3].0, "etc/stolen2");
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert_eq!(u.entries, 4);
    }

    #[test]
    fn devices_fifos_and_setuid_bits_need_a_signature_or_are_refused() {
        let h = Hostile::new("ovl-special");
        let bytes = tar_gz(&[
            E("dev/sda", T::Block, 0o660, "", b""),
            E("dev/mem", T::Char, 0o660, "", b""),
            E("run/pipe", T::Fifo, 0o644, "", b""),
            E("usr/bin/su", T::Regular, 0o4755, "", b"#!/bin/sh\n"),
            E("usr/bin/wall", T::Regular, 0o2755, "", b"#!/bin/sh\n"),
            E("tmp/", T::Directory, 0o1777, "", b""),
        ]);
        let u = unpack_in(&h, &bytes, false);
        assert_eq!(
            names(&u),
            vec![
                ("dev/sda", "a device node".to_owned()),
                ("dev/mem", "a device node".to_owned()),
                ("run/pipe", "a fifo".to_owned())
            ]
        );
        assert_eq!((u.entries, u.cleared), (3, 2));
        let mode = |p: &str| std::fs::metadata(h.root.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!((mode("usr/bin/su"), mode("usr/bin/wall"), mode("tmp")), (0o755, 0o755, 0o1777));
        assert!(!h.root.join("dev/sda").exists() && !h.root.join("run/pipe").exists());
        let u = unpack_in(&h, &bytes, true);
        assert_eq!((u.entries, u.cleared, u.skipped.len()), (3, 0, 3), "signed: devices still refused");
        assert_eq!((mode("usr/bin/su"), mode("usr/bin/wall")), (0o4755, 0o2755));
    }

    #[test]
    fn what_stands_in_the_way_is_replaced_never_written_through() {
        let h = Hostile::new("ovl-replace");
        std::fs::write(h.outside.join("target"), "keep").unwrap();
        symlink(h.outside.join("target"), h.root.join("etc/hostname")).unwrap();
        special_node(&h.root.join("etc/fstab"));
        std::fs::create_dir_all(h.root.join("etc/passwd")).unwrap();
        let bytes = tar_gz(&[
            E("etc/hostname", T::Regular, 0o644, "", b"node\n"),
            E("etc/fstab", T::Regular, 0o644, "", b"# none\n"),
            E("etc/passwd", T::Regular, 0o644, "", b"root:x:0:0::/root:/bin/sh\n"),
        ]);
        let u = unpack_in(&h, &bytes, false);
        assert_eq!(std::fs::read_to_string(h.outside.join("target")).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(h.root.join("etc/hostname")).unwrap(), "node\n");
        assert_eq!(std::fs::read_to_string(h.root.join("etc/fstab")).unwrap(), "# none\n");
        assert_eq!(
            names(&u),
            vec![("etc/passwd", "it is a directory, which netinit does not write through".into())]
        );
    }

    #[test]
    fn a_long_name_bomb_stops_at_the_stream_limit() {
        // A GNU long-name entry of 200 MiB: the tar crate would read it all into memory.
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(T::GNULongName);
        header.set_size(200 << 20);
        header.set_cksum();
        let mut builder =
            tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        builder.append(&header, std::io::repeat(b'a').take(200 << 20)).unwrap();
        let bytes = builder.into_inner().unwrap().finish().unwrap();
        let h = Hostile::new("ovl-longname");
        let small = Limits { entries: 10, bytes: 1 << 20 };
        assert!(unpack(&bytes, &h.in_root(), false, &small).is_err());
    }

    #[test]
    fn a_bomb_stops_at_the_limits() {
        let h = Hostile::new("ovl-bomb");
        let many: Vec<String> = (0..20).map(|i| format!("etc/f{i}")).collect();
        let entries: Vec<E> = many.iter().map(|n| E(n, T::Regular, 0o644, "", b"0123456789")).collect();
        let bytes = tar_gz(&entries);
        let small = Limits { entries: 10, bytes: 1 << 20 };
        let e = unpack(&bytes, &h.in_root(), false, &small).unwrap_err();
        assert_eq!(e.to_string(), "it holds more than 10 entries");
        let tight = Limits { entries: 100, bytes: 55 };
        let e = unpack(&bytes, &h.in_root(), false, &tight).unwrap_err();
        assert_eq!(e.to_string(), "it unpacks to more than 0 MiB");
    }
}
