//! The test kernels: Debian kernel packages, fetched with `apt-get download` and unpacked with
//! `dpkg -x` into `target/netinit-cache/kernel/<package>/`, once each. Their versions are pinned
//! here and nowhere else. Debian 12's come through the machine's own apt sources; Debian 13's
//! through a sources file and package lists of xtask's own (`target/netinit-cache/apt/`), so the
//! machine's apt configuration is never changed ([`own_apt`] also fetches Debian 12's
//! `non-free-firmware` for the firmware check). Debian 12's arm64 kernel comes through another
//! sources file and lists of xtask's own, the machine's suites for arm64 ([`foreign_apt`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::arch::Arch;
use crate::host::{self, Result};
use crate::kmod;

/// A pinned test kernel.
#[derive(Debug, PartialEq, Eq)]
pub struct Spec {
    /// What scenarios call it: `boot-dhcp-http@6.12`.
    pub name: &'static str,
    pub package: &'static str,
    pub release: &'static str,
    /// `None`: from the machine's apt sources; `Some(suite)`: from that Debian suite, through
    /// xtask's own sources file.
    pub suite: Option<&'static str>,
    /// The machine it runs on; another than x86_64 comes through [`foreign_apt`].
    pub arch: Arch,
}

/// Debian 12's cloud kernel: small (26 MB) with virtio, loop, squashfs and overlay as plain `.ko`
/// modules, so the init must really load them. The default: every scenario boots it.
pub const DEBIAN_12: Spec = Spec {
    name: "6.1",
    package: "linux-image-6.1.0-56-cloud-amd64",
    release: "6.1.0-56-cloud-amd64",
    suite: None,
    arch: Arch::X86_64,
};

/// Debian 13's cloud kernel: usr-merged (`usr/lib/modules`), its modules `.ko.xz`.
pub const DEBIAN_13: Spec = Spec {
    name: "6.12",
    package: "linux-image-6.12.117+deb13-cloud-amd64",
    release: "6.12.117+deb13-cloud-amd64",
    suite: Some("trixie"),
    arch: Arch::X86_64,
};

/// Debian 12's generic kernel: every driver of real hardware as a module (e1000, e1000e, r8169,
/// the RAID and HBA drivers), and the firmware they declare, so it shows what a server's initramfs
/// weighs. Selected by name only: `kernels: all` stays the two cloud kernels, to keep test time.
pub const DEBIAN_12_GENERIC: Spec = Spec {
    name: "6.1-generic",
    package: "linux-image-6.1.0-56-amd64",
    release: "6.1.0-56-amd64",
    suite: None,
    arch: Arch::X86_64,
};

/// Debian 12's arm64 kernel (there is no arm64 cloud flavour in Debian 12): the default, and the
/// only one, of `arch: aarch64` scenarios and `--arch aarch64`. Its virtio_pci, virtio_net, loop,
/// squashfs and overlay are modules, as on the x86 cloud kernel; its `vmlinuz` is an
/// uncompressed `Image` with the EFI stub, which qemu's `-kernel` takes as it is, for direct boot
/// and through UEFI firmware alike ([`ensure`] would decompress a gzipped one).
pub const DEBIAN_12_ARM64: Spec = Spec {
    name: "6.1-arm64",
    package: "linux-image-6.1.0-56-arm64",
    release: "6.1.0-56-arm64",
    suite: None,
    arch: Arch::Aarch64,
};

/// The test kernels that `kernels: all` runs, the default first.
pub const ALL: [&Spec; 2] = [&DEBIAN_12, &DEBIAN_13];

/// Every test kernel, those of [`ALL`] first, then those selected by name only.
pub const KNOWN: [&Spec; 4] = [&DEBIAN_12, &DEBIAN_13, &DEBIAN_12_GENERIC, &DEBIAN_12_ARM64];

/// The default test kernel of `arch`.
pub fn default_for(arch: Arch) -> &'static Spec {
    match arch {
        Arch::X86_64 => ALL[0],
        Arch::Aarch64 => &DEBIAN_12_ARM64,
    }
}

pub fn by_name(name: &str) -> Option<&'static Spec> {
    KNOWN.into_iter().find(|k| k.name == name)
}

