//! `cargo xtask cpio`: build `/init` for musl, check it is static, resolve `modules-list` against a
//! kernel's modules, and write a reproducible, gzip-compressed newc archive.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::host::{self, Result};
use crate::kmod;

/// Builds the init for musl in release mode and returns its path.
pub fn build_init() -> Result<PathBuf> {
    host::ensure_musl_target()?;
    host::ensure_musl_cc()?;
    host::run(
        host::cargo()
            .args(["build", "--quiet", "--release", "--package", "netinit", "--target", host::MUSL_TARGET])
            .env("CC_x86_64_unknown_linux_musl", "musl-gcc"),
    )?;
    let path = host::root().join("target").join(host::MUSL_TARGET).join("release/netinit");
    let data = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    if crate::elf::has_interpreter(&data)? {
        return Err(format!(
            "{} asks for a program interpreter: it is not statically linked",
            path.display()
        ));
    }
    Ok(path)
}

/// What goes into an initramfs.
pub struct Contents<'a> {
    /// The `/init` binary.
    pub init: &'a Path,
    /// A kernel's `lib/modules/<release>` directory.
    pub modules_dir: &'a Path,
    /// The `modules-list` file.
    pub list: &'a Path,
    /// A static busybox, for the rescue shell.
    pub shell: Option<&'a Path>,
    /// minisign public key files, packed as `/etc/netinit/keys/<file name>`.
    pub trust: &'a [PathBuf],
    /// PEM CA certificates for https, packed as `/etc/netinit/ca/<file name>`.
    pub ca: &'a [PathBuf],
}

