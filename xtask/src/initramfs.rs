//! `cargo xtask cpio`: build `/init` for musl, check it is static, resolve `modules-list` against a
//! kernel's modules, and write a reproducible newc archive with the modules decompressed, compressed
//! with zstd when the kernel's config says it unpacks zstd and with gzip otherwise (see ARCHITECTURE.md
//! for the choice and its figures, and why modules are decompressed here). The file name does not
//! follow the format: the kernel reads the magic, and so does [`list`].

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::arch::Arch;
use crate::host::{self, Result};
use crate::{firmware, kmod, report, split};

/// Where [`build_init_for`] leaves `arch`'s `/init`.
pub fn init_path_for(arch: Arch) -> PathBuf {
    host::root().join("target").join(arch.musl_target()).join("release/netinit")
}

/// Builds the init for x86_64 musl in release mode and returns its path.
pub fn build_init() -> Result<PathBuf> {
    build_init_for(Arch::X86_64)
}

/// Builds the init for `arch`'s musl target in release mode, checks it is static and for that
/// machine, and returns its path. ring's C is compiled with [`Arch::cc`]; for aarch64 the same
/// cross gcc links, as the host's `cc` cannot.
pub fn build_init_for(arch: Arch) -> Result<PathBuf> {
    host::ensure_musl_target_for(arch)?;
    host::ensure_cc(arch)?;
    let target = arch.musl_target();
    let env_target = target.replace('-', "_");
    let mut cargo = host::cargo();
    cargo
        .args(["build", "--quiet", "--release", "--package", "netinit", "--target", target])
        .env(format!("CC_{env_target}"), arch.cc().0);
    if arch != Arch::X86_64 {
        cargo.env(format!("CARGO_TARGET_{}_LINKER", env_target.to_uppercase()), arch.cc().0);
    }
    // The clock floor of `/init` (init/src/clock.rs): the commit's time, unless the caller gives one.
    if std::env::var_os("SOURCE_DATE_EPOCH").is_none() {
        if let Some(epoch) = commit_time() {
            cargo.env("SOURCE_DATE_EPOCH", epoch);
        }
    }
    host::run(&mut cargo)?;
    let path = init_path_for(arch);
    let data = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    check_machine(&path, &data, arch)?;
    if crate::elf::has_interpreter(&data)? {
        return Err(format!(
            "{} asks for a program interpreter: it is not statically linked",
            path.display()
        ));
    }
    Ok(path)
}

/// Refuses an ELF file built for another machine than `arch`.
pub fn check_machine(path: &Path, data: &[u8], arch: Arch) -> Result<()> {
    let machine = crate::elf::machine(data).map_err(|e| format!("{}: {e}", path.display()))?;
    if machine != arch.elf_machine() {
        return Err(format!(
            "{} is built for {}, not {}",
            path.display(),
            Arch::machine_name(machine),
            arch.name()
        ));
    }
    Ok(())
}

/// The time of the checkout's commit, in seconds since 1970 (`git log -1 --format=%ct`), if it is a
/// git checkout.
fn commit_time() -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(host::root())
        .args(["log", "-1", "--format=%ct"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let epoch = text.trim();
    (out.status.success() && !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()))
        .then(|| epoch.to_owned())
}

/// What goes into an initramfs.
pub struct Contents<'a> {
    /// The `/init` binary.
    pub init: &'a Path,
    /// A kernel's `lib/modules/<release>` directory, or what [`kmod::find_release_dir`] accepts.
    pub modules_dir: &'a Path,
    /// The `modules-list` file.
    pub list: &'a Path,
    /// A static busybox, for the rescue shell.
    pub shell: Option<&'a Path>,
    /// minisign public key files, packed as `/etc/netinit/keys/<file name>`.
    pub trust: &'a [PathBuf],
    /// PEM CA certificates for https, packed as `/etc/netinit/ca/<file name>`.
    pub ca: &'a [PathBuf],
    /// Where the firmware the modules declare is looked for (see [`firmware`]).
    pub firmware: Option<&'a Path>,
    /// Two archives: the modules and firmware apart (see [`split`]).
    pub split: bool,
}

