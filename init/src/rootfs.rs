//! The rootfs stage: turn the downloaded image into the new root. Check the squashfs superblock, attach the
//! file read-only to a loop device, mount it, and put a tmpfs-backed overlay on top, so that the
//! booted system can write anywhere and every write lives in RAM.
//!
//! Layout, all under `/run/netinit` so the booted system can see it after `/run` is moved:
//! `lower/` (the squashfs, read-only), `rw/upper` and `rw/work` (the overlay's writable tmpfs);
//! the overlay itself is mounted on `/newroot`.
//!
//! The superblock check, the check that the image is a root and not Alpine's modules-only modloop,
//! and the mount plan are pure; [`assemble`] carries the plan out.

use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};

use rustix::mount::MountFlags;

use crate::cmdline::Size;
use crate::sys;

pub const LOWER: &str = "/run/netinit/lower";
pub const RW: &str = "/run/netinit/rw";
pub const NEW_ROOT: &str = "/newroot";

const SQUASHFS_MAGIC: u32 = 0x7371_7368; // "hsqs"
const SUPERBLOCK_LEN: usize = 96;

/// What the superblock says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Squashfs {
    pub bytes_used: u64,
    pub block_size: u32,
    pub compression: &'static str,
    pub inodes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotSquashfs {
    #[error("it is {0} bytes long, shorter than a squashfs superblock")]
    TooShort(usize),
    #[error("it does not start with the squashfs magic \"hsqs\" but with {0}")]
    BadMagic(String),
    #[error("it is squashfs version {0}.{1}; Linux mounts version 4.0")]
    Version(u16, u16),
    #[error("its block size {0} is not a power of two from 4 KiB to 1 MiB")]
    BlockSize(u32),
    #[error("it uses unknown compression {0}")]
    Compression(u16),
    #[error("it is truncated: the superblock says {bytes_used} bytes, the file has {file_len}")]
    Truncated { bytes_used: u64, file_len: u64 },
}

/// Checks the first bytes of an image file of `file_len` bytes (squashfs-tools' `squashfs_fs.h`).
pub fn check_superblock(head: &[u8], file_len: u64) -> Result<Squashfs, NotSquashfs> {
    if head.len() < SUPERBLOCK_LEN {
        return Err(NotSquashfs::TooShort(head.len()));
    }
    let u16_at = |i: usize| u16::from_le_bytes([head[i], head[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    if u32_at(0) != SQUASHFS_MAGIC {
        return Err(NotSquashfs::BadMagic(describe_start(head)));
    }
    let (major, minor) = (u16_at(28), u16_at(30));
    if (major, minor) != (4, 0) {
        return Err(NotSquashfs::Version(major, minor));
    }
    let block_size = u32_at(12);
    if !block_size.is_power_of_two()
        || !(4096..=1 << 20).contains(&block_size)
        || u32::from(u16_at(22)) != block_size.trailing_zeros()
    {
        return Err(NotSquashfs::BlockSize(block_size));
    }
    let compression = match u16_at(20) {
        1 => "gzip",
        2 => "lzma",
        3 => "lzo",
        4 => "xz",
        5 => "lz4",
        6 => "zstd",
        other => return Err(NotSquashfs::Compression(other)),
    };
    let bytes_used =
        u64::from_le_bytes([head[40], head[41], head[42], head[43], head[44], head[45], head[46], head[47]]);
    if bytes_used > file_len {
        return Err(NotSquashfs::Truncated { bytes_used, file_len });
    }
    Ok(Squashfs { bytes_used, block_size, compression, inodes: u32_at(4) })
}

/// The first bytes of a file, for an operator to recognise: text when printable (an HTML error
/// page, say), hex otherwise.
fn describe_start(head: &[u8]) -> String {
    let start = &head[..head.len().min(16)];
    if start.iter().all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) {
        format!("{:?}", String::from_utf8_lossy(start))
    } else {
        start.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
    }
}

/// What a squashfs holds at its top, as far as telling a root from a modules-only modloop goes.
/// Alpine's modloop has `modules/` (`modules/<release>/...`, `modules/firmware/`) and nothing of a
/// root file system; any of these names at the top makes it a root.
const ROOT_MARKERS: [&str; 6] = ["init", "sbin", "bin", "etc", "usr", "lib"];

/// Whether the image's top-level entries, `(name, is a directory)`, are Alpine's modules-only
/// modloop: a `modules/` directory and nothing a root file system has.
pub fn modules_only(top: &[(String, bool)]) -> bool {
    top.iter().any(|(name, dir)| name == "modules" && *dir)
        && !top.iter().any(|(name, _)| ROOT_MARKERS.contains(&name.as_str()))
}

/// One mount of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub fstype: &'static str,
    pub flags: MountFlags,
    pub data: String,
    /// Directories to create after mounting (below the new mount).
    pub then_mkdir: &'static [&'static str],
}

