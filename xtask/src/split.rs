//! `cargo xtask cpio --split`: one initramfs as two archives, so that one netinit archive serves
//! several kernels. `<output>` holds `/init` and everything else that does not depend on the
//! kernel; `<stem>-modules.cpio.gz` holds `lib/modules/...` and `lib/firmware/...`. The boot loader
//! loads both (two iPXE `initrd` lines) and the kernel unpacks one after the other into the same
//! rootfs: a directory both carry (`lib`) is created by the first and kept by the second, with the
//! same mode. Pure: it sorts entries between archives and names the second file.

use std::path::{Path, PathBuf};

use mkcpio::{Archive, PathError};

/// The trees that go into the modules archive.
const KERNEL_TREES: [&str; 2] = ["lib/modules", "lib/firmware"];

fn in_kernel_tree(path: &str) -> bool {
    KERNEL_TREES.iter().any(|t| path == *t || path.strip_prefix(t).is_some_and(|rest| rest.starts_with('/')))
}

/// The modules archive's file beside `output`: `netinit.cpio.gz` gives `netinit-modules.cpio.gz`
/// (`.cpio.gz`, else the last extension, replaced).
pub fn modules_path(output: &Path) -> PathBuf {
    let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name
        .strip_suffix(".cpio.gz")
        .or_else(|| name.rsplit_once('.').map(|(stem, _)| stem).filter(|s| !s.is_empty()))
        .unwrap_or(&name);
    output.with_file_name(format!("{stem}-modules.cpio.gz"))
}

/// `whole` as the netinit archive and the modules archive; the entries of the two together are
/// those of `whole` (the directories both need appear in both, with the same mode).
pub fn split(whole: &Archive, mtime: u32) -> Result<(Archive, Archive), PathError> {
    let (mut netinit, mut modules) = (Archive::new(mtime), Archive::new(mtime));
    for (path, kind, perm) in whole.entries() {
        let into = if in_kernel_tree(path) { &mut modules } else { &mut netinit };
        into.add(path, kind.clone(), perm)?;
    }
    Ok((netinit, modules))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn names() {
        let check = |out: &str, expected: &str| assert_eq!(modules_path(Path::new(out)), Path::new(expected));
        check("netinit.cpio.gz", "netinit-modules.cpio.gz");
        check("/srv/tftp/netinit.cpio.gz", "/srv/tftp/netinit-modules.cpio.gz");
        check("out/initrd.img", "out/initrd-modules.cpio.gz");
        check("initrd", "initrd-modules.cpio.gz");
    }

    fn whole() -> Archive {
        let mut a = Archive::new(0);
        a.file("init", 0o755, b"init".to_vec()).unwrap();
        a.char_device("dev/console", 0o600, 5, 1).unwrap();
        a.file("lib/modules/6.1/kernel/a.ko", 0o644, b"a".to_vec()).unwrap();
        a.file("lib/modules/6.1/modules.dep", 0o644, b"kernel/a.ko:\n".to_vec()).unwrap();
        a.file("lib/firmware/rtl_nic/x.fw", 0o644, b"fw".to_vec()).unwrap();
        a.file("lib/modulesx", 0o644, b"not a module".to_vec()).unwrap();
        a.symlink("bin/sh", "busybox").unwrap();
        a
    }

    #[test]
    fn modules_and_firmware_go_apart() {
        let (netinit, modules) = split(&whole(), 0).unwrap();
        assert_eq!(
            netinit.paths().collect::<Vec<_>>(),
            ["bin", "bin/sh", "dev", "dev/console", "init", "lib", "lib/modulesx"]
        );
        assert_eq!(
            modules.paths().collect::<Vec<_>>(),
            [
                "lib",
                "lib/firmware",
                "lib/firmware/rtl_nic",
                "lib/firmware/rtl_nic/x.fw",
                "lib/modules",
                "lib/modules/6.1",
                "lib/modules/6.1/kernel",
                "lib/modules/6.1/kernel/a.ko",
                "lib/modules/6.1/modules.dep"
            ]
        );
    }

    /// The real `cpio` unpacks the two archives one after the other into one directory, as the
    /// kernel does with two initrds, and gets every file of the whole.
    #[test]
    fn the_two_merge_into_the_whole() {
        let dir = std::env::temp_dir().join(format!("xtask-split-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut a = Archive::new(0);
        a.file("init", 0o755, b"init".to_vec()).unwrap();
        a.dir("lib", 0o755).unwrap();
        a.file("lib/modules/6.1/kernel/a.ko", 0o644, b"a".to_vec()).unwrap();
        a.file("lib/firmware/rtl_nic/x.fw", 0o644, b"fw".to_vec()).unwrap();
        let (netinit, modules) = split(&a, 0).unwrap();
        for archive in [&netinit, &modules] {
            let mut bytes = Vec::new();
            archive.write_to(&mut bytes).unwrap();
            let mut child = std::process::Command::new("cpio")
                .args(["-id", "--quiet", "--no-absolute-filenames"])
                .current_dir(&dir)
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(&bytes).unwrap();
            assert!(child.wait().unwrap().success());
        }
        assert_eq!(std::fs::read(dir.join("init")).unwrap(), b"init");
        assert_eq!(std::fs::read(dir.join("lib/modules/6.1/kernel/a.ko")).unwrap(), b"a");
        assert_eq!(std::fs::read(dir.join("lib/firmware/rtl_nic/x.fw")).unwrap(), b"fw");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
