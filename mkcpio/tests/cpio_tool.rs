//! The real `cpio` tool reads what `mkcpio` writes: it lists every entry and extracts the same bytes.
//! The tool is a prerequisite of `cargo xtask test` (package `cpio`); without it this test fails.

use std::io::Write;
use std::process::{Command, Stdio};

fn archive() -> Vec<u8> {
    let mut a = mkcpio::Archive::new(0);
    a.file("init", 0o755, b"#!/bin/sh\necho hi\n".to_vec()).unwrap();
    a.file("lib/modules/6.1.0/kernel/fs/loop.ko", 0o644, vec![0xAB; 4097]).unwrap();
    a.symlink("bin/sh", "busybox").unwrap();
    a.char_device("dev/console", 0o600, 5, 1).unwrap();
    a.dir("run", 0o755).unwrap();
    let mut out = Vec::new();
    a.write_to(&mut out).unwrap();
    out
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
    let dir = tempdir("list");
    let listed = cpio(&["-t", "--quiet"], &dir, &archive());
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
    let dir = tempdir("extract");
    cpio(&["-i", "-d", "--quiet", "--no-absolute-filenames"], &dir, &archive());
    assert_eq!(std::fs::read(dir.join("init")).unwrap(), b"#!/bin/sh\necho hi\n");
    assert_eq!(std::fs::metadata(dir.join("init")).unwrap().permissions().mode() & 0o777, 0o755);
    assert_eq!(std::fs::read(dir.join("lib/modules/6.1.0/kernel/fs/loop.ko")).unwrap(), vec![0xAB; 4097]);
    assert_eq!(std::fs::read_link(dir.join("bin/sh")).unwrap().to_str(), Some("busybox"));
    let console = std::fs::symlink_metadata(dir.join("dev/console")).unwrap();
    // Creating device nodes needs root; as another user cpio skips them and says so.
    if is_root() {
        assert!(console.file_type().is_char_device());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}
