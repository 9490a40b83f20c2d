//! The LACP partner VM of `lab: lacp-partner`: the switch at the other end of a guest's 802.3ad
//! bond, because the machines that run the tests may have no `bonding` module of their own (this
//! one has none) and a bond's partner must speak LACP. It is a second qemu in the lab's namespace:
//! Debian 12's cloud kernel (the scenarios' default kernel), an initramfs of busybox, the kernel's
//! `bonding`, `bridge` and virtio modules (with their dependencies), and
//! `guest/lacp-partner-init.sh`, which bonds its NICs 0 and 1 (the guest's NICs 0 and 1, each pair
//! joined by qemu `-netdev socket` UDP ports on the namespace's loopback) and bridges the bond with
//! its NIC 2, a tap on the lab's bridge. Its console goes to the lab log `partner`.
//!
//! It does not emulate a switch's LACP in xtask: the kernel's own bonding at both ends is the test.

use std::path::{Path, PathBuf};

use crate::host::Result;
use crate::{host, initramfs, kernel, kmod};

const INIT: &str = include_str!("../guest/lacp-partner-init.sh");
/// What the partner loads, dependencies (`stp`, `llc`, the virtio transport) resolved by `kmod`.
const MODULES: [&str; 4] = ["virtio_pci", "virtio_net", "bonding", "bridge"];
/// The partner's NICs' MACs: `52:54:00:00:0b:01`... (the guest's are `0a:`).
pub fn mac(i: usize) -> String {
    format!("52:54:00:00:0b:{:02x}", i + 1)
}

/// The tap of the partner's NIC 2 on the lab's bridge.
pub const UPLINK_TAP: &str = "tappartner";

/// The UDP ports, on the lab's loopback, of link `i` (guest NIC `i` to partner NIC `i`): the
/// partner's end and the guest's.
pub fn link_ports(i: usize) -> (String, String) {
    let port = 41000 + 2 * i;
    (format!("127.0.0.1:{port}"), format!("127.0.0.1:{}", port + 1))
}

/// The kernel and the partner's initramfs (built once per recipe, under the cache).
pub struct Partner {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// Builds the partner's initramfs for the default test kernel, unless the cache has it for the
/// same script.
pub fn ensure() -> Result<Partner> {
    let k = kernel::ensure(kernel::ALL[0])?;
    let dir = host::cache().join("partner");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let stamp = format!("{:x}", crate::image::fnv(format!("{INIT}{MODULES:?}{}", k.spec.release).as_bytes()));
    let initrd = dir.join(format!("partner-{stamp}.cpio.gz"));
    if !initrd.is_file() {
        let tree = kmod::Tree::open(&k.modules_dir)?;
        let packing = initramfs::compression_for(tree.config().as_ref().map(|(_, text)| text.as_str()))
            .ok_or("the kernel unpacks neither gzip nor zstd")?;
        let partial = dir.join("partner.partial");
        initramfs::busybox_initramfs(&tree, &MODULES, &[("init", INIT.as_bytes())], &partial, packing)?;
        std::fs::rename(&partial, &initrd).map_err(|e| format!("renaming {}: {e}", partial.display()))?;
    }
    Ok(Partner { kernel: k.vmlinuz, initrd })
}

/// qemu's arguments for the partner: its console into `console`, links 0 and 1 to the guest's
/// NICs 0 and 1 (both ends with a speed and full duplex: 802.3ad aggregates only full-duplex
/// ports of one speed, and virtio-net reports neither unless told), NIC 2 on [`UPLINK_TAP`].
pub fn qemu_args(p: &Partner, console: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-smp",
        "1",
        "-m",
        "256",
        "-nodefaults",
        "-no-reboot",
        "-display",
        "none",
    ]
    .map(str::to_owned)
    .to_vec();
    args.push("-serial".into());
    args.push(format!("file:{}", console.display()));
    args.extend([
        "-kernel".into(),
        p.kernel.display().to_string(),
        "-initrd".into(),
        p.initrd.display().to_string(),
    ]);
    args.extend(["-append".into(), "console=ttyS0 quiet panic=-1".into()]);
    for i in 0..2 {
        let (partner, guest) = link_ports(i);
        args.push("-netdev".into());
        args.push(format!("socket,id=p{i},udp={guest},localaddr={partner}"));
        args.push("-device".into());
        args.push(format!("virtio-net-pci,netdev=p{i},mac={},{LINK_PROPERTIES},romfile=", mac(i)));
    }
    args.push("-netdev".into());
    args.push(format!("tap,id=p2,ifname={UPLINK_TAP},script=no,downscript=no"));
    args.push("-device".into());
    args.push(format!("virtio-net-pci,netdev=p2,mac={},romfile=", mac(2)));
    args
}

/// The speed and duplex both ends of a link report.
pub const LINK_PROPERTIES: &str = "speed=1000,duplex=full";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_links_pair_the_guests_nics_with_the_partners() {
        let p = Partner { kernel: "/k".into(), initrd: "/i".into() };
        let args = qemu_args(&p, Path::new("/l/partner.log"));
        let joined = args.join(" ");
        assert!(joined.contains("-serial file:/l/partner.log"), "{joined}");
        assert!(joined.contains("-kernel /k -initrd /i"), "{joined}");
        assert!(joined.contains("socket,id=p0,udp=127.0.0.1:41001,localaddr=127.0.0.1:41000"), "{joined}");
        assert!(joined.contains("socket,id=p1,udp=127.0.0.1:41003,localaddr=127.0.0.1:41002"), "{joined}");
        assert!(
            joined.contains("virtio-net-pci,netdev=p1,mac=52:54:00:00:0b:02,speed=1000,duplex=full,romfile=")
        );
        assert!(joined.contains("tap,id=p2,ifname=tappartner,script=no,downscript=no"), "{joined}");
        assert!(UPLINK_TAP.len() <= 15);
    }
}
