//! The real `cpio` tool reads what `mkcpio` writes: it lists every entry and extracts the same bytes.
//! The tool is a prerequisite of `cargo xtask test` (package `cpio`), which sets
//! `NETINIT_REQUIRE_TOOLS=1`: there a missing tool fails these tests; under a plain `cargo test` they
//! are skipped, saying why.

use std::io::Write;
use std::process::{Command, Stdio};

/// The test archive; `device` adds `/dev/console`, which only root can extract.
fn archive(device: bool) -> Vec<u8> {
    let mut a = mkcpio::Archive::new(0);
    a.file("init", 0o755, b"#!/bin/sh\necho hi\n".to_vec()).unwrap();
    a.file("lib/modules/6.1.0/kernel/fs/loop.ko", 0o644, vec![0xAB; 4097]).unwrap();
    a.symlink("bin/sh", "busybox").unwrap();
    if device {
        a.char_device("dev/console", 0o600, 5, 1).unwrap();
    }
    a.dir("run", 0o755).unwrap();
    let mut out = Vec::new();
    a.write_to(&mut out).unwrap();
    out
}

/// Whether the `cpio` tool is here; when it is not, says so, and fails under `cargo xtask test`.
fn have_cpio() -> bool {
    let found = Command::new("cpio").arg("--version").stdout(Stdio::null()).status().is_ok();
    if !found {
        assert!(
            std::env::var_os("NETINIT_REQUIRE_TOOLS").is_none(),
            "cpio is missing (apt-get install cpio)"
        );
        eprintln!("skipping: the cpio tool is not installed (apt-get install cpio)");
    }
    found
}

fn cpio(args: &[&str], dir: &std::path::Path, input: &[u8]) -> String {
    let mut child = Command::new("cpio")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running cpio (apt-get install cpio)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "cpio {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mkcpio-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn cpio_lists_every_entry() {
    if !have_cpio() {
        return;
    }
    let dir = tempdir("list");
    let listed = cpio(&["-t", "--quiet"], &dir, &archive(true));
    let listed: Vec<&str> = listed.lines().collect();
    assert_eq!(
        listed,
        [
            "bin",
            "bin/sh",
            "dev",
            "dev/console",
            "init",
            "lib",
            "lib/modules",
            "lib/modules/6.1.0",
            "lib/modules/6.1.0/kernel",
            "lib/modules/6.1.0/kernel/fs",
            "lib/modules/6.1.0/kernel/fs/loop.ko",
            "run",
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cpio_extracts_the_same_bytes() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if !have_cpio() {
        return;
    }
    let dir = tempdir("extract");
    // Creating device nodes needs root: as another user the archive has none.
    let root = is_root();
    if !root {
        eprintln!("not root: extracting without the device node");
    }
    cpio(&["-i", "-d", "--quiet", "--no-absolute-filenames"], &dir, &archive(root));
    assert_eq!(std::fs::read(dir.join("init")).unwrap(), b"#!/bin/sh\necho hi\n");
    assert_eq!(std::fs::metadata(dir.join("init")).unwrap().permissions().mode() & 0o777, 0o755);
    assert_eq!(std::fs::read(dir.join("lib/modules/6.1.0/kernel/fs/loop.ko")).unwrap(), vec![0xAB; 4097]);
    assert_eq!(std::fs::read_link(dir.join("bin/sh")).unwrap().to_str(), Some("busybox"));
    if root {
        let console = std::fs::symlink_metadata(dir.join("dev/console")).unwrap();
        assert!(console.file_type().is_char_device());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}
