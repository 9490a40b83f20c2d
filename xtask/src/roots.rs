//! The root images of real systems that the target-init scenarios boot, each built from real
//! packages into `target/netinit-cache/roots/` (rebuilt when its recipe changes) and served as:
//!
//! - `openrc.squashfs`: Debian 12's `openrc` and the libraries it needs, `dash` for `/bin/sh`,
//!   busybox-static for the tools, busybox init with an Alpine-style `/etc/inittab` (sysinit, boot, default), a
//!   stand-in for Alpine's `modloop` service in `boot` and the marker service in `default`;
//! - `zinit.squashfs`: zinit from crates.io built static for musl, `/sbin/init` its PID-1 entry
//!   (`zinit-pid1`), a oneshot that prints the marker and one that powers off after it;
//! - `zos.squashfs`: Zero-OS's calling convention, `/sbin/zinit` (a stand-in that records its argv and
//!   environment) beside `/etc/zinit/*.yaml`, and a `/sbin/init` that must not be chosen;
//! - `modloop-virt`: the shape of Alpine's modules-only modloop (`modules/` at the top, no init).
//!
//! The guest's scripts are files in `xtask/guest/`. It builds nothing it does not boot.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::host::{self, Result};
use crate::{debs, image};

/// The zinit release the zinit root runs (0.3.x, whose PID-1 entry is behind the `pid1` feature).
/// Not 0.3.9: its `zinit-pid1` does not build (it imports `zinit::sdk::ZinitClient`, which 0.3.9 no
/// longer has there); 0.3.8 is the newest 0.3 whose PID 1 builds.
pub const ZINIT_VERSION: &str = "0.3.8";

const CHECK: &str = include_str!("../guest/netinit-check.sh");
const MODLOOP_INITD: &str = include_str!("../guest/modloop.initd");
const CHECK_INITD: &str = include_str!("../guest/netinit-check.initd");
const INITTAB: &str = include_str!("../guest/inittab");
const ZINIT_CHECK: &str = include_str!("../guest/zinit-check.toml");
const ZINIT_POWEROFF: &str = include_str!("../guest/zinit-poweroff.toml");
const ZINIT_STUB: &str = include_str!("../guest/zinit-stub.sh");
const WRONG_INIT: &str = include_str!("../guest/wrong-init.sh");
const ZOS_SERVICE: &str = include_str!("../guest/zos-service.yaml");

/// The kernel whose modules the roots carry under `/lib/modules/<release>` (the module list files
/// only: enough for Alpine's modloop service to find the kernel's directory, and for the check).
pub struct KernelModules<'a> {
    pub release: &'a str,
    pub dir: &'a Path,
}

/// One root: the file it is served as, and how it is built into an empty directory.
type Build = fn(&Path, &KernelModules) -> Result<()>;
const ROOTS: [(&str, Build); 4] = [
    ("openrc.squashfs", openrc),
    ("zinit.squashfs", zinit),
    ("zos.squashfs", zos),
    ("modloop-virt", modloop_only),
];

/// Builds the roots that changed and puts all of them into `www`.
pub fn ensure(www: &Path, kernel: &KernelModules) -> Result<()> {
    let dir = host::cache().join("roots");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let recipe =
        [include_str!("roots.rs"), include_str!("debs.rs"), CHECK, MODLOOP_INITD, CHECK_INITD, INITTAB]
            .concat()
            + ZINIT_CHECK
            + ZINIT_POWEROFF
            + ZINIT_STUB
            + WRONG_INIT
            + ZOS_SERVICE
            + kernel.release;
    let want = format!("{:x}", image::fnv(recipe.as_bytes()));
    for (file, build) in ROOTS {
        let image = dir.join(file);
        let stamp = dir.join(format!("{file}.stamp"));
        if !(image.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == want)) {
            let tree = dir.join(format!("{file}.tree"));
            fresh(&tree)?;
            build(&tree, kernel).map_err(|e| format!("building the test root {file}: {e}"))?;
            image::mksquashfs(&tree, &image)?;
            std::fs::write(&stamp, &want).map_err(|e| e.to_string())?;
        }
        let served = www.join(file);
        let _ = std::fs::remove_file(&served);
        std::fs::hard_link(&image, &served)
            .or_else(|_| std::fs::copy(&image, &served).map(|_| ()))
            .map_err(|e| format!("putting {} into {}: {e}", file, www.display()))?;
    }
    Ok(())
}

