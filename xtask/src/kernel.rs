//! The test kernel: a Debian kernel package, fetched with `apt-get download` and unpacked with
//! `dpkg -x` into `target/netinit-cache/kernel/`, once. Its version is pinned here and nowhere else.

use crate::host::{self, Result};
use std::path::PathBuf;

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
    host::unpack_deb(PACKAGE, &dir)?;
    if !kernel.vmlinuz.is_file() || !kernel.modules_dir.is_dir() {
        return Err(format!(
            "{PACKAGE} unpacked without {} or {}",
            kernel.vmlinuz.display(),
            kernel.modules_dir.display()
        ));
    }
    Ok(kernel)
}