pub struct Kernel {
    pub spec: &'static Spec,
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` or `usr/lib/modules/<release>`.
    pub modules_dir: PathBuf,
}

/// The kernel, fetched and unpacked if it is not in the cache yet.
pub fn ensure(spec: &'static Spec) -> Result<Kernel> {
    let dir = host::cache().join("kernel").join(spec.package);
    if !dir.join(".complete").is_file() {
        fetch(spec, &dir)?;
    }
    let vmlinuz = dir.join(format!("boot/vmlinuz-{}", spec.release));
    let modules_dir = kmod::find_release_dir(&dir)?;
    if !vmlinuz.is_file() || kmod::release_of(&modules_dir)? != spec.release {
        return Err(format!(
            "{} unpacked without {} or modules for {}",
            spec.package,
            vmlinuz.display(),
            spec.release
        ));
    }
    let vmlinuz = bootable(&vmlinuz)?;
    Ok(Kernel { spec, vmlinuz, modules_dir })
}

/// The kernel file qemu's `-kernel` boots. An arm64 `vmlinuz` that is a gzipped `Image` (as some
/// distributions ship it) is decompressed beside it once, as a boot loader would: qemu takes a
/// gzipped Image for direct boot, but its UEFI path hands the file to the firmware, whose EFI stub
/// must be a plain PE. Debian 12's is plain already, and x86's bzImage is always booted as it is.
fn bootable(vmlinuz: &Path) -> Result<PathBuf> {
    let mut magic = [0u8; 2];
    std::fs::File::open(vmlinuz)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .map_err(|e| format!("reading {}: {e}", vmlinuz.display()))?;
    if magic != [0x1f, 0x8b] {
        return Ok(vmlinuz.to_path_buf());
    }
    let image = vmlinuz.with_extension("image");
    if !image.is_file() {
        let data = std::fs::read(vmlinuz).map_err(|e| format!("reading {}: {e}", vmlinuz.display()))?;
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&data[..]), &mut out)
            .map_err(|e| format!("gunzip of {}: {e}", vmlinuz.display()))?;
        let partial = image.with_extension("partial");
        std::fs::write(&partial, out)
            .and_then(|()| std::fs::rename(&partial, &image))
            .map_err(|e| format!("writing {}: {e}", image.display()))?;
    }
    Ok(image)
}

fn fetch(spec: &Spec, dir: &Path) -> Result<()> {
    if spec.arch != Arch::X86_64 {
        return unpack_foreign(spec.package, spec.arch, dir);
    }
    match spec.suite {
        None => host::unpack_deb(spec.package, dir),
        Some(suite) => {
            let apt = own_apt(suite, "main")?;
            host::unpack_deb_with(spec.package, dir, &|download: &Path| {
                host::run(apt().args(["update", "-q"]))?;
                host::run(apt().args(["download", "-q", spec.package]).current_dir(download))
            })
        }
    }
}

/// The archive key that signs Debian's suites. Debian 12's keyring verifies Debian 13 too: trixie's
/// `InRelease` is signed with the 12/bookworm automatic key as well as 13's (and 2023.3+deb12u2 has
/// 13's keys).
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// An `apt-get` that reads only xtask's sources file for `suite`'s `component` and keeps its lists
/// and cache under `target/netinit-cache/apt/<suite>-<component>/`. The mirror is the machine's own
/// (the one its apt sources use for its release), or `NETINIT_DEBIAN_MIRROR`.
pub fn own_apt(suite: &str, component: &str) -> Result<impl Fn() -> Command> {
    let mirror = match std::env::var("NETINIT_DEBIAN_MIRROR") {
        Ok(m) if !m.is_empty() => m,
        _ => machine_mirror()?,
    };
    if !Path::new(KEYRING).is_file() {
        return Err(format!("{KEYRING} is missing: install debian-archive-keyring"));
    }
    // One directory per sources file: `apt-get update` drops the lists its sources do not name.
    let root = host::cache().join("apt").join(format!("{suite}-{component}"));
    for d in ["lists/partial", "cache/archives/partial"] {
        std::fs::create_dir_all(root.join(d)).map_err(|e| format!("creating {}: {e}", root.display()))?;
    }
    let sources = root.join(format!("{suite}-{component}.sources"));
    let text = format!(
        "Types: deb\nURIs: {mirror}\nSuites: {suite}\nComponents: {component}\nArchitectures: amd64\n\
         Targets: Packages\nSigned-By: {KEYRING}\n"
    );
    std::fs::write(&sources, text).map_err(|e| format!("writing {}: {e}", sources.display()))?;
    Ok(move || {
        let mut c = Command::new("apt-get");
        let dir = |name: &str| root.join(name).display().to_string();
        c.arg("-o").arg(format!("Dir::Etc::sourcelist={}", sources.display()));
        c.args(["-o", "Dir::Etc::sourceparts=-"]);
        c.arg("-o").arg(format!("Dir::State::Lists={}", dir("lists")));
        c.arg("-o").arg(format!("Dir::Cache={}", dir("cache")));
        c
    })
}

/// Unpacks `arch`'s Debian `package` from the machine's suites into `dir` once (see [`foreign_apt`]).
pub fn unpack_foreign(package: &str, arch: Arch, dir: &Path) -> Result<()> {
    let apt = foreign_apt(arch)?;
    host::unpack_deb_with(package, dir, &|download: &Path| {
        host::run(apt().args(["update", "-q"]))?;
        host::run(apt().args(["download", "-q", package]).current_dir(download))
    })
}

/// An `apt-get` for `arch`'s packages of the machine's own suites (its release, -updates,
/// -security: Debian 12's kernels are in -security), through a sources file, lists and cache of
/// xtask's own under `target/netinit-cache/apt/<arch>/` and `APT::Architecture`, never the
/// machine's configuration (whose dpkg needs no foreign architecture for `apt-get download`).
pub fn foreign_apt(arch: Arch) -> Result<impl Fn() -> Command> {
    if !Path::new(KEYRING).is_file() {
        return Err(format!("{KEYRING} is missing: install debian-archive-keyring"));
    }
    let (codename, targets) = apt_targets()?;
    let text = foreign_sources(&targets, &codename, arch.debian()).ok_or_else(|| {
        format!(
            "no Debian suite of this machine's release ({codename:?}) in its apt sources, to fetch \
             {} packages from",
            arch.debian()
        )
    })?;
    let root = host::cache().join("apt").join(arch.debian());
    for d in ["lists/partial", "cache/archives/partial"] {
        std::fs::create_dir_all(root.join(d)).map_err(|e| format!("creating {}: {e}", root.display()))?;
    }
    let sources = root.join(format!("{}.sources", arch.debian()));
    std::fs::write(&sources, text).map_err(|e| format!("writing {}: {e}", sources.display()))?;
    let debian = arch.debian();
    Ok(move || {
        let mut c = Command::new("apt-get");
        let dir = |name: &str| root.join(name).display().to_string();
        c.arg("-o").arg(format!("APT::Architecture={debian}"));
        c.arg("-o").arg(format!("APT::Architectures={debian}"));
        c.arg("-o").arg(format!("Dir::Etc::sourcelist={}", sources.display()));
        c.args(["-o", "Dir::Etc::sourceparts=-"]);
        c.arg("-o").arg(format!("Dir::State::Lists={}", dir("lists")));
        c.arg("-o").arg(format!("Dir::Cache={}", dir("cache")));
        c
    })
}

/// A sources file for `arch` of the machine's `codename` suites (`bookworm`, `bookworm-updates`,
/// `bookworm-security`), main only, from `apt-get indextargets` lines `RELEASE COMPONENT URI`.
fn foreign_sources(targets: &str, codename: &str, arch: &str) -> Option<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut text = String::new();
    for line in targets.lines() {
        let [release, "main", uri] = line.split_whitespace().collect::<Vec<_>>()[..] else { continue };
        let ours = release == codename || release.strip_prefix(codename).is_some_and(|r| r.starts_with('-'));
        if !codename.is_empty() && ours && seen.insert((release, uri)) {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&format!(
                "Types: deb\nURIs: {uri}\nSuites: {release}\nComponents: main\nArchitectures: {arch}\n\
                 Targets: Packages\nSigned-By: {KEYRING}\n"
            ));
        }
    }
    seen.iter().any(|(r, _)| *r == codename).then_some(text)
}

/// The machine's release codename (`/etc/os-release`) and its apt's package index targets, as
/// `apt-get indextargets` lines `RELEASE COMPONENT URI`.
fn apt_targets() -> Result<(String, String)> {
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = os
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .unwrap_or("")
        .trim_matches('"')
        .to_owned();
    let targets = host::output(Command::new("apt-get").args([
        "indextargets",
        "--no-release-info",
        "--format",
        "$(RELEASE) $(COMPONENT) $(REPO_URI)",
        "Identifier: Packages",
    ]))?;
    Ok((codename, targets))
}

/// The Debian mirror the machine's apt uses for its own release's main component.
fn machine_mirror() -> Result<String> {
    let (codename, targets) = apt_targets()?;
    mirror_for(&targets, &codename).ok_or_else(|| {
        format!(
            "no Debian mirror for this machine's release ({codename:?}) in its apt sources, to fetch \
             Debian's kernels from: set NETINIT_DEBIAN_MIRROR to a Debian mirror's URL"
        )
    })
}

/// From `apt-get indextargets` lines `RELEASE COMPONENT URI`, the URI of `codename`'s main.
fn mirror_for(targets: &str, codename: &str) -> Option<String> {
    targets.lines().find_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
        [release, "main", uri] if release == codename && !codename.is_empty() => Some(uri.to_owned()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors() {
        let targets = "bookworm-security main http://security.example/debian-security/\n\
                       bookworm contrib http://contrib.example/debian/\n\
                       bookworm main http://mirror.example/debian/\n\
                       bookworm main http://second.example/debian/\n";
        assert_eq!(mirror_for(targets, "bookworm").as_deref(), Some("http://mirror.example/debian/"));
        assert_eq!(mirror_for(targets, "trixie"), None);
        assert_eq!(mirror_for(targets, ""), None);
    }

    #[test]
    fn foreign_sources_are_the_machines_suites() {
        let targets = "bookworm-security main http://security.example/debian-security/\n\
                       bookworm contrib http://mirror.example/debian/\n\
                       bookworm main http://mirror.example/debian/\n\
                       bookworm main http://mirror.example/debian/\n\
                       bookworm-updates main http://mirror.example/debian/\n\
                       trixie main http://mirror.example/debian/\n";
        let text = foreign_sources(targets, "bookworm", "arm64").unwrap();
        let suites: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("Suites: ")).collect();
        assert_eq!(suites, ["bookworm-security", "bookworm", "bookworm-updates"]);
        assert_eq!(text.lines().filter(|l| *l == "Architectures: arm64").count(), 3);
        assert!(text.contains("URIs: http://security.example/debian-security/\nSuites: bookworm-security\n"));
        assert_eq!(foreign_sources("bookworm-security main http://s/\n", "bookworm", "arm64"), None);
        assert_eq!(foreign_sources(targets, "", "arm64"), None);
    }

    #[test]
    fn kernels_have_distinct_names() {
        assert_eq!(by_name("6.12"), Some(&DEBIAN_13));
        assert_eq!(ALL[0], &DEBIAN_12, "the default comes first");
        assert!(ALL.iter().all(|k| k.package.ends_with(k.release)));
        assert_eq!(by_name("5.10"), None);
        assert_eq!(by_name("6.1-generic"), Some(&DEBIAN_12_GENERIC));
        assert!(!ALL.contains(&&DEBIAN_12_GENERIC), "kernels: all stays the cloud kernels");
        assert!(KNOWN.iter().all(|k| KNOWN.iter().filter(|o| o.name == k.name).count() == 1));
        assert!(ALL.iter().all(|k| k.arch == Arch::X86_64), "kernels: all stays x86_64");
        assert_eq!(default_for(Arch::Aarch64).arch, Arch::Aarch64);
        assert_eq!(default_for(Arch::X86_64), ALL[0]);
    }
}
