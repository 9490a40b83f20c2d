//! Writing into the new root: every path resolved inside it ([`sys::InRoot`]), never through a
//! final symlink, never into a device node, fifo or socket that stands where a file should be.
//! What it refuses comes back as an error that says why, for the stage's warning.

use std::io::{self, Write};

use crate::sys::{self, Create, InRoot, Kind};

/// A path in the new root as netinit writes it: relative, `/`-separated, no `.` or `..`.
/// `None` for a path that climbs out (`..`) or names nothing.
pub fn normalize(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Creates the missing directories of `rel` (a normalized path) with `mode`, each resolved inside
/// the root ([`InRoot::create_dirs`]).
pub fn create_dirs(root: &InRoot, rel: &str, mode: u32) -> io::Result<()> {
    root.create_dirs(rel, mode)
}

/// The refusal to write over what is at a path, or `Ok` when a regular file may be written there.
pub fn writable(root: &InRoot, rel: &str) -> io::Result<()> {
    let refuse = |what: &str| io::Error::other(format!("it is {what}, which netinit does not write through"));
    match root.kind(rel)? {
        None | Some(Kind::File) => Ok(()),
        Some(Kind::Symlink) => Err(refuse("a symlink")),
        Some(Kind::Dir) => Err(refuse("a directory")),
        Some(Kind::Special) => Err(refuse("a device node, fifo or socket")),
    }
}

/// Writes `text` as the regular file `rel` with `mode` (created or replaced), creating its
/// directories; refuses what [`writable`] refuses.
pub fn write_file(root: &InRoot, rel: &str, text: &[u8], mode: u32, how: Create) -> io::Result<()> {
    if let Some((parent, _)) = rel.rsplit_once('/') {
        create_dirs(root, parent, 0o755)?;
    }
    writable(root, rel)?;
    let mut file = root.create(rel, mode, how)?;
    file.write_all(text)?;
    sys::set_mode(&file, mode)
}

#[cfg(test)]
pub mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::{Path, PathBuf};

    use super::*;

    /// A new root and, beside it, a directory standing for everything outside it (the initramfs).
    pub struct Hostile {
        pub base: PathBuf,
        pub root: PathBuf,
        pub outside: PathBuf,
    }

    impl Hostile {
        pub fn new(name: &str) -> Hostile {
            let base = std::env::temp_dir().join(format!("netinit-hostile-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&base);
            let (root, outside) = (base.join("root"), base.join("outside"));
            std::fs::create_dir_all(root.join("etc")).unwrap();
            std::fs::create_dir_all(&outside).unwrap();
            Hostile { base, root, outside }
        }

        pub fn in_root(&self) -> InRoot {
            InRoot::open(&self.root).unwrap()
        }

        /// Nothing was written outside the root.
        pub fn outside_untouched(&self) {
            let left: Vec<_> =
                std::fs::read_dir(&self.outside).unwrap().flatten().map(|e| e.path()).collect();
            assert!(left.is_empty(), "written outside the root: {left:?}");
        }
    }

    impl Drop for Hostile {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }

    /// A character device node at `path` when the test runs as root, else a fifo: either is what
    /// must never be written through.
    pub fn special_node(path: &Path) {
        use rustix::fs::{mknodat, FileType, Mode, CWD};
        let dev = rustix::fs::makedev(1, 3);
        if mknodat(CWD, path, FileType::CharacterDevice, Mode::from_raw_mode(0o666), dev).is_err() {
            mknodat(CWD, path, FileType::Fifo, Mode::from_raw_mode(0o666), 0).unwrap();
        }
    }

    #[test]
    fn paths_are_normalized_and_never_climb() {
        let check =
            |path: &str, expected: Option<&str>| assert_eq!(normalize(path).as_deref(), expected, "{path}");
        check("etc/motd", Some("etc/motd"));
        check("/etc//./motd", Some("etc/motd"));
        check("./etc/", Some("etc"));
        check("etc/../../x", None);
        check("..", None);
        check("./", None);
        check("", None);
    }

    #[test]
    fn a_plain_write_creates_its_directories_with_the_mode() {
        let h = Hostile::new("plain");
        write_file(&h.in_root(), "etc/apk/repositories", b"x\n", 0o644, Create::Truncate).unwrap();
        let file = h.root.join("etc/apk/repositories");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x\n");
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o644);
        write_file(&h.in_root(), "etc/apk/repositories", b"y\n", 0o644, Create::Truncate).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "y\n", "replaced");
    }

    #[test]
    fn symlinks_out_of_the_root_are_resolved_inside_it_or_refused() {
        let h = Hostile::new("links");
        // An absolute symlink to a directory outside: resolved inside the root, as after chroot.
        std::fs::create_dir_all(h.root.join("var")).unwrap();
        symlink(&h.outside, h.root.join("var/lib")).unwrap();
        // A relative symlink climbing out of the root.
        symlink("../../../../../../../..", h.root.join("etc/up")).unwrap();
        // A symlinked parent directory pointing outside.
        symlink(&h.outside, h.root.join("root")).unwrap();
        let inside = h.root.join(h.outside.strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inside).unwrap();
        let r = h.in_root();
        write_file(&r, "var/lib/state", b"1", 0o644, Create::Truncate).unwrap();
        write_file(&r, "etc/up/escaped", b"2", 0o644, Create::Truncate).unwrap();
        write_file(&r, "root/.ssh/authorized_keys", b"3", 0o600, Create::Append).unwrap();
        h.outside_untouched();
        assert_eq!(std::fs::read_to_string(inside.join("state")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(h.root.join("escaped")).unwrap(), "2");
        assert_eq!(std::fs::read_to_string(inside.join(".ssh/authorized_keys")).unwrap(), "3");
        // A final symlink is never followed, wherever it points.
        std::fs::write(h.outside.join("target"), "keep").unwrap();
        symlink(h.outside.join("target"), h.root.join("etc/hostname")).unwrap();
        symlink("motd", h.root.join("etc/issue")).unwrap();
        for rel in ["etc/hostname", "etc/issue"] {
            let e = write_file(&r, rel, b"evil\n", 0o644, Create::Truncate).unwrap_err();
            assert_eq!(e.to_string(), "it is a symlink, which netinit does not write through", "{rel}");
        }
        assert_eq!(std::fs::read_to_string(h.outside.join("target")).unwrap(), "keep");
        assert!(!h.root.join("etc/motd").exists());
    }

    #[test]
    fn device_nodes_fifos_and_directories_are_not_written_through() {
        let h = Hostile::new("nodes");
        special_node(&h.root.join("etc/hostname"));
        std::fs::create_dir_all(h.root.join("etc/resolv.conf")).unwrap();
        let r = h.in_root();
        let e = write_file(&r, "etc/hostname", b"x\n", 0o644, Create::Truncate).unwrap_err();
        assert_eq!(
            e.to_string(),
            "it is a device node, fifo or socket, which netinit does not write through"
        );
        let e = write_file(&r, "etc/resolv.conf", b"x\n", 0o644, Create::Truncate).unwrap_err();
        assert_eq!(e.to_string(), "it is a directory, which netinit does not write through");
        // A file where a directory should be.
        std::fs::write(h.root.join("etc/apk"), "").unwrap();
        assert!(write_file(&r, "etc/apk/repositories", b"x", 0o644, Create::Truncate).is_err());
    }
}