fn fresh(dir: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))
}

fn put(tree: &Path, rel: &str, text: &str, mode: u32) -> Result<()> {
    let path = tree.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())
}

fn link(tree: &Path, rel: &str, target: &str) -> Result<()> {
    let path = tree.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    std::os::unix::fs::symlink(target, &path).map_err(|e| format!("linking {}: {e}", path.display()))
}

/// The directories every root has, `/etc/passwd` and `/etc/group` (tty is 5, as devpts' gid=5
/// expects; OpenRC's checkpath wants uucp), and the check script.
fn base(tree: &Path) -> Result<()> {
    for d in ["bin", "sbin", "etc", "proc", "sys", "dev", "run", "tmp", "root", "var/log", "usr/bin"] {
        std::fs::create_dir_all(tree.join(d)).map_err(|e| e.to_string())?;
    }
    put(tree, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)?;
    put(tree, "etc/group", "root:x:0:\ntty:x:5:\nuucp:x:10:\n", 0o644)?;
    put(tree, "usr/libexec/netinit-check", CHECK, 0o755)
}

/// The host's static busybox as `/bin/busybox`, with a link for each applet where the tree has no
/// file of that name yet (`busybox --list-full`).
fn busybox(tree: &Path) -> Result<()> {
    std::fs::copy("/bin/busybox", tree.join("bin/busybox"))
        .map_err(|e| format!("copying /bin/busybox: {e}"))?;
    for applet in host::output(Command::new("/bin/busybox").arg("--list-full"))?.lines() {
        let path = tree.join(applet);
        if applet.is_empty() || std::fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        link(tree, applet, "/bin/busybox")?;
    }
    Ok(())
}

/// The kernel's module list files under `<prefix>/<release>/`.
fn module_lists(tree: &Path, prefix: &str, kernel: &KernelModules) -> Result<()> {
    let dir = tree.join(prefix).join(kernel.release);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    for file in ["modules.builtin", "modules.order"] {
        std::fs::copy(kernel.dir.join(file), dir.join(file))
            .map_err(|e| format!("copying {}: {e}", kernel.dir.join(file).display()))?;
    }
    Ok(())
}

/// Debian's openrc with its libraries, booted by busybox init as Alpine boots it.
fn openrc(tree: &Path, kernel: &KernelModules) -> Result<()> {
    // dash for /bin/sh, as on Debian's OpenRC systems: Debian's busybox-static runs its applets
    // inside ash without exec, so OpenRC's check that /proc works (two `md5sum /proc/self/environ`
    // under different environments must differ) fails and it mounts a second /proc over netinit's.
    let mut packages = debs::library_closure("openrc")?;
    packages.extend(debs::library_closure("dash")?);
    packages.sort();
    packages.dedup();
    debs::unpack(&debs::download(&packages)?, tree)?;
    if std::fs::read_link(tree.join("bin/sh")).map_or(true, |t| t != Path::new("dash")) {
        return Err("the dash package no longer links /bin/sh to dash".into());
    }
    for unused in [
        "usr/share/doc",
        "usr/share/man",
        "usr/share/locale",
        "usr/share/lintian",
        "usr/lib/x86_64-linux-gnu/gconv",
    ] {
        let _ = std::fs::remove_dir_all(tree.join(unused));
    }
    base(tree)?;
    busybox(tree)?;
    put(tree, "etc/inittab", INITTAB, 0o644)?;
    put(tree, "etc/fstab", "# netinit mounts the root; nothing else to mount\n", 0o644)?;
    // Debian's OpenRC reads insserv's facility names for LSB scripts; this root has none.
    put(tree, "etc/insserv.conf", "", 0o644)?;
    std::fs::create_dir_all(tree.join("etc/insserv.conf.d")).map_err(|e| e.to_string())?;
    put(tree, "etc/init.d/modloop", MODLOOP_INITD, 0o755)?;
    put(tree, "etc/init.d/netinit-check", CHECK_INITD, 0o755)?;
    link(tree, "etc/runlevels/sysinit/cgroups", "/etc/init.d/cgroups")?;
    link(tree, "etc/runlevels/boot/modloop", "/etc/init.d/modloop")?;
    link(tree, "etc/runlevels/default/netinit-check", "/etc/init.d/netinit-check")?;
    module_lists(tree, "lib/modules", kernel)?;
    // The packages' own programs must run with the libraries found: run one inside the tree.
    if host::is_root() {
        host::output(Command::new("chroot").arg(tree).args(["/sbin/openrc", "--version"]))
            .map_err(|e| format!("openrc does not run inside its root (a library missing?): {e}"))?;
    }
    Ok(())
}

