//! Firmware for the packed modules (`cargo xtask cpio --firmware-dir DIR`): the files their
//! `.modinfo` declares (`firmware=` lines, some of them globs such as `brcm/brcmfmac*-pcie.*.bin`)
//! that DIR has, packed as `lib/firmware/<name>`, where the kernel's firmware loader looks while the
//! initramfs is the root. A file DIR has as `<name>.zst` or `<name>.xz` stays compressed when the
//! kernel's config says its loader decompresses that form (`CONFIG_FW_LOADER_COMPRESS_ZSTD`/`_XZ`),
//! else it is decompressed here. Links in DIR (Debian ships them) are followed inside DIR only.
//! The planning (globs, links, the form to pack) is pure, over a listing of DIR; it fetches no
//! firmware and reads no `modules.alias`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::host::Result;
use crate::kmod;

/// How deep a chain of links may go before it counts as a loop (as the kernel's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;
/// Missing files named one per line; beyond that, one line sums up the rest.
const MISSING_SHOWN: usize = 10;

/// One entry of the firmware directory, by its path relative to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File,
    /// A symbolic link and its target, as `readlink` gives it.
    Link(String),
}

/// The firmware directory: every entry, by relative path (`rtl_nic/rtl8168h-2.fw`).
pub type Listing = BTreeMap<String, Node>;

/// How a firmware file is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Plain,
    Zstd,
    Xz,
}

impl Form {
    fn suffix(self) -> &'static str {
        match self {
            Form::Plain => "",
            Form::Zstd => ".zst",
            Form::Xz => ".xz",
        }
    }
}

/// Which compressed forms the kernel's firmware loader reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loader {
    pub xz: bool,
    pub zstd: bool,
}

impl Loader {
    /// From the kernel's build configuration; no configuration: no compressed form.
    pub fn from_config(config: Option<&str>) -> Loader {
        let has = |option: &str| config.is_some_and(|c| c.lines().any(|l| l.trim() == format!("{option}=y")));
        Loader { xz: has("CONFIG_FW_LOADER_COMPRESS_XZ"), zstd: has("CONFIG_FW_LOADER_COMPRESS_ZSTD") }
    }

    fn reads(self, form: Form) -> bool {
        match form {
            Form::Plain => true,
            Form::Zstd => self.zstd,
            Form::Xz => self.xz,
        }
    }
}

/// One firmware file to pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    /// The name the driver asks for, e.g. `rtl_nic/rtl8168h-2.fw`.
    pub name: String,
    /// The file to read, relative to the directory, links resolved.
    pub source: String,
    /// How `source` is stored.
    pub form: Form,
    /// Packed as it is (`lib/firmware/<name>.xz`), for the kernel to decompress; else decompressed.
    pub keep: bool,
}

impl Pick {
    /// Its path in the archive.
    pub fn archive_path(&self) -> String {
        let suffix = if self.keep { self.form.suffix() } else { "" };
        format!("lib/firmware/{}{suffix}", self.name)
    }
}

/// The form to pack, given which forms the directory has: a compressed form the kernel reads,
/// zstd first (the loader's own order), else the plain file, else a compressed one to decompress.
pub fn choose(have: &[Form], loader: Loader) -> Option<(Form, bool)> {
    let has = |f: Form| have.contains(&f);
    for form in [Form::Zstd, Form::Xz] {
        if has(form) && loader.reads(form) {
            return Some((form, true));
        }
    }
    [Form::Plain, Form::Zstd, Form::Xz].into_iter().find(|f| has(*f)).map(|f| (f, false))
}