/// Checks an initramfs built by [`write`]: the real `cpio` lists the entries the init needs, and a
/// second build from the same inputs gives the same bytes.
pub fn verify(built: &Path, contents: &Contents) -> Result<()> {
    use std::io::Read;
    let modules_dir = contents.modules_dir;
    let again = built.with_extension("again");
    write(contents, &again)?;
    let (a, b) =
        (std::fs::read(built).map_err(|e| e.to_string())?, std::fs::read(&again).map_err(|e| e.to_string())?);
    let _ = std::fs::remove_file(&again);
    if a != b {
        return Err(format!(
            "two builds of {} from the same inputs differ: not reproducible",
            built.display()
        ));
    }
    let mut cpio_bytes = Vec::new();
    flate2::read::GzDecoder::new(&a[..])
        .read_to_end(&mut cpio_bytes)
        .map_err(|e| format!("gunzip {}: {e}", built.display()))?;
    let mut child = std::process::Command::new("cpio")
        .args(["-t", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("running cpio: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&cpio_bytes).map_err(|e| format!("feeding cpio: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let listed = String::from_utf8_lossy(&out.stdout);
    let release = kmod::release_of(modules_dir)?;
    for needed in [
        "init".to_string(),
        "dev/console".into(),
        "dev/kmsg".into(),
        format!("lib/modules/{release}/modules.dep"),
        format!("lib/modules/{release}/kernel/fs/squashfs/squashfs.ko"),
        format!("lib/modules/{release}/kernel/drivers/net/virtio_net.ko"),
    ] {
        if !listed.lines().any(|l| l == needed) {
            return Err(format!("cpio -t does not list {needed} in {}", built.display()));
        }
    }
    Ok(())
}

/// A minisign public key file: an optional comment line, then base64 of 42 bytes ("Ed" + key id + key).
fn looks_like_minisign_key(text: &str) -> bool {
    let key = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"));
    key.is_some_and(|k| {
        k.len() == 56
            && k.starts_with("RW")
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    })
}

pub struct Built {
    pub init_size: u64,
    pub archive_size: u64,
    pub modules: usize,
}

/// busybox applets linked in the initramfs with `--shell`: enough to look around and mend a boot.
const RESCUE_APPLETS: &[&str] = &[
    "sh",
    "ash",
    "ls",
    "cat",
    "cp",
    "mv",
    "rm",
    "ln",
    "mkdir",
    "mount",
    "umount",
    "ip",
    "ping",
    "wget",
    "dmesg",
    "ps",
    "kill",
    "df",
    "free",
    "grep",
    "sed",
    "awk",
    "vi",
    "less",
    "head",
    "tail",
    "modprobe",
    "insmod",
    "lsmod",
    "sync",
    "sleep",
    "tar",
    "gzip",
    "sha256sum",
    "losetup",
    "chroot",
    "switch_root",
];

/// Writes the initramfs to `output`. With a shell, a static busybox from the host goes in as
/// `/bin/busybox` with `/bin/sh` and the rescue applets linked to it.
pub fn write(contents: &Contents, output: &Path) -> Result<Built> {
    let Contents { init, modules_dir, list, shell, trust, ca } = *contents;
    let init_bytes = std::fs::read(init).map_err(|e| format!("reading {}: {e}", init.display()))?;
    let list_text = std::fs::read_to_string(list).map_err(|e| format!("reading {}: {e}", list.display()))?;
    let wanted = kmod::parse_list(&list_text);
    let release = kmod::release_of(modules_dir)?;
    let files = kmod::index(modules_dir)?;
    let builtin = kmod::builtin(modules_dir);
    let resolved =
        kmod::resolve(&wanted, &files, &builtin, &mut |rel| kmod::read_depends(&modules_dir.join(rel)))?;
    if !resolved.missing.is_empty() {
        eprintln!(
            "xtask: {} names {} modules that kernel {release} does not have; skipped: {}",
            list.display(),
            resolved.missing.len(),
            resolved.missing.join(" ")
        );
    }

    let mut a = mkcpio::Archive::new(0);
    let e = |e: mkcpio::PathError| e.to_string();
    a.file("init", 0o755, init_bytes.clone()).map_err(e)?;
    a.char_device("dev/console", 0o600, 5, 1).map_err(e)?;
    a.char_device("dev/kmsg", 0o644, 1, 11).map_err(e)?;
    a.char_device("dev/null", 0o666, 1, 3).map_err(e)?;
    for dir in ["proc", "sys", "run", "newroot", "etc", "tmp"] {
        a.dir(dir, 0o755).map_err(e)?;
    }
    if let Some(busybox) = shell {
        let data = std::fs::read(busybox).map_err(|err| format!("reading {}: {err}", busybox.display()))?;
        if crate::elf::has_interpreter(&data)? {
            return Err(format!("{} is not statically linked: install busybox-static", busybox.display()));
        }
        a.file("bin/busybox", 0o755, data).map_err(e)?;
        for applet in RESCUE_APPLETS {
            a.symlink(&format!("bin/{applet}"), "busybox").map_err(e)?;
        }
    }
    for key in trust {
        let text = std::fs::read_to_string(key).map_err(|e| format!("reading {}: {e}", key.display()))?;
        if !looks_like_minisign_key(&text) {
            return Err(format!("{} is not a minisign public key (minisign -G writes one)", key.display()));
        }
        let name = key.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        a.file(&format!("etc/netinit/keys/{name}"), 0o644, text.into_bytes()).map_err(e)?;
    }
    for cert in ca {
        let text = std::fs::read_to_string(cert).map_err(|e| format!("reading {}: {e}", cert.display()))?;
        if !text.contains("-----BEGIN CERTIFICATE-----") {
            return Err(format!("{} holds no PEM certificate", cert.display()));
        }
        let name = cert.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        a.file(&format!("etc/netinit/ca/{name}"), 0o644, text.into_bytes()).map_err(e)?;
    }
    let base = format!("lib/modules/{release}");
    for m in resolved.modules.values() {
        let data = std::fs::read(kmod::module_path(modules_dir, m))
            .map_err(|err| format!("reading {}: {err}", m.path))?;
        a.file(&format!("{base}/{}", m.path), 0o644, data).map_err(e)?;
    }
    a.file(&format!("{base}/modules.dep"), 0o644, kmod::modules_dep(&resolved.modules).into_bytes())
        .map_err(e)?;

    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let tmp = output.with_extension("partial");
    let file = std::fs::File::create(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    // mtime 0 and no file name in the gzip header: the bytes depend only on the archive.
    let mut gz =
        flate2::GzBuilder::new().mtime(0).write(std::io::BufWriter::new(file), flate2::Compression::best());
    a.write_to(&mut gz).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    gz.finish().and_then(|mut w| w.flush()).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, output).map_err(|e| format!("renaming to {}: {e}", output.display()))?;
    let archive_size = std::fs::metadata(output).map(|m| m.len()).unwrap_or(0);
    Ok(Built { init_size: init_bytes.len() as u64, archive_size, modules: resolved.modules.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minisign_keys() {
        assert!(looks_like_minisign_key(
            "untrusted comment: minisign public key 728A06123EA29210\nRWQQkqI+EgaKcqAhhFLn9RZEqOoX5zT7IHIU3GN8gc2typr19Q6zFNTx\n"
        ));
        assert!(looks_like_minisign_key("RWQQkqI+EgaKcqAhhFLn9RZEqOoX5zT7IHIU3GN8gc2typr19Q6zFNTx"));
        assert!(!looks_like_minisign_key("untrusted comment: x\n"));
        assert!(!looks_like_minisign_key("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n"));
    }
}
