//! Debian packages for the test roots: a package and the libraries it needs, found with
//! `apt-cache depends`, fetched with `apt-get download` into `target/netinit-cache/debs/` (once),
//! and unpacked with `dpkg -x`. The machine's apt configuration is used as it is, never changed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::arch::Arch;
use crate::host::{self, Result};

/// The dependencies of one package that `apt-cache depends` prints, as `Depends:` and
/// `PreDepends:` lines (alternatives `|Depends:` count; virtual packages `<name>` do not).
pub fn parse_depends(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim().trim_start_matches('|');
            l.strip_prefix("Depends:").or_else(|| l.strip_prefix("PreDepends:"))
        })
        .map(str::trim)
        .filter(|name| !name.starts_with('<'))
        .map(|name| name.split(':').next().unwrap_or(name).to_owned()) // libc6:amd64
        .collect()
}

/// `root` and, recursively, the shared libraries it depends on: Debian names every library package
/// `lib*`. Programs it depends on (`insserv`, `debconf`) are left out: a test root needs the
/// package's own programs to run, not its maintainer scripts.
pub fn library_closure(root: &str) -> Result<Vec<String>> {
    ensure_lists(root)?;
    let mut seen = BTreeSet::from([root.to_owned()]);
    let mut queue = vec![root.to_owned()];
    while let Some(pkg) = queue.pop() {
        let out = host::output(Command::new("apt-cache").args([
            "depends",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            &pkg,
        ]))?;
        for dep in parse_depends(&out) {
            if dep.starts_with("lib") && seen.insert(dep.clone()) {
                queue.push(dep);
            }
        }
    }
    Ok(seen.into_iter().collect())
}

/// A fresh machine may have no package lists yet: `apt-get update` once when `apt-cache` does not
/// know `pkg`.
fn ensure_lists(pkg: &str) -> Result<()> {
    if host::output(Command::new("apt-cache").args(["show", "--no-all-versions", pkg])).is_ok() {
        return Ok(());
    }
    host::run(Command::new("apt-get").args(["update", "-q"]).env("DEBIAN_FRONTEND", "noninteractive"))
}

/// The cached `.deb` of `pkg`, if any (`pkg_version_arch.deb`).
fn cached(dir: &Path, pkg: &str) -> Option<PathBuf> {
    let prefix = format!("{pkg}_");
    std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).find(|p| {
        p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
            && p.extension().is_some_and(|x| x == "deb")
    })
}

/// The `.deb` files of `packages`, downloading those not yet in the cache.
pub fn download(packages: &[String]) -> Result<Vec<PathBuf>> {
    let dir = host::cache().join("debs");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let missing: Vec<&String> = packages.iter().filter(|p| cached(&dir, p).is_none()).collect();
    if !missing.is_empty() {
        eprintln!("xtask: fetching {} Debian packages for the test roots", missing.len());
        host::run(Command::new("apt-get").args(["download", "-q"]).args(&missing).current_dir(&dir))?;
    }
    packages
        .iter()
        .map(|p| cached(&dir, p).ok_or_else(|| format!("apt-get download {p} left no .deb")))
        .collect()
}

/// `dpkg -x` of each package into `tree`.
pub fn unpack(debs: &[PathBuf], tree: &Path) -> Result<()> {
    for deb in debs {
        host::run(Command::new("dpkg").arg("-x").arg(deb).arg(tree))?;
    }
    Ok(())
}

/// A static busybox for `arch`: the host's `/bin/busybox` (busybox-static) for x86_64; for another
/// machine Debian's busybox-static of that architecture, unpacked under
/// `target/netinit-cache/<arch>/busybox-static/` (see `kernel::foreign_apt`).
pub fn busybox(arch: Arch) -> Result<PathBuf> {
    if arch == Arch::X86_64 {
        return Ok(PathBuf::from(crate::BUSYBOX));
    }
    let dir = host::cache().join(arch.debian()).join("busybox-static");
    crate::kernel::unpack_foreign("busybox-static", arch, &dir)?;
    Ok(dir.join("bin/busybox"))
}

/// chronyd unpacked under the cache, and the directories of the libraries it needs.
pub struct Chrony {
    pub chronyd: PathBuf,
    pub libraries: std::ffi::OsString,
}

/// Debian's chrony, for `lab: ntp`: downloaded and unpacked with its libraries (not the C library,
/// which must be the host's own, to match its loader) instead of installed, which would start a
/// time service on the host.
pub fn chrony() -> Result<Chrony> {
    let tree = host::cache().join("chrony");
    let chronyd = tree.join("usr/sbin/chronyd");
    if !chronyd.is_file() {
        let mut packages = library_closure("chrony")?;
        packages.retain(|p| p != "libc6");
        let _ = std::fs::remove_dir_all(&tree);
        unpack(&download(&packages)?, &tree)?;
    }
    let dirs = ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"].map(|d| tree.join(d));
    let libraries = std::env::join_paths(dirs).map_err(|e| e.to_string())?;
    Ok(Chrony { chronyd, libraries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_as_apt_cache_prints_them() {
        let text = "openrc\n  Depends: insserv\n  Depends: libc6\n  PreDepends: libzstd1\n |Depends: libpam0g\n  Depends: <debconf-2.0>\n  Conflicts: sysv-rc\n  Suggests: policycoreutils\n  Depends: libaudit1:amd64\n";
        assert_eq!(parse_depends(text), ["insserv", "libc6", "libzstd1", "libpam0g", "libaudit1"]);
    }
}