/// `path` in the listing with every link followed, or `None` when no file is there. A link that
/// leaves the directory (`..` above it, or an absolute target outside `/lib/firmware` and
/// `/usr/lib/firmware`) or a chain of more than [`MAX_LINKS`] links is an error.
pub fn resolve(listing: &Listing, path: &str) -> std::result::Result<Option<String>, String> {
    let mut todo: Vec<String> = path.split('/').rev().map(str::to_owned).collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(component) = todo.pop() {
        match component.as_str() {
            "" | "." => continue,
            ".." => {
                if done.pop().is_none() {
                    return Err(format!("{path} leads out of the firmware directory"));
                }
                continue;
            }
            _ => {}
        }
        done.push(component);
        let key = done.join("/");
        match listing.get(&key) {
            None => return Ok(None),
            Some(Node::Dir) => {}
            Some(Node::File) if todo.iter().all(|c| c.is_empty() || c == ".") => return Ok(Some(key)),
            Some(Node::File) => return Ok(None),
            Some(Node::Link(target)) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(format!("{path}: more than {MAX_LINKS} links, a loop"));
                }
                done.pop();
                let relative = if let Some(absolute) = target.strip_prefix('/') {
                    let inside = ["lib/firmware/", "usr/lib/firmware/"]
                        .into_iter()
                        .find_map(|prefix| absolute.strip_prefix(prefix))
                        .ok_or_else(|| format!("{key} links to {target}, outside the firmware directory"))?;
                    done.clear();
                    inside
                } else {
                    target.as_str()
                };
                todo.extend(relative.split('/').rev().map(str::to_owned));
            }
        }
    }
    Ok(None)
}

/// Whether `name` matches a `firmware=` glob: `*` any run and `?` any one character, neither
/// crossing a `/`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (n.first().is_some_and(|&c| c != b'/') && go(p, &n[1..])),
            (Some(b'?'), Some(&c)) => c != b'/' && go(&p[1..], &n[1..]),
            (Some(a), Some(b)) => a == b && go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

fn is_glob(name: &str) -> bool {
    name.contains(['*', '?'])
}

/// What the directory gives for one declared name: the files to pack (several for a glob), and why
/// a form that is there could not be used (a link leaving the directory).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub picks: Vec<Pick>,
    pub refused: Vec<String>,
}

/// The plan for one `firmware=` name.
pub fn plan(listing: &Listing, declared: &str, loader: Loader) -> Plan {
    let mut out = Plan::default();
    if declared.starts_with('/') || declared.split('/').any(|c| c == "..") {
        out.refused.push(format!("{declared} is not a path inside the firmware directory"));
        return out;
    }
    let names: BTreeSet<String> = if is_glob(declared) {
        listing
            .iter()
            .filter(|(_, node)| **node != Node::Dir)
            .map(|(path, _)| {
                [".zst", ".xz"].into_iter().find_map(|s| path.strip_suffix(s)).unwrap_or(path).to_owned()
            })
            .filter(|base| glob_match(declared, base))
            .collect()
    } else {
        BTreeSet::from([declared
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect::<Vec<_>>()
            .join("/")])
    };
    for name in names {
        let mut found: Vec<(Form, String)> = Vec::new();
        for form in [Form::Plain, Form::Zstd, Form::Xz] {
            match resolve(listing, &format!("{name}{}", form.suffix())) {
                Ok(Some(source)) => found.push((form, source)),
                Ok(None) => {}
                Err(why) => out.refused.push(why),
            }
        }
        let forms: Vec<Form> = found.iter().map(|(f, _)| *f).collect();
        if let Some((form, keep)) = choose(&forms, loader) {
            let source = found.iter().find(|(f, _)| *f == form).map(|(_, s)| s.clone()).unwrap_or_default();
            out.picks.push(Pick { name, source, form, keep });
        }
    }
    out
}

/// The `lib/firmware` directory that `dir` names: `dir/lib/firmware` or `dir/usr/lib/firmware`
/// when it has one (the root of a system or of an unpacked package), else `dir` itself.
pub fn find_root(dir: &Path) -> Result<PathBuf> {
    if !dir.is_dir() {
        return Err(format!("--firmware-dir {}: not a directory", dir.display()));
    }
    Ok(["lib/firmware", "usr/lib/firmware"]
        .into_iter()
        .map(|sub| dir.join(sub))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| dir.to_owned()))
}

/// Every entry below `root`, links not followed.
pub fn list(root: &Path) -> Result<Listing> {
    fn walk(root: &Path, dir: &Path, out: &mut Listing) -> Result<()> {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
        for path in entries.flatten().map(|e| e.path()) {
            let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
            if meta.is_dir() {
                out.insert(rel, Node::Dir);
                walk(root, &path, out)?;
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                out.insert(rel, Node::Link(target.to_string_lossy().into_owned()));
            } else if meta.is_file() {
                out.insert(rel, Node::File);
            }
        }
        Ok(())
    }
    let mut out = Listing::new();
    walk(root, root, &mut out)?;
    Ok(out)
}