/// The mounts that make the new root from the loop device holding the image, with a writable
/// layer of at most `rw_size`.
pub fn plan(loop_device: &str, rw_size: Size) -> Vec<Mount> {
    vec![
        Mount {
            source: loop_device.to_owned(),
            target: LOWER.into(),
            fstype: "squashfs",
            flags: MountFlags::RDONLY,
            data: String::new(),
            then_mkdir: &[],
        },
        Mount {
            source: "netinit-rw".into(),
            target: RW.into(),
            fstype: "tmpfs",
            flags: MountFlags::NOSUID | MountFlags::NODEV,
            data: format!("mode=0755,size={}", rw_size.tmpfs_option()),
            then_mkdir: &["upper", "work"],
        },
        Mount {
            source: "overlay".into(),
            target: NEW_ROOT.into(),
            fstype: "overlay",
            flags: MountFlags::empty(),
            data: format!("lowerdir={LOWER},upperdir={RW}/upper,workdir={RW}/work"),
            then_mkdir: &[],
        },
    ]
}

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("reading {path}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} from {url} is not a squashfs image: {reason}")]
    NotSquashfs { path: PathBuf, url: String, reason: NotSquashfs },
    #[error("attaching {path} to a loop device")]
    LoopAttach { path: PathBuf, source: io::Error },
    #[error("mounting {fstype} {source_name} on {target}")]
    Mount { fstype: &'static str, source_name: String, target: String, source: io::Error },
    #[error("creating {path}")]
    Mkdir { path: PathBuf, source: io::Error },
    #[error("{url} is Alpine's modules-only modloop (a modules/ directory, no init), not a root image: give modloop= a squashfs of a whole root file system instead")]
    ModulesOnly { url: String },
}

impl RootfsError {
    pub fn hint(&self) -> &'static str {
        match self {
            RootfsError::NotSquashfs { reason: NotSquashfs::Truncated { .. }, .. } => {
                "the download was cut short or the file on the server is incomplete"
            }
            RootfsError::NotSquashfs { .. } => "modloop= must point at a squashfs image made with mksquashfs",
            RootfsError::LoopAttach { .. } => "is loop in modules-list?",
            RootfsError::Mount { fstype: "squashfs", .. } => {
                "is squashfs in modules-list, with the image's compression built into the kernel?"
            }
            RootfsError::Mount { fstype: "overlay", .. } => "is overlay in modules-list?",
            RootfsError::ModulesOnly { .. } => {
                "make one with mksquashfs from a root directory (Alpine's minirootfs with its kernel's /lib/modules); netinit loads the boot's own modules from the initramfs"
            }
            _ => "this is unexpected; the error above names the step and the system's answer",
        }
    }
}