/// zinit's binaries built static for musl from crates.io, once: `cargo install` into the cache.
fn zinit_binaries() -> Result<PathBuf> {
    let root = host::cache().join(format!("zinit-{ZINIT_VERSION}"));
    let bin = root.join("bin");
    if bin.join("zinit-pid1").is_file() && bin.join("zinit-server").is_file() && bin.join("zinit").is_file() {
        return Ok(bin);
    }
    host::ensure_musl_target()?;
    eprintln!(
        "xtask: building zinit {ZINIT_VERSION} from crates.io for {} (once; a few minutes)",
        host::MUSL_TARGET
    );
    host::run(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["install", "--quiet", "--locked", "--features", "pid1", "--target", host::MUSL_TARGET])
            .arg("--root")
            .arg(&root)
            .arg(format!("zinit@{ZINIT_VERSION}"))
            .current_dir(host::cache()),
    )?;
    Ok(bin)
}

/// zinit from crates.io as the init: `/sbin/init` is `zinit-pid1`, which starts `zinit-server`
/// with the services of `/etc/zinit/services`.
fn zinit(tree: &Path, _kernel: &KernelModules) -> Result<()> {
    let bin = zinit_binaries()?;
    base(tree)?;
    for name in ["zinit", "zinit-pid1", "zinit-server"] {
        let data = std::fs::read(bin.join(name)).map_err(|e| format!("reading {name}: {e}"))?;
        if crate::elf::has_interpreter(&data)? {
            return Err(format!("{} is not statically linked", bin.join(name).display()));
        }
        std::fs::write(tree.join("usr/bin").join(name), data).map_err(|e| e.to_string())?;
        std::fs::set_permissions(tree.join("usr/bin").join(name), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
    }
    link(tree, "sbin/init", "/usr/bin/zinit-pid1")?; // before busybox, whose init it is not
    busybox(tree)?;
    put(tree, "etc/zinit/services/netinit-check.toml", ZINIT_CHECK, 0o644)?;
    put(tree, "etc/zinit/services/poweroff.toml", ZINIT_POWEROFF, 0o644)
}

/// Zero-OS's convention: `/sbin/zinit` and `/etc/zinit/`, and a `/sbin/init` beside them.
fn zos(tree: &Path, _kernel: &KernelModules) -> Result<()> {
    base(tree)?;
    put(tree, "sbin/zinit", ZINIT_STUB, 0o755)?;
    put(tree, "sbin/init", WRONG_INIT, 0o755)?;
    busybox(tree)?;
    put(tree, "etc/zinit/x.yaml", ZOS_SERVICE, 0o644)
}

/// Alpine's modules-only modloop: `modules/<release>/...` and `modules/firmware/`, nothing else.
fn modloop_only(tree: &Path, kernel: &KernelModules) -> Result<()> {
    module_lists(tree, "modules", kernel)?;
    std::fs::create_dir_all(tree.join("modules/firmware")).map_err(|e| e.to_string())
}