/// The `firmware=` names of a module's `.modinfo`.
pub fn declared(modinfo: &[(String, String)]) -> Vec<String> {
    modinfo.iter().filter(|(k, v)| k == "firmware" && !v.is_empty()).map(|(_, v)| v.clone()).collect()
}

/// Whether the kernel's xz decoder checks this stream: it knows the CRC32 and no-check types only
/// (the stream flags' low nibble, byte 7 of the header).
fn kernel_reads_xz(data: &[u8]) -> bool {
    data.get(7).is_some_and(|flags| matches!(flags & 0x0f, 0 | 1))
}

fn decompress(form: Form, data: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let read = match form {
        Form::Plain => return Ok(data),
        Form::Xz => lzma_rust2::XzReader::new(&data[..], true).read_to_end(&mut out),
        Form::Zstd => kmod::unzstd(&data, &mut out),
    };
    read.map_err(|e| format!("decompressing: {e}"))?;
    Ok(out)
}

/// What [`pack`] put in the archive.
#[derive(Debug, Default)]
pub struct Packed {
    /// Archive path and size of each file.
    pub files: Vec<(String, u64)>,
}

/// Packs into `archive` the firmware `modules` declare that `dir` has; warns about the rest.
pub fn pack(
    tree: &kmod::Tree,
    modules: &BTreeMap<String, kmod::Module>,
    dir: &Path,
    archive: &mut mkcpio::Archive,
) -> Result<Packed> {
    let root = find_root(dir)?;
    let listing = list(&root)?;
    let config = tree.config().map(|(_, text)| text);
    let loader = Loader::from_config(config.as_deref());
    let mut seen = BTreeSet::new();
    let mut missing: Vec<(String, String)> = Vec::new();
    let mut packed = Packed::default();
    for m in modules.values() {
        let info = crate::elf::modinfo(&tree.read(&m.path)?)
            .map_err(|e| format!("{}: {e}", tree.dir.join(&m.path).display()))?;
        for name in declared(&info) {
            if !seen.insert(name.clone()) {
                continue;
            }
            let plan = plan(&listing, &name, loader);
            for why in &plan.refused {
                eprintln!("xtask: {}: not packed: {why}", m.name);
            }
            if plan.picks.is_empty() {
                missing.push((m.name.clone(), name));
            }
            for pick in plan.picks {
                let path = root.join(&pick.source);
                let data = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
                let keep = pick.keep && (pick.form != Form::Xz || kernel_reads_xz(&data));
                let pick = Pick { keep, ..pick };
                let data = if keep {
                    data
                } else {
                    decompress(pick.form, data).map_err(|e| format!("{}: {e}", path.display()))?
                };
                let at = pick.archive_path();
                packed.files.push((at.clone(), data.len() as u64));
                archive.file(&at, 0o644, data).map_err(|e| e.to_string())?;
            }
        }
    }
    for (module, name) in missing.iter().take(MISSING_SHOWN) {
        eprintln!("xtask: {module} declares {name}, not in {}", root.display());
    }
    if missing.len() > MISSING_SHOWN {
        let rest = &missing[MISSING_SHOWN..];
        let by: BTreeSet<&str> = rest.iter().map(|(m, _)| m.as_str()).collect();
        eprintln!(
            "xtask: and {} more declared firmware files not in {}, from {}",
            rest.len(),
            root.display(),
            by.into_iter().collect::<Vec<_>>().join(" ")
        );
    }
    let size: u64 = packed.files.iter().map(|(_, s)| s).sum();
    let names: Vec<&str> =
        packed.files.iter().map(|(p, _)| p.strip_prefix("lib/firmware/").unwrap_or(p)).collect();
    println!(
        "xtask: packed {} firmware files ({} KiB) from {}: {}",
        names.len(),
        size / 1024,
        root.display(),
        names.join(" ")
    );
    Ok(packed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(entries: &[(&str, Option<&str>)]) -> Listing {
        let mut l = Listing::new();
        for (path, link) in entries {
            let mut parent = String::new();
            for c in path.split('/').collect::<Vec<_>>().split_last().map_or(&[][..], |(_, p)| p) {
                if !parent.is_empty() {
                    parent.push('/');
                }
                parent.push_str(c);
                l.insert(parent.clone(), Node::Dir);
            }
            l.insert(path.to_string(), link.map_or(Node::File, |t| Node::Link(t.into())));
        }
        l
    }

    const XZ: Loader = Loader { xz: true, zstd: false };
    const NONE: Loader = Loader { xz: false, zstd: false };
    const BOTH: Loader = Loader { xz: true, zstd: true };

    #[test]
    fn the_form_to_pack() {
        use Form::*;
        let check = |have: &[Form], loader, expected| assert_eq!(choose(have, loader), expected, "{have:?}");
        check(&[Plain], BOTH, Some((Plain, false)));
        check(&[Plain, Xz], XZ, Some((Xz, true)));
        check(&[Plain, Xz], NONE, Some((Plain, false)));
        check(&[Xz], NONE, Some((Xz, false)));
        check(&[Zstd], XZ, Some((Zstd, false)));
        check(&[Zstd, Xz], XZ, Some((Xz, true)));
        check(&[Zstd, Xz], BOTH, Some((Zstd, true)));
        check(&[], BOTH, None);
        assert_eq!(Loader::from_config(None), NONE);
        assert_eq!(
            Loader::from_config(Some(
                "CONFIG_FW_LOADER_COMPRESS_XZ=y\n# CONFIG_FW_LOADER_COMPRESS_ZSTD is not set\n"
            )),
            XZ
        );
    }

    #[test]
    fn links_are_followed_inside_only() {
        let l = listing(&[
            ("rtl_nic/a.fw", None),
            ("rtl_nic/b.fw", Some("a.fw")),
            ("rtl_nic/c.fw", Some("../other/c.fw")),
            ("other/c.fw", None),
            ("rtl_nic/up.fw", Some("../../etc/passwd")),
            ("rtl_nic/abs.fw", Some("/etc/shadow")),
            ("rtl_nic/abs-ok.fw", Some("/lib/firmware/other/c.fw")),
            ("rtl_nic/loop.fw", Some("loop.fw")),
            ("alias", Some("rtl_nic")),
            ("rtl_nic/dangling.fw", Some("gone.fw")),
        ]);
        let check = |path: &str, expected: std::result::Result<Option<&str>, &str>| {
            let got = resolve(&l, path);
            assert_eq!(got.as_ref().map(|o| o.as_deref()).map_err(String::as_str), expected, "{path}");
        };
        check("rtl_nic/a.fw", Ok(Some("rtl_nic/a.fw")));
        check("rtl_nic/b.fw", Ok(Some("rtl_nic/a.fw")));
        check("rtl_nic/c.fw", Ok(Some("other/c.fw")));
        check("alias/b.fw", Ok(Some("rtl_nic/a.fw")));
        check("rtl_nic/abs-ok.fw", Ok(Some("other/c.fw")));
        check("rtl_nic/dangling.fw", Ok(None));
        check("rtl_nic/none.fw", Ok(None));
        check("rtl_nic", Ok(None));
        check("rtl_nic/up.fw", Err("rtl_nic/up.fw leads out of the firmware directory"));
        check("rtl_nic/abs.fw", Err("rtl_nic/abs.fw links to /etc/shadow, outside the firmware directory"));
        check("rtl_nic/loop.fw", Err("rtl_nic/loop.fw: more than 40 links, a loop"));
    }

    #[test]
    fn globs() {
        assert!(glob_match("brcm/brcmfmac*-pcie.*.bin", "brcm/brcmfmac4350-pcie.Xyz,1.bin"));
        assert!(!glob_match("brcm/brcmfmac*-pcie.*.bin", "brcm/brcmfmac4350-sdio.x.bin"));
        assert!(!glob_match("a/*.bin", "a/b/c.bin"), "* stays in its directory");
        assert!(glob_match("a/?.bin", "a/x.bin") && !glob_match("a/?.bin", "a/xy.bin"));
        assert!(glob_match("exact.fw", "exact.fw") && !glob_match("exact.fw", "exact.fwx"));
    }

    #[test]
    fn plans() {
        let l = listing(&[
            ("rtl_nic/a.fw", None),
            ("rtl_nic/b.fw.xz", None),
            ("rtl_nic/c.fw.zst", None),
            ("rtl_nic/c.fw", Some("../../outside")),
            ("brcm/brcmfmac1-pcie.x.bin.xz", None),
            ("brcm/brcmfmac2-pcie.y.bin", None),
            ("brcm/brcmfmac2-pcie.txt", None),
        ]);
        let pick = |name: &str, source: &str, form, keep| Pick {
            name: name.into(),
            source: source.into(),
            form,
            keep,
        };
        assert_eq!(
            plan(&l, "rtl_nic/a.fw", XZ).picks,
            [pick("rtl_nic/a.fw", "rtl_nic/a.fw", Form::Plain, false)]
        );
        assert_eq!(
            plan(&l, "rtl_nic/b.fw", XZ).picks,
            [pick("rtl_nic/b.fw", "rtl_nic/b.fw.xz", Form::Xz, true)]
        );
        assert_eq!(
            plan(&l, "rtl_nic/b.fw", NONE).picks,
            [pick("rtl_nic/b.fw", "rtl_nic/b.fw.xz", Form::Xz, false)]
        );
        let c = plan(&l, "rtl_nic/c.fw", XZ);
        assert_eq!(c.picks, [pick("rtl_nic/c.fw", "rtl_nic/c.fw.zst", Form::Zstd, false)]);
        assert_eq!(c.refused, ["rtl_nic/c.fw leads out of the firmware directory"]);
        assert_eq!(plan(&l, "rtl_nic/none.fw", XZ), Plan::default());
        let g = plan(&l, "brcm/brcmfmac*-pcie.*.bin", XZ);
        assert_eq!(
            g.picks,
            [
                pick("brcm/brcmfmac1-pcie.x.bin", "brcm/brcmfmac1-pcie.x.bin.xz", Form::Xz, true),
                pick("brcm/brcmfmac2-pcie.y.bin", "brcm/brcmfmac2-pcie.y.bin", Form::Plain, false),
            ]
        );
        assert_eq!(g.picks[0].archive_path(), "lib/firmware/brcm/brcmfmac1-pcie.x.bin.xz");
        assert_eq!(g.picks[1].archive_path(), "lib/firmware/brcm/brcmfmac2-pcie.y.bin");
        assert_eq!(plan(&l, "../x", XZ).refused, ["../x is not a path inside the firmware directory"]);
    }

    #[test]
    fn xz_check_types() {
        assert!(kernel_reads_xz(b"\xfd7zXZ\0\x00\x01"), "CRC32");
        assert!(kernel_reads_xz(b"\xfd7zXZ\0\x00\x00"), "none");
        assert!(!kernel_reads_xz(b"\xfd7zXZ\0\x00\x04"), "CRC64, xz's default");
        assert!(!kernel_reads_xz(b"\xfd7zXZ"));
    }

    #[test]
    fn a_directory_is_listed_without_following_links() {
        let root = std::env::temp_dir().join(format!("xtask-firmware-{}", std::process::id()));
        let fw = root.join("usr/lib/firmware");
        std::fs::create_dir_all(fw.join("rtl_nic")).unwrap();
        std::fs::write(fw.join("rtl_nic/a.fw"), b"fw").unwrap();
        std::os::unix::fs::symlink("a.fw", fw.join("rtl_nic/b.fw")).unwrap();
        std::os::unix::fs::symlink("/etc", fw.join("etc")).unwrap();
        assert_eq!(find_root(&root).unwrap(), fw);
        assert_eq!(find_root(&fw).unwrap(), fw);
        assert_eq!(
            list(&fw).unwrap(),
            listing(&[("rtl_nic/a.fw", None), ("rtl_nic/b.fw", Some("a.fw")), ("etc", Some("/etc"))])
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