/// Checks the image and mounts the new root; returns its path.
pub fn assemble(image: &Path, url: &str, rw_size: Size) -> Result<PathBuf, RootfsError> {
    let read_err = |source| RootfsError::Read { path: image.to_owned(), source };
    let mut file = std::fs::File::open(image).map_err(read_err)?;
    // A block device (the streamed root's) has no length in its metadata: its end says.
    let is_device =
        std::os::unix::fs::FileTypeExt::is_block_device(&file.metadata().map_err(read_err)?.file_type());
    let file_len = file.seek(std::io::SeekFrom::End(0)).map_err(read_err)?;
    file.rewind().map_err(read_err)?;
    let mut head = Vec::with_capacity(SUPERBLOCK_LEN);
    file.by_ref().take(SUPERBLOCK_LEN as u64).read_to_end(&mut head).map_err(read_err)?;
    let sq = check_superblock(&head, file_len).map_err(|reason| RootfsError::NotSquashfs {
        path: image.to_owned(),
        url: url.to_owned(),
        reason,
    })?;
    log::info!(
        "image is squashfs 4.0, {} compressed, {} inodes, {} KiB blocks",
        sq.compression,
        sq.inodes,
        sq.block_size / 1024
    );
    // `device` stays open until the squashfs mount holds the loop device; then it may close.
    let (_device, source) = match is_device {
        true => (None, image.to_string_lossy().into_owned()),
        false => {
            let device = sys::loop_attach_readonly(image)
                .map_err(|source| RootfsError::LoopAttach { path: image.to_owned(), source })?;
            log::info!("attached {} to {} read-only", image.display(), device.path.display());
            let source = device.path.to_string_lossy().into_owned();
            (Some(device), source)
        }
    };
    for m in plan(&source, rw_size) {
        mkdir(Path::new(&m.target))?;
        log::info!("mounting {} on {}", m.fstype, m.target);
        log::debug!("mount -t {} -o {:?} {} {}", m.fstype, m.data, m.source, m.target);
        sys::mount(&m.source, Path::new(&m.target), m.fstype, m.flags, &m.data).map_err(|source| {
            RootfsError::Mount {
                fstype: m.fstype,
                source_name: m.source.clone(),
                target: m.target.clone(),
                source,
            }
        })?;
        for dir in m.then_mkdir {
            mkdir(&Path::new(&m.target).join(dir))?;
        }
        if m.target == LOWER && modules_only(&top_level(Path::new(LOWER))) {
            return Err(RootfsError::ModulesOnly { url: url.to_owned() });
        }
    }
    Ok(PathBuf::from(NEW_ROOT))
}

/// The entries at the top of a directory, `(name, is a directory)`; empty when it cannot be read.
fn top_level(dir: &Path) -> Vec<(String, bool)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.file_type().is_ok_and(|t| t.is_dir())))
        .collect()
}