/// Checks an initramfs built by [`write`]: the real `cpio` lists the entries the init needs, and a
/// second build from the same inputs gives the same bytes.
pub fn verify(built: &Path, contents: &Contents) -> Result<()> {
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
    let listed = list(built)?;
    let release = kmod::Tree::open(contents.modules_dir)?.release;
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

/// The paths the real `cpio -t` lists in an archive [`write`] wrote, gzip or zstd.
pub fn list(archive: &Path) -> Result<String> {
    let data = std::fs::read(archive).map_err(|e| format!("reading {}: {e}", archive.display()))?;
    let cpio_bytes = uncompress(&data).map_err(|e| format!("{}: {e}", archive.display()))?;
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
    if !out.status.success() {
        return Err(format!("cpio -t {}: {}", archive.display(), String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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
    /// The packed modules' size, decompressed.
    pub modules_size: u64,
    pub release: String,
    /// Where their dependencies were read.
    pub dependency_source: &'static str,
    /// The second archive, with `--split`.
    pub modules_archive: Option<PathBuf>,
    pub report: report::Report,
}

/// How the archives are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
}

/// The `zstd` command's flags, fixed so that one machine's zstd always gives the same bytes; it adds
/// the content size, as the input's length is given with `--stream-size`.
const ZSTD_FLAGS: [&str; 5] = ["-19", "--no-progress", "-q", "--content-size", "-c"];

/// The compression for a kernel with this configuration (`None`: its config was not found): zstd when
/// it unpacks zstd (`CONFIG_RD_ZSTD`), else gzip; `None` when it unpacks neither.
pub fn compression_for(config: Option<&str>) -> Option<Compression> {
    let Some(config) = config else { return Some(Compression::Gzip) };
    let has = |option: &str| config.lines().any(|l| l.trim() == option);
    if has("CONFIG_RD_ZSTD=y") {
        Some(Compression::Zstd)
    } else if has("CONFIG_RD_GZIP=y") {
        Some(Compression::Gzip)
    } else {
        None
    }
}

/// The cpio bytes of a gzip or zstd archive, told apart by their magic.
fn uncompress(data: &[u8]) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    if data.starts_with(b"\x28\xb5\x2f\xfd") {
        kmod::unzstd(data, &mut out).map_err(|e| format!("unzstd: {e}"))?;
    } else {
        flate2::read::GzDecoder::new(data).read_to_end(&mut out).map_err(|e| format!("gunzip: {e}"))?;
    }
    Ok(out)
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

/// The kernel's modules that `list` (its text `list_text`) names, with their dependencies; says which
/// names are aliases and which modules the kernel lacks; chooses the compression from the kernel's
/// config and says why. A kernel that unpacks neither gzip nor zstd is refused.
fn resolve_modules(
    modules_dir: &Path,
    list: &Path,
    list_text: &str,
) -> Result<(kmod::Tree, kmod::Resolved, Compression, String)> {
    let tree = kmod::Tree::open(modules_dir)?;
    let release = &tree.release;
    let config = tree.config();
    let (compression, why) = match (&config, compression_for(config.as_ref().map(|(_, text)| text.as_str()))) {
        (None, _) => (
            Compression::Gzip,
            format!("gzip: no boot/config-{release} beside the modules, and gzip is what kernels unpack by default"),
        ),
        (Some((path, _)), Some(Compression::Zstd)) => {
            (Compression::Zstd, format!("zstd -19: {} has CONFIG_RD_ZSTD=y", path.display()))
        }
        (Some((path, _)), Some(Compression::Gzip)) => {
            (Compression::Gzip, format!("gzip: {} has CONFIG_RD_GZIP=y but no CONFIG_RD_ZSTD=y", path.display()))
        }
        (Some((path, _)), None) => {
            return Err(format!(
                "kernel {release} cannot unpack a gzip or zstd initramfs ({} has neither CONFIG_RD_GZIP=y nor CONFIG_RD_ZSTD=y)",
                path.display()
            ));
        }
    };
    let resolved = tree.index.resolve(&kmod::parse_list(list_text), &mut |name| tree.depends(name))?;
    for (alias, module) in &resolved.aliased {
        eprintln!("xtask: {} names {alias}, an alias of {module}", list.display());
    }
    if !resolved.missing.is_empty() {
        eprintln!(
            "xtask: {} names {} modules that kernel {release} does not have; skipped: {}",
            list.display(),
            resolved.missing.len(),
            resolved.missing.join(" ")
        );
    }
    Ok((tree, resolved, compression, why))
}

/// Writes the initramfs to `output`. With a shell, a static busybox from the host goes in as
/// `/bin/busybox` with `/bin/sh` and the rescue applets linked to it.
pub fn write(contents: &Contents, output: &Path) -> Result<Built> {
    let Contents { init, modules_dir, list, shell, trust, ca, firmware: firmware_dir, split: two } =
        *contents;
    let init_bytes = std::fs::read(init).map_err(|e| format!("reading {}: {e}", init.display()))?;
    // Everything that runs in the initramfs is for the machine `/init` is for.
    let machine = crate::elf::machine(&init_bytes).map_err(|e| format!("{}: {e}", init.display()))?;
    let same_machine = |path: &Path, data: &[u8]| -> Result<()> {
        match crate::elf::machine(data) {
            Ok(m) if m == machine => Ok(()),
            Ok(m) => Err(format!(
                "{} is for {}, but {} is for {}",
                path.display(),
                Arch::machine_name(m),
                init.display(),
                Arch::machine_name(machine)
            )),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    };
    let list_text = std::fs::read_to_string(list).map_err(|e| format!("reading {}: {e}", list.display()))?;
    let (tree, resolved, compression, why) = resolve_modules(modules_dir, list, &list_text)?;
    let release = &tree.release;

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
        same_machine(busybox, &data)?;
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
    let mut modules_size = 0;
    for m in resolved.modules.values() {
        let data = tree.read(&m.path)?;
        same_machine(&modules_dir.join(&m.path), &data)?;
        modules_size += data.len() as u64;
        a.file(&format!("{base}/{}", kmod::packed_path(&m.path)), 0o644, data).map_err(e)?;
    }
    a.file(&format!("{base}/modules.dep"), 0o644, kmod::modules_dep(&resolved.modules).into_bytes())
        .map_err(e)?;
    let mut aliases = std::collections::BTreeMap::new();
    for name in resolved.modules.keys() {
        aliases.insert(name.clone(), tree.aliases(name)?);
    }
    let listed = kmod::parse_list(&list_text);
    let listed: Vec<&str> = listed
        .iter()
        .map(String::as_str)
        .chain(resolved.aliased.iter().map(|(_, m)| m.as_str()))
        .filter(|m| resolved.modules.contains_key(*m))
        .collect();
    kmod::inherit_aliases(&mut aliases, &resolved.modules, listed.iter().copied());
    a.file(&format!("{base}/modules.alias"), 0o644, kmod::alias_index(&aliases).into_bytes()).map_err(e)?;
    a.file(&format!("{base}/modules.always"), 0o644, kmod::always(listed, &aliases).into_bytes())
        .map_err(e)?;

    if let Some(dir) = firmware_dir {
        firmware::pack(&tree, &resolved.modules, dir, &mut a)?;
    }

    let modules_archive = two.then(|| split::modules_path(output));
    let archives = match &modules_archive {
        None => vec![(output.to_owned(), a.clone())],
        Some(second) => {
            let (netinit, modules) = split::split(&a, 0).map_err(e)?;
            vec![(output.to_owned(), netinit), (second.clone(), modules)]
        }
    };
    let (mut written, mut uncompressed) = (Vec::new(), 0);
    for (path, archive) in &archives {
        let (compressed, raw) = write_compressed(archive, path, compression)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        written.push((name, compressed));
        uncompressed += raw;
    }
    let mut report =
        report::summarize(a.entries().map(|(path, kind, _)| (path, entry_size(kind))), written, uncompressed);
    report.compression = why;
    Ok(Built {
        init_size: init_bytes.len() as u64,
        archive_size: report.compressed(),
        modules: resolved.modules.len(),
        modules_size,
        dependency_source: tree.dependency_source(),
        release: tree.release,
        modules_archive,
        report,
    })
}

/// The bytes an entry carries: a file's data, a link's target.
fn entry_size(kind: &mkcpio::Kind) -> u64 {
    match kind {
        mkcpio::Kind::File(data) => data.len() as u64,
        mkcpio::Kind::Symlink(target) => target.len() as u64,
        _ => 0,
    }
}

/// A small initramfs for a busybox shell init (the boot benchmark's shell reference, the LACP
/// partner VM): `files` (`init` among them, executable), the host's static busybox as
/// `bin/busybox`, and `modules` with their dependencies, decompressed as `lib/modules/<name>.ko`
/// and listed in load order in `/etc/modules` for the script's `insmod` loop.
pub fn busybox_initramfs(
    tree: &kmod::Tree,
    modules: &[&str],
    files: &[(&str, &[u8])],
    out: &Path,
    packing: Compression,
) -> Result<()> {
    let wanted: Vec<String> = modules.iter().map(|m| (*m).to_owned()).collect();
    let resolved = tree.index.resolve(&wanted, &mut |name| tree.depends(name))?;
    // Dependencies first: a depth-first walk from each wanted module.
    let mut order: Vec<String> = Vec::new();
    fn visit(name: &str, r: &kmod::Resolved, order: &mut Vec<String>, depth: usize) {
        let Some(m) = r.modules.get(name) else { return };
        if order.iter().any(|o| o == name) || depth > 32 {
            return;
        }
        for dep in &m.depends {
            visit(dep, r, order, depth + 1);
        }
        order.push(name.to_owned());
    }
    for name in &wanted {
        visit(name, &resolved, &mut order, 0);
    }
    let mut a = mkcpio::Archive::new(0);
    let e = |e: mkcpio::PathError| e.to_string();
    for (path, bytes) in files {
        a.file(path, 0o755, bytes.to_vec()).map_err(e)?;
    }
    let busybox = crate::BUSYBOX;
    a.file("bin/busybox", 0o755, std::fs::read(busybox).map_err(|e| format!("reading {busybox}: {e}"))?)
        .map_err(e)?;
    a.char_device("dev/console", 0o600, 5, 1).map_err(e)?;
    for dir in ["proc", "sys", "dev", "tmp"] {
        a.dir(dir, 0o755).map_err(e)?;
    }
    let mut list = String::new();
    for name in &order {
        let m = &resolved.modules[name];
        a.file(&format!("lib/modules/{name}.ko"), 0o644, tree.read(&m.path)?).map_err(e)?;
        list.push_str(&format!("{name}.ko\n"));
    }
    a.file("etc/modules", 0o644, list.into_bytes()).map_err(e)?;
    write_compressed(&a, out, packing).map(|_| ())
}

/// Writes `archive` compressed to `output` (through a `.partial` file); returns its size and the cpio
/// bytes before compression.
pub fn write_compressed(
    archive: &mkcpio::Archive,
    output: &Path,
    compression: Compression,
) -> Result<(u64, u64)> {
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let tmp = output.with_extension("partial");
    let file = std::fs::File::create(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    let raw = match compression {
        Compression::Gzip => {
            // mtime 0 and no file name in the gzip header: the bytes depend only on the archive.
            let mut gz = flate2::GzBuilder::new()
                .mtime(0)
                .write(std::io::BufWriter::new(file), flate2::Compression::best());
            let raw = archive.write_to(&mut gz).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
            gz.finish().and_then(|mut w| w.flush()).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
            raw
        }
        Compression::Zstd => zstd(archive, file).map_err(|e| format!("writing {}: {e}", tmp.display()))?,
    };
    std::fs::rename(&tmp, output).map_err(|e| format!("renaming to {}: {e}", output.display()))?;
    Ok((std::fs::metadata(output).map(|m| m.len()).unwrap_or(0), raw))
}

/// Pipes `archive` through the `zstd` command (installed with apt when missing) into `file`;
/// returns the cpio bytes.
fn zstd(archive: &mkcpio::Archive, file: std::fs::File) -> Result<u64> {
    if !host::on_path("zstd") {
        host::apt_install(&["zstd"])?;
    }
    let mut cpio = Vec::new();
    let raw = archive.write_to(&mut cpio).map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new("zstd");
    cmd.args(ZSTD_FLAGS).arg(format!("--stream-size={}", cpio.len()));
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(file)
        .spawn()
        .map_err(|e| format!("running {cmd:?}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&cpio).map_err(|e| format!("feeding zstd: {e}"))?;
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("{cmd:?} failed: {status}"));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmod::tests::{unpacked_package, RELEASE};

    /// The archive's `lib/modules` as the real `cpio` extracts it into `dir`.
    fn extract_modules(archive: &Path, dir: &Path) {
        let cpio = uncompress(&std::fs::read(archive).unwrap()).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-id", "--quiet", "--no-absolute-filenames", "lib/modules/*"])
            .current_dir(dir)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&cpio).unwrap();
        assert!(child.wait().unwrap().success());
    }

    #[test]
    fn modules_for_another_machine_are_refused() {
        let (root, _) = unpacked_package("initramfs-machine");
        let (init, list, out) = (root.join("init"), root.join("modules-list"), root.join("out.cpio.gz"));
        let mut aarch64 = crate::elf::relocatable(&[(".text", b"\xc3")]);
        aarch64[0x12..0x14].copy_from_slice(&Arch::Aarch64.elf_machine().to_le_bytes());
        std::fs::write(&init, &aarch64).unwrap();
        std::fs::write(&list, "squashfs\n").unwrap();
        let contents = Contents {
            init: &init,
            modules_dir: &root,
            list: &list,
            shell: None,
            trust: &[],
            ca: &[],
            firmware: None,
            split: false,
        };
        let Err(e) = write(&contents, &out) else { panic!("packed x86_64 modules with an aarch64 /init") };
        assert!(
            e.contains("/squashfs.ko.xz is for x86_64, but ") && e.ends_with("init is for aarch64"),
            "{e}"
        );
        assert!(check_machine(&init, &aarch64, Arch::Aarch64).is_ok());
        let e = check_machine(&init, &aarch64, Arch::X86_64).unwrap_err();
        assert!(e.ends_with("init is built for aarch64, not x86_64"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn compressed_modules_are_packed_decompressed() {
        let (root, plain) = unpacked_package("initramfs-pack");
        let (init, list, out) = (root.join("init"), root.join("modules-list"), root.join("out.cpio.gz"));
        std::fs::write(&init, crate::elf::relocatable(&[(".text", b"\xc3")])).unwrap();
        std::fs::write(&list, "virtio_net\nsquashfs\noverlay\nvirtio_pci\ne1000e\n").unwrap();
        let contents = Contents {
            init: &init,
            modules_dir: &root,
            list: &list,
            shell: None,
            trust: &[],
            ca: &[],
            firmware: None,
            split: false,
        };
        let built = write(&contents, &out).unwrap();
        assert_eq!((built.modules, built.release.as_str()), (5, RELEASE));
        let x = root.join("x");
        extract_modules(&out, &x);
        let packed = x.join("lib/modules").join(RELEASE);
        for (rel, bytes) in plain.iter().filter(|(rel, _)| !rel.contains("loop")) {
            let path = packed.join(kmod::packed_path(rel));
            assert_eq!(&std::fs::read(&path).unwrap(), bytes, "{}", path.display());
        }
        assert!(!packed.join("kernel/drivers/block/loop.ko").exists(), "loop is not listed");
        assert_eq!(
            std::fs::read_to_string(packed.join("modules.dep")).unwrap(),
            "kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/fs/overlayfs/overlay.ko:
kernel/fs/squashfs/squashfs.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
"
        );
        assert_eq!(
            std::fs::read_to_string(packed.join("modules.alias")).unwrap(),
            "alias virtio:d00000001v* virtio_net\n",
            "device aliases only: fs-squashfs is not one"
        );
        assert_eq!(
            std::fs::read_to_string(packed.join("modules.always")).unwrap(),
            "overlay\nsquashfs\n",
            "listed, packed, and no device asks for them"
        );
        // The package's kernel unpacks gzip only; one that unpacks zstd gets the same cpio bytes in zstd.
        let config = root.join(format!("boot/config-{RELEASE}"));
        let gz = std::fs::read(&out).unwrap();
        assert!(gz.starts_with(b"\x1f\x8b"));
        assert_eq!(
            built.report.compression,
            format!("gzip: {} has CONFIG_RD_GZIP=y but no CONFIG_RD_ZSTD=y", config.display())
        );
        std::fs::write(&config, "CONFIG_RD_GZIP=y\nCONFIG_RD_ZSTD=y\n").unwrap();
        let built = write(&contents, &out).unwrap();
        assert_eq!(built.report.compression, format!("zstd -19: {} has CONFIG_RD_ZSTD=y", config.display()));
        let zst = std::fs::read(&out).unwrap();
        assert!(zst.starts_with(b"\x28\xb5\x2f\xfd"));
        let mut decoded = Vec::new();
        let mut decoder = ruzstd::decoding::StreamingDecoder::new(&zst[..]).unwrap();
        std::io::Read::read_to_end(&mut decoder, &mut decoded).unwrap();
        assert_eq!(
            decoder.into_frame_decoder().content_size(),
            decoded.len() as u64,
            "content size in the frame"
        );
        assert_eq!(decoded, uncompress(&gz).unwrap());
        // A kernel that unpacks neither is refused.
        std::fs::write(&config, "# CONFIG_RD_GZIP is not set\nCONFIG_RD_XZ=y\n").unwrap();
        let e = write(&contents, &out).err().unwrap();
        assert_eq!(
            e,
            format!(
                "kernel {RELEASE} cannot unpack a gzip or zstd initramfs ({} has neither CONFIG_RD_GZIP=y nor CONFIG_RD_ZSTD=y)",
                config.display()
            )
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn compression_from_the_kernel_config() {
        fn check(config: Option<&str>, expected: Option<Compression>) {
            assert_eq!(compression_for(config), expected, "{config:?}");
        }
        check(None, Some(Compression::Gzip));
        check(Some("CONFIG_RD_GZIP=y\nCONFIG_RD_ZSTD=y\n"), Some(Compression::Zstd));
        check(Some("# CONFIG_RD_GZIP is not set\nCONFIG_RD_ZSTD=y\n"), Some(Compression::Zstd));
        check(Some("CONFIG_RD_GZIP=y\n# CONFIG_RD_ZSTD is not set\n"), Some(Compression::Gzip));
        check(Some("CONFIG_RD_GZIP=y\nCONFIG_RD_ZSTD=m\n"), Some(Compression::Gzip));
        check(Some("CONFIG_RD_XZ=y\n"), None);
        check(Some(""), None);
    }

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

#[cfg(test)]
mod packing_tests {
    use super::*;
    use crate::kmod::tests::{unpacked_package, RELEASE};

    /// `--firmware-dir` and `--split` together: the firmware a module declares goes beside the
    /// modules in the second archive (an xz file decompressed for a kernel whose loader reads
    /// none, a link inside followed, one out of the directory refused), `/init` stays in the first,
    /// and both are the same bytes when built twice.
    #[test]
    fn firmware_in_the_split_modules_archive() {
        let (root, _) = unpacked_package("initramfs-firmware");
        let info = "license=GPL\0depends=\0name=r8169\0firmware=rtl_nic/a.fw\0firmware=rtl_nic/b.fw\0\
                    firmware=rtl_nic/c.fw\0firmware=rtl_nic/d.fw\0firmware=rtl_nic/none.fw\0";
        let r8169 = crate::elf::relocatable(&[(".text", b"\0\0\0\0"), (".modinfo", info.as_bytes())]);
        let modules = root.join("usr/lib/modules").join(RELEASE);
        std::fs::write(modules.join("kernel/drivers/net/r8169.ko"), r8169).unwrap();
        let fw = root.join("fw/lib/firmware/rtl_nic");
        std::fs::create_dir_all(&fw).unwrap();
        std::fs::write(fw.join("a.fw"), b"firmware a").unwrap();
        let xz = std::process::Command::new("xz")
            .args(["--check=crc32", "-c"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        xz.stdin.as_ref().unwrap().write_all(b"firmware b").unwrap();
        let out = xz.wait_with_output().unwrap();
        std::fs::write(fw.join("b.fw.xz"), out.stdout).unwrap();
        std::os::unix::fs::symlink("a.fw", fw.join("c.fw")).unwrap();
        std::fs::write(root.join("outside"), b"secret").unwrap();
        std::os::unix::fs::symlink("../../../outside", fw.join("d.fw")).unwrap();
        let (init, names) = (root.join("init"), root.join("modules-list"));
        std::fs::write(&init, crate::elf::relocatable(&[(".text", b"\xc3")])).unwrap();
        std::fs::write(&names, "r8169\nsquashfs\n").unwrap();
        let fw_dir = root.join("fw");
        // A kernel that unpacks zstd: both archives are zstd, listed and reproducible as gzip ones are.
        std::fs::write(root.join(format!("boot/config-{RELEASE}")), "CONFIG_RD_GZIP=y\nCONFIG_RD_ZSTD=y\n")
            .unwrap();
        let contents = Contents {
            init: &init,
            modules_dir: &root,
            list: &names,
            shell: None,
            trust: &[],
            ca: &[],
            firmware: Some(&fw_dir),
            split: true,
        };
        let out = root.join("out/netinit.cpio.gz");
        let built = write(&contents, &out).unwrap();
        let second = root.join("out/netinit-modules.cpio.gz");
        assert_eq!(built.modules_archive.as_deref(), Some(second.as_path()));
        assert_eq!((built.report.modules, built.report.firmware), (2, 3));
        let main = list(&out).unwrap();
        assert!(main.lines().any(|l| l == "init"));
        assert!(!main.contains("lib/modules") && !main.contains("lib/firmware"), "{main}");
        let mods = list(&second).unwrap();
        let firmware: Vec<&str> = mods.lines().filter(|l| l.starts_with("lib/firmware/rtl_nic/")).collect();
        assert_eq!(
            firmware,
            ["lib/firmware/rtl_nic/a.fw", "lib/firmware/rtl_nic/b.fw", "lib/firmware/rtl_nic/c.fw"]
        );
        assert!(mods.lines().any(|l| l == format!("lib/modules/{RELEASE}/modules.dep")));
        assert!(!mods.lines().any(|l| l == "init"));
        let (a, b) = (std::fs::read(&out).unwrap(), std::fs::read(&second).unwrap());
        assert!(a.starts_with(b"\x28\xb5\x2f\xfd") && b.starts_with(b"\x28\xb5\x2f\xfd"));
        write(&contents, &out).unwrap();
        assert_eq!((std::fs::read(&out).unwrap(), std::fs::read(&second).unwrap()), (a, b), "reproducible");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
