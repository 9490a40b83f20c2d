//! The test kernel: a Debian kernel package, fetched with `apt-get download` and unpacked with
//! `dpkg -x` into `target/netinit-cache/kernel/`, once. Its version is pinned here and nowhere else.

use std::path::PathBuf;
use std::process::Command;

use crate::host::{self, Result};

/// The Debian kernel the VM tests boot. The cloud flavour is small (26 MB) and has virtio, loop,
/// squashfs and overlay as modules, so the init must really load them.
pub const PACKAGE: &str = "linux-image-6.1.0-56-cloud-amd64";
pub const RELEASE: &str = "6.1.0-56-cloud-amd64";

pub struct Kernel {
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>`.
    pub modules_dir: PathBuf,
}

pub fn ensure() -> Result<Kernel> {
    let dir = host::cache().join("kernel").join(PACKAGE);
    let kernel = Kernel {
        vmlinuz: dir.join(format!("boot/vmlinuz-{RELEASE}")),
        modules_dir: dir.join(format!("lib/modules/{RELEASE}")),
    };
    if dir.join(".complete").is_file() {
        return Ok(kernel);
    }
    let download = host::cache().join("kernel/download");
    let _ = std::fs::remove_dir_all(&download);
    std::fs::create_dir_all(&download).map_err(|e| format!("creating {}: {e}", download.display()))?;
    eprintln!("xtask: fetching the test kernel {PACKAGE}");
    let fetch =
        || host::run(Command::new("apt-get").args(["download", "-q", PACKAGE]).current_dir(&download));
    if fetch().is_err() {
        // A fresh machine may have no package lists yet.
        host::run(Command::new("apt-get").args(["update", "-q"]))?;
        fetch()?;
    }
    let deb = std::fs::read_dir(&download)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| format!("apt-get download {PACKAGE} left no .deb"))?;
    let unpack = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&unpack);
    host::run(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpack))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&unpack, &dir).map_err(|e| format!("renaming {}: {e}", unpack.display()))?;
    std::fs::write(dir.join(".complete"), PACKAGE).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&download);
    if !kernel.vmlinuz.is_file() || !kernel.modules_dir.is_dir() {
        return Err(format!(
            "{PACKAGE} unpacked without {} or {}",
            kernel.vmlinuz.display(),
            kernel.modules_dir.display()
        ));
    }
    Ok(kernel)
}