fn mkdir(path: &Path) -> Result<(), RootfsError> {
    std::fs::create_dir_all(path).map_err(|source| RootfsError::Mkdir { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A superblock as mksquashfs writes it: gzip, 128 KiB blocks, 1 MiB used.
    fn superblock() -> Vec<u8> {
        let mut b = vec![0u8; SUPERBLOCK_LEN];
        b[0..4].copy_from_slice(b"hsqs");
        b[4..8].copy_from_slice(&42u32.to_le_bytes());
        b[12..16].copy_from_slice(&(128 * 1024u32).to_le_bytes());
        b[20..22].copy_from_slice(&1u16.to_le_bytes());
        b[22..24].copy_from_slice(&17u16.to_le_bytes());
        b[28..30].copy_from_slice(&4u16.to_le_bytes());
        b[40..48].copy_from_slice(&(1u64 << 20).to_le_bytes());
        b
    }

    #[test]
    fn superblocks() {
        let check = |edit: &dyn Fn(&mut Vec<u8>), file_len: u64, expected: Result<&str, NotSquashfs>| {
            let mut b = superblock();
            edit(&mut b);
            let got = check_superblock(&b, file_len).map(|s| s.compression);
            assert_eq!(got, expected, "file_len {file_len}");
        };
        check(&|_| {}, 1 << 20, Ok("gzip"));
        check(&|_| {}, 4 << 20, Ok("gzip"));
        check(&|b| b.truncate(50), 1 << 20, Err(NotSquashfs::TooShort(50)));
        check(
            &|b| b[..16].copy_from_slice(b"<!DOCTYPE html>\n"),
            1 << 20,
            Err(NotSquashfs::BadMagic(r#""<!DOCTYPE html>\n""#.into())),
        );
        check(
            &|b| b[..4].copy_from_slice(&[0x1f, 0x8b, 8, 0]),
            1 << 20,
            Err(NotSquashfs::BadMagic("1f 8b 08 00 2a 00 00 00 00 00 00 00 00 00 02 00".into())),
        );
        check(&|b| b[28] = 3, 1 << 20, Err(NotSquashfs::Version(3, 0)));
        check(
            &|b| b[12..16].copy_from_slice(&1000u32.to_le_bytes()),
            1 << 20,
            Err(NotSquashfs::BlockSize(1000)),
        );
        check(&|b| b[22] = 16, 1 << 20, Err(NotSquashfs::BlockSize(128 * 1024)));
        check(&|b| b[20] = 9, 1 << 20, Err(NotSquashfs::Compression(9)));
        check(&|b| b[20] = 6, 1 << 20, Ok("zstd"));
        check(
            &|_| {},
            (1 << 20) - 1,
            Err(NotSquashfs::Truncated { bytes_used: 1 << 20, file_len: (1 << 20) - 1 }),
        );
    }

    #[test]
    fn a_modules_only_modloop_is_not_a_root() {
        let check = |top: &[(&str, bool)], expected: bool| {
            let top: Vec<(String, bool)> = top.iter().map(|(n, d)| (n.to_string(), *d)).collect();
            assert_eq!(modules_only(&top), expected, "{top:?}");
        };
        check(&[("modules", true)], true);
        check(&[("modules", true), ("firmware", true), (".modloop-signature", false)], true);
        check(&[("modules", true), ("sbin", true), ("etc", true)], false);
        check(&[("modules", true), ("init", false)], false);
        check(&[("modules", false)], false); // a file named modules
        check(&[("bin", true), ("etc", true), ("lib", true)], false);
        check(&[], false);
        let e = RootfsError::ModulesOnly { url: "http://h/modloop-virt".into() };
        assert_eq!(
            e.to_string(),
            "http://h/modloop-virt is Alpine's modules-only modloop (a modules/ directory, no init), not a root image: give modloop= a squashfs of a whole root file system instead"
        );
    }

    #[test]
    fn messages() {
        let e = NotSquashfs::BadMagic("\"<html>\"".into());
        assert_eq!(e.to_string(), "it does not start with the squashfs magic \"hsqs\" but with \"<html>\"");
    }

    #[test]
    fn the_plan_stacks_an_overlay_on_the_image() {
        let p = plan("/dev/loop3", Size::Percent(50));
        let shape: Vec<(&str, &str, &str)> =
            p.iter().map(|m| (m.source.as_str(), m.fstype, m.target.as_str())).collect();
        assert_eq!(
            shape,
            [
                ("/dev/loop3", "squashfs", LOWER),
                ("netinit-rw", "tmpfs", RW),
                ("overlay", "overlay", NEW_ROOT)
            ]
        );
        assert!(p[0].flags.contains(MountFlags::RDONLY));
        assert_eq!(
            p[2].data,
            "lowerdir=/run/netinit/lower,upperdir=/run/netinit/rw/upper,workdir=/run/netinit/rw/work"
        );
        assert_eq!(p[1].then_mkdir, ["upper", "work"]);
        assert_eq!(p[1].data, "mode=0755,size=50%");
        assert_eq!(plan("/dev/loop0", Size::Bytes(512 << 20))[1].data, "mode=0755,size=536870912");
    }
}
