//! What the host needs, and installing it: Debian packages with apt-get when root (else printing
//! the exact command), the musl targets and the lint components with rustup, and for aarch64 the
//! cross compiler, qemu and UEFI firmware (see `arch`). Also small process helpers shared by the
//! other modules.

use std::path::{Path, PathBuf};
use std::process::Command;

pub type Result<T> = std::result::Result<T, String>;

use crate::arch::Arch;

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
    // lab: proxy's HTTP proxy; the package without the service (`tinyproxy` would start one).
    ("tinyproxy", "tinyproxy-bin"),
    // The host tests compress small modules as kernel builds do; zstd also compresses the initramfs
    // of a kernel that unpacks it (`initramfs.rs` installs it for `cargo xtask cpio` too).
    ("xz", "xz-utils"),
    ("zstd", "zstd"),
];
/// Files the UEFI scenarios need, and the Debian package that has each: the firmware, and the NIC
/// option ROM with iPXE's EFI driver.
pub const OVMF: &str = "/usr/share/ovmf/OVMF.fd";
pub const EFI_VIRTIO_ROM: &str = "/usr/lib/ipxe/qemu/efi-virtio.rom";
const FILES: &[(&str, &str)] = &[(OVMF, "ovmf"), (EFI_VIRTIO_ROM, "ipxe-qemu")];
/// The arm64 UEFI firmware (EDK2's ArmVirtQemu) for `-M virt`.
pub const QEMU_EFI_AARCH64: &str = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd";
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
    find(cmd).is_some()
}

/// Where `cmd` is, on PATH or in an sbin directory.
pub fn find(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
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
    missing.extend(FILES.iter().filter(|(file, _)| !Path::new(file).is_file()).map(|(_, pkg)| *pkg));
    if !is_static_busybox() {
        missing.push(BUSYBOX.1);
    }
    apt_install(&missing)?;
    ensure_musl_target()
}

/// What the arm64 VMs need besides [`ensure_vm_tools`]: qemu-system-aarch64, the arm64 UEFI
/// firmware, and the cross compiler with the aarch64 musl target for `/init`.
pub fn ensure_arm64_vm_tools() -> Result<()> {
    let mut missing = Vec::new();
    let (qemu, package) = Arch::Aarch64.qemu();
    if !on_path(qemu) {
        missing.push(package);
    }
    if !Path::new(QEMU_EFI_AARCH64).is_file() {
        missing.push("qemu-efi-aarch64");
    }
    apt_install(&missing)?;
    ensure_cc(Arch::Aarch64)?;
    ensure_musl_target_for(Arch::Aarch64)
}

/// ring (rustls' cryptography) compiles C for the musl target: it needs musl-gcc.
pub fn ensure_musl_cc() -> Result<()> {
    ensure_cc(Arch::X86_64)
}

/// The C compiler ring needs for `arch` (see [`Arch::cc`]).
pub fn ensure_cc(arch: Arch) -> Result<()> {
    let (cc, package) = arch.cc();
    if !on_path(cc) {
        apt_install(&[package])?;
    }
    Ok(())
}

pub fn ensure_musl_target() -> Result<()> {
    ensure_musl_target_for(Arch::X86_64)
}

/// The Rust target `arch`'s `/init` is built for, added with rustup when missing.
pub fn ensure_musl_target_for(arch: Arch) -> Result<()> {
    let target = arch.musl_target();
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if !installed.lines().any(|l| l.trim() == target) {
        eprintln!("xtask: adding the Rust target {target}");
        run(Command::new("rustup").args(["target", "add", target]))?;
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

/// Unpacks Debian's `package` into `dir` once, without installing it: `apt-get download` then
/// `dpkg -x`, with `dir/.complete` marking a finished unpack.
pub fn unpack_deb(package: &str, dir: &Path) -> Result<()> {
    unpack_deb_with(package, dir, &|download: &Path| {
        let fetch = || run(Command::new("apt-get").args(["download", "-q", package]).current_dir(download));
        if fetch().is_err() {
            // A fresh machine may have no package lists yet.
            run(Command::new("apt-get").args(["update", "-q"]))?;
            fetch()?;
        }
        Ok(())
    })
}

/// [`unpack_deb`] with the download step given: `get` leaves the `.deb` in the directory it is passed.
pub fn unpack_deb_with(package: &str, dir: &Path, get: &dyn Fn(&Path) -> Result<()>) -> Result<()> {
    if dir.join(".complete").is_file() {
        return Ok(());
    }
    let sibling = |suffix: &str| {
        let mut name = dir.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let download = sibling(".download");
    let _ = std::fs::remove_dir_all(&download);
    std::fs::create_dir_all(&download).map_err(|e| format!("creating {}: {e}", download.display()))?;
    eprintln!("xtask: fetching {package}");
    get(&download)?;
    let deb = std::fs::read_dir(&download)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| format!("apt-get download {package} left no .deb"))?;
    let unpack = sibling(".partial");
    let _ = std::fs::remove_dir_all(&unpack);
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpack))?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&unpack, dir).map_err(|e| format!("renaming {}: {e}", unpack.display()))?;
    std::fs::write(dir.join(".complete"), package).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&download);
    Ok(())
}
