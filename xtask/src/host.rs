//! What the host needs, and installing it: Debian packages with apt-get when root (else printing
//! the exact command), the musl target and the lint components with rustup. Also small process
//! helpers shared by the other modules.

use std::path::{Path, PathBuf};
use std::process::Command;

pub type Result<T> = std::result::Result<T, String>;

pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// Each command xtask runs, and the Debian package that has it.
const TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("mksquashfs", "squashfs-tools"),
    ("cpio", "cpio"),
    ("dpkg", "dpkg"),
    ("tar", "tar"),
    ("ip", "iproute2"),
    ("dnsmasq", "dnsmasq-base"),
    ("minisign", "minisign"),
    ("openssl", "openssl"),
    // The host tests compress small modules as kernel builds do.
    ("xz", "xz-utils"),
    ("zstd", "zstd"),
];
/// busybox must be the static build: it runs inside the test image, which has no C library.
const BUSYBOX: (&str, &str) = ("/bin/busybox", "busybox-static");

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Where downloads and builds are cached: `target/netinit-cache`.
pub fn cache() -> PathBuf {
    root().join("target/netinit-cache")
}

/// Whether `cmd` is on PATH or in an sbin directory (which a non-login root shell may not have on PATH).
pub fn on_path(cmd: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .any(|d| d.join(cmd).is_file())
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

fn is_static_busybox() -> bool {
    std::fs::read(BUSYBOX.0).is_ok_and(|d| crate::elf::has_interpreter(&d) == Ok(false))
}

/// Runs a command, failing with its name and status.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if !status.success() {
        return Err(format!("{cmd:?} failed: {status}"));
    }
    Ok(())
}

/// Runs a command and returns its stdout.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `apt-get update` then `apt-get install -y PACKAGES` when root; the exact command otherwise.
pub fn apt_install(packages: &[&str]) -> Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    let list = packages.join(" ");
    if !is_root() {
        return Err(format!(
            "missing packages; run:\n    sudo apt-get update && sudo apt-get install -y {list}"
        ));
    }
    eprintln!("xtask: installing {list}");
    run(Command::new("apt-get").args(["update", "-q"]).env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Makes sure everything the VM tests and the demo need is installed.
pub fn ensure_vm_tools() -> Result<()> {
    let mut missing: Vec<&str> = TOOLS.iter().filter(|(cmd, _)| !on_path(cmd)).map(|(_, pkg)| *pkg).collect();
    if !is_static_busybox() {
        missing.push(BUSYBOX.1);
    }
    apt_install(&missing)?;
    ensure_musl_target()
}

/// ring (rustls' cryptography) compiles C for the musl target: it needs musl-gcc.
pub fn ensure_musl_cc() -> Result<()> {
    if !on_path("musl-gcc") {
        apt_install(&["musl-tools"])?;
    }
    Ok(())
}

pub fn ensure_musl_target() -> Result<()> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if !installed.lines().any(|l| l.trim() == MUSL_TARGET) {
        eprintln!("xtask: adding the Rust target {MUSL_TARGET}");
        run(Command::new("rustup").args(["target", "add", MUSL_TARGET]))?;
    }
    Ok(())
}

/// rustfmt and clippy, for `cargo xtask test`'s lint step.
pub fn ensure_lint_tools() -> Result<()> {
    let ok =
        |sub: &str| Command::new("cargo").args([sub, "--version"]).output().is_ok_and(|o| o.status.success());
    if !ok("fmt") || !ok("clippy") {
        eprintln!("xtask: adding the rustup components rustfmt and clippy");
        run(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]))?;
    }
    Ok(())
}

/// `cargo` as this xtask was run with.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}
