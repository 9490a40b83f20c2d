//! Kernel modules for the initramfs: find a kernel's `lib/modules/<release>` directory, index its
//! modules (from the kernel's own `modules.dep`, `modules.alias` and `modules.builtin` when it has
//! them, else from each module's `.modinfo` `depends=`: Debian's packages ship no `modules.dep`),
//! resolve `modules-list` with its dependencies, and give each module's bytes decompressed
//! (`.ko.gz`, `.ko.xz`, `.ko.zst`), filed as `.ko` in the `modules.dep` the init reads.
//! It loads nothing, signs nothing, and reads no softdeps.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::elf;

/// How module files may be compressed: the suffix after `.ko`, and the magic the data starts with.
const COMPRESSIONS: [(&str, &[u8]); 3] =
    [(".gz", b"\x1f\x8b"), (".xz", b"\xfd7zXZ\0"), (".zst", b"\x28\xb5\x2f\xfd")];

/// A module and what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    /// Relative to the modules directory, as found, e.g. `kernel/drivers/net/virtio_net.ko.xz`.
    pub path: String,
    pub depends: Vec<String>,
}

/// The kernel's name for a module file: the stem before `.ko`, `-` read as `_`.
pub fn name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

/// Whether a file name is a module's: `.ko`, or `.ko` with a compression suffix.
pub fn is_module_file(name: &str) -> bool {
    name.ends_with(".ko") || COMPRESSIONS.iter().any(|(suffix, _)| name.ends_with(&format!(".ko{suffix}")))
}

/// Where a module goes in the initramfs, decompressed: its path with the compression suffix dropped.
pub fn packed_path(path: &str) -> &str {
    COMPRESSIONS.iter().find_map(|(suffix, _)| path.strip_suffix(suffix)).unwrap_or(path)
}

/// A module file's contents as the kernel's `finit_module` takes them without
/// `CONFIG_MODULE_DECOMPRESS`: gzip, xz and zstd are recognised by their magic and decompressed; an
/// ELF file is returned as it is; anything else is an error.
pub fn decompress(data: Vec<u8>) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let read = match COMPRESSIONS.iter().find(|(_, magic)| data.starts_with(magic)) {
        None if data.starts_with(b"\x7fELF") => return Ok(data),
        None => return Err("neither an ELF file nor gzip, xz or zstd data".into()),
        Some((".gz", _)) => flate2::read::MultiGzDecoder::new(&data[..]).read_to_end(&mut out),
        Some((".xz", _)) => lzma_rust2::XzReader::new(&data[..], true).read_to_end(&mut out),
        Some(_) => unzstd(&data, &mut out),
    };
    read.map_err(|e| format!("decompressing: {e}"))?;
    if !out.starts_with(b"\x7fELF") {
        return Err("decompressed, it is not an ELF file".into());
    }
    Ok(out)
}

/// One zstd frame, its content checksum checked when it has one (ruzstd computes it, the caller
/// compares).
pub(crate) fn unzstd(data: &[u8], out: &mut Vec<u8>) -> std::io::Result<usize> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let mut decoder = ruzstd::decoding::StreamingDecoder::new(data).map_err(|e| invalid(e.to_string()))?;
    let n = decoder.read_to_end(out)?;
    let frame = decoder.into_frame_decoder();
    match (frame.get_checksum_from_data(), frame.get_calculated_checksum()) {
        (Some(stored), Some(computed)) if stored != computed => {
            Err(invalid(format!("content checksum {computed:08x}, the frame says {stored:08x}")))
        }
        _ => Ok(n),
    }
}

/// Names in a `modules-list`: one per line, `#` starts a comment.
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.replace('-', "_"))
        .collect()
}

/// depmod's `modules.dep`: each module's path and the names of the modules it needs.
pub fn parse_modules_dep(text: &str) -> BTreeMap<String, (String, Vec<String>)> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(path, deps)| {
            let path = path.trim();
            (name_of(path), (path.to_owned(), deps.split_whitespace().map(name_of).collect()))
        })
        .collect()
}

/// `modules.alias` lines `alias PATTERN MODULE`, keeping the patterns that are plain names (no glob):
/// the ones a `modules-list` line could be. `-` is read as `_` in both, as in the list.
pub fn parse_aliases(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("alias"), Some(pattern), Some(module)) = (words.next(), words.next(), words.next()) {
            if !pattern.contains(['*', '?', '[']) {
                out.entry(pattern.replace('-', "_")).or_default().insert(module.replace('-', "_"));
            }
        }
    }
    out
}

/// `modules.alias` by module: every pattern of each, globs included, as coldplug matches them.
pub fn parse_alias_patterns(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("alias"), Some(pattern), Some(module)) = (words.next(), words.next(), words.next()) {
            out.entry(module.replace('-', "_")).or_default().push(pattern.to_owned());
        }
    }
    out
}

/// The aliases a module declares in its `.modinfo` (`alias=`).
pub fn modinfo_aliases(module: &[u8]) -> Result<Vec<String>, String> {
    Ok(elf::modinfo(module)?.into_iter().filter(|(k, _)| k == "alias").map(|(_, v)| v).collect())
}

/// Whether an alias is one a device announces in its `modalias` (`pci:v...`, `virtio:d...`,
/// `usb:v...`, `cpu:type:...`, `acpi*:...`), rather than a name something asks for (`fs-squashfs`,
/// `char-major-10-237`, `net-pf-17`, `crypto-crc32c`, `devname:loop-control`).
pub fn is_device_alias(alias: &str) -> bool {
    alias.contains(':') && !alias.starts_with("devname:") && !alias.starts_with("symbol:")
}

/// Whether module `m` has a device alias in `aliases`.
fn has_device_alias(aliases: &BTreeMap<String, Vec<String>>, m: &str) -> bool {
    aliases.get(m).is_some_and(|a| a.iter().any(|p| is_device_alias(p)))
}

/// The `modules.alias` the init reads, in depmod's format: `alias PATTERN MODULE` for the device
/// aliases of the packed modules, by module, each module's patterns in their order.
pub fn alias_index(aliases: &BTreeMap<String, Vec<String>>) -> String {
    let mut text = String::new();
    for (module, patterns) in aliases {
        for pattern in patterns.iter().filter(|p| is_device_alias(p)) {
            text.push_str(&format!("alias {pattern} {module}\n"));
        }
    }
    text
}

/// Gives each listed module that declares no device alias the device aliases of the packed modules
/// it needs, directly or not (`mlx4_en` those of `mlx4_core`, which only asks for it by name), so
/// that it loads with the device's driver. A listed module that needs none either is left without:
/// [`always`] names it.
pub fn inherit_aliases<'a>(
    aliases: &mut BTreeMap<String, Vec<String>>,
    modules: &BTreeMap<String, Module>,
    listed: impl IntoIterator<Item = &'a str>,
) {
    for name in listed {
        if has_device_alias(aliases, name) {
            continue;
        }
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&str> =
            modules.get(name).map(|m| m.depends.iter().map(String::as_str).collect()).unwrap_or_default();
        let mut inherited = Vec::new();
        while let Some(dep) = stack.pop() {
            if !seen.insert(dep) {
                continue;
            }
            if has_device_alias(aliases, dep) {
                inherited.extend(aliases[dep].iter().filter(|p| is_device_alias(p)).cloned());
            } else if let Some(m) = modules.get(dep) {
                stack.extend(m.depends.iter().map(String::as_str));
            }
        }
        aliases.entry(name.to_owned()).or_default().extend(inherited);
    }
}

/// Listed modules that `/init` loads when the cmdline asks for what they do (`8021q` for `vlan=`,
/// `bonding` for `bond=`, `netconsole` for `netinit.netconsole=`), so they are not in `modules.always`.
pub const ON_DEMAND: [&str; 5] = ["8021q", "bonding", "netconsole", "nbd", "dm_mod"];

/// `modules.always`, one name per line: the listed modules that no device alias names (the file
/// systems, `loop`, protocol modules) and that are not [`ON_DEMAND`]. No device will ask for them,
/// so the init loads them on every boot.
pub fn always<'a>(
    listed: impl IntoIterator<Item = &'a str>,
    aliases: &BTreeMap<String, Vec<String>>,
) -> String {
    let mut names: Vec<&str> =
        listed.into_iter().filter(|m| !has_device_alias(aliases, m) && !ON_DEMAND.contains(m)).collect();
    names.sort_unstable();
    names.dedup();
    names.iter().map(|n| format!("{n}\n")).collect()
}

/// What a kernel has: module files by name, modules compiled in, and plain-name aliases.
#[derive(Debug, Default)]
pub struct Index {
    /// Module name to its file, relative to the modules directory.
    pub files: BTreeMap<String, String>,
    pub builtin: BTreeSet<String>,
    pub aliases: BTreeMap<String, BTreeSet<String>>,
}

/// What resolving a list gave.
#[derive(Debug, Default)]
pub struct Resolved {
    /// The modules to pack, dependencies included, by name.
    pub modules: BTreeMap<String, Module>,
    /// Listed but compiled into this kernel: nothing to pack.
    pub builtin: Vec<String>,
    /// Listed but not in this kernel at all.
    pub missing: Vec<String>,
    /// Listed names that are aliases, with the module each stands for.
    pub aliased: Vec<(String, String)>,
}

impl Index {
    /// Resolves `wanted` and their dependencies. `depends` gives a module's dependencies by name
    /// (from `modules.dep` or `.modinfo` in real use). A listed name that is no module may be an
    /// alias; a dependency that is neither a file nor built in is an error: the module could not load.
    pub fn resolve(
        &self,
        wanted: &[String],
        depends: &mut dyn FnMut(&str) -> Result<Vec<String>, String>,
    ) -> Result<Resolved, String> {
        let mut r = Resolved::default();
        let mut queue: Vec<(String, Option<String>)> = wanted.iter().map(|w| (w.clone(), None)).collect();
        queue.reverse();
        while let Some((name, needed_by)) = queue.pop() {
            if r.modules.contains_key(&name) {
                continue;
            }
            let Some(path) = self.files.get(&name) else {
                match (self.builtin.contains(&name), needed_by, self.aliases.get(&name)) {
                    (true, None, _) => r.builtin.push(name),
                    (true, Some(_), _) => {}
                    (false, None, Some(targets)) => {
                        for target in targets.iter().rev() {
                            r.aliased.push((name.clone(), target.clone()));
                            queue.push((target.clone(), None));
                        }
                    }
                    (false, None, None) => r.missing.push(name),
                    (false, Some(by), _) => {
                        return Err(format!("{by} depends on {name}, which this kernel does not have"))
                    }
                }
                continue;
            };
            let deps = depends(&name)?;
            for dep in deps.iter().rev() {
                queue.push((dep.clone(), Some(name.clone())));
            }
            r.modules.insert(name.clone(), Module { name, path: path.clone(), depends: deps });
        }
        for list in [&mut r.builtin, &mut r.missing] {
            list.sort();
            list.dedup();
        }
        r.aliased.sort();
        Ok(r)
    }
}

/// Dependencies from a module's `.modinfo` (`depends=`), built-in ones included (the caller filters).
pub fn modinfo_depends(module: &[u8]) -> Result<Vec<String>, String> {
    let info = elf::modinfo(module)?;
    Ok(info
        .iter()
        .filter(|(k, _)| k == "depends")
        .flat_map(|(_, v)| v.split(',').filter(|d| !d.is_empty()).map(|d| d.replace('-', "_")))
        .collect())
}

/// `modules.dep` in depmod's format for the packed modules, at their packed (decompressed) paths:
/// every module with all the modules it needs, transitively, the one to load last first (as
/// modprobe reads it).
pub fn modules_dep(modules: &BTreeMap<String, Module>) -> String {
    fn closure(name: &str, m: &BTreeMap<String, Module>, out: &mut Vec<String>) {
        if let Some(module) = m.get(name) {
            for dep in &module.depends {
                if m.contains_key(dep) && !out.contains(dep) {
                    closure(dep, m, out);
                    out.push(dep.clone());
                }
            }
        }
    }
    let mut text = String::new();
    for (name, module) in modules {
        let mut deps = Vec::new();
        closure(name, modules, &mut deps);
        deps.retain(|d| d != name);
        let paths: Vec<&str> = deps.iter().rev().map(|d| packed_path(&modules[d].path)).collect();
        text.push_str(packed_path(&module.path));
        text.push(':');
        for path in paths {
            text.push(' ');
            text.push_str(path);
        }
        text.push('\n');
    }
    text
}

/// The release a modules directory is for: its own name (`lib/modules/<release>`).
pub fn release_of(dir: &Path) -> Result<String, String> {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| format!("{}: cannot tell the kernel release from this path", dir.display()))
}

fn looks_like_release_dir(dir: &Path) -> bool {
    dir.join("kernel").is_dir() || dir.join("modules.dep").is_file() || dir.join("modules.builtin").is_file()
}

/// The `<release>` directory that `path` names: `path` itself when it is one, else the only one in
/// `path` (a `lib/modules`), `path/lib/modules` or `path/usr/lib/modules` (the root of a system or
/// of a kernel package unpacked with `dpkg -x`; usr-merged ones keep modules under `usr/`).
pub fn find_release_dir(path: &Path) -> Result<PathBuf, String> {
    if looks_like_release_dir(path) {
        return Ok(path.to_owned());
    }
    let mut found: Vec<(PathBuf, PathBuf)> = Vec::new();
    for parent in [path.to_owned(), path.join("lib/modules"), path.join("usr/lib/modules")] {
        let Ok(entries) = std::fs::read_dir(&parent) else { continue };
        for dir in entries.flatten().map(|e| e.path()).filter(|d| looks_like_release_dir(d)) {
            // `lib` may be a link to `usr/lib`: the same directory found twice is one.
            let real = dir.canonicalize().unwrap_or_else(|_| dir.clone());
            if !found.iter().any(|(_, r)| *r == real) {
                found.push((dir, real));
            }
        }
    }
    found.sort();
    match found.as_slice() {
        [(dir, _)] => Ok(dir.clone()),
        [] => Err(format!(
            "{} is not a lib/modules/<release> directory (it has no kernel/, modules.dep or \
             modules.builtin), and no such directory is in it, in lib/modules/ or in usr/lib/modules/",
            path.display()
        )),
        several => Err(format!(
            "{} holds the modules of several kernels; give one of: {}",
            path.display(),
            several.iter().map(|(d, _)| d.display().to_string()).collect::<Vec<_>>().join(" ")
        )),
    }
}

/// Every module file below `dir/kernel`, `dir/extra` and `dir/updates` (which wins, as depmod's
/// default search order has it), by module name.
fn walk_modules(dir: &Path) -> Result<BTreeMap<String, String>, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> Result<(), String> {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                walk(base, &path, out)?;
            } else if path.file_name().is_some_and(|n| is_module_file(&n.to_string_lossy())) {
                let rel = path.strip_prefix(base).unwrap_or(&path).to_string_lossy().into_owned();
                out.insert(name_of(&rel), rel);
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    for sub in ["kernel", "extra", "updates"] {
        let d = dir.join(sub);
        if d.is_dir() {
            walk(dir, &d, &mut out)?;
        }
    }
    Ok(out)
}

/// A file of the modules directory, or `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// A kernel's modules directory, indexed.
#[derive(Debug)]
pub struct Tree {
    /// The `<release>` directory.
    pub dir: PathBuf,
    pub release: String,
    pub index: Index,
    /// Each module's dependencies from the kernel's own `modules.dep`; `None`: from `.modinfo`.
    dep: Option<BTreeMap<String, Vec<String>>>,
    /// Each module's aliases from the kernel's own `modules.alias`; `None`: from `.modinfo`.
    alias: Option<BTreeMap<String, Vec<String>>>,
}

impl Tree {
    /// Finds the release directory (see [`find_release_dir`]) and indexes it.
    pub fn open(path: &Path) -> Result<Tree, String> {
        let dir = find_release_dir(path)?;
        let release = release_of(&dir)?;
        let (files, dep) = match read_optional(&dir.join("modules.dep"))? {
            Some(text) => {
                let parsed = parse_modules_dep(&text);
                let files = parsed.iter().map(|(n, (p, _))| (n.clone(), p.clone())).collect();
                (files, Some(parsed.into_iter().map(|(n, (_, d))| (n, d)).collect()))
            }
            None => (walk_modules(&dir)?, None),
        };
        if files.is_empty() {
            return Err(format!(
                "{} holds no kernel modules (.ko, .ko.gz, .ko.xz or .ko.zst): is it a lib/modules/<release> directory?",
                dir.display()
            ));
        }
        let builtin = read_optional(&dir.join("modules.builtin"))?
            .map(|t| t.lines().map(name_of).collect())
            .unwrap_or_default();
        let alias_text = read_optional(&dir.join("modules.alias"))?;
        let aliases = alias_text.as_deref().map(parse_aliases).unwrap_or_default();
        let alias = alias_text.as_deref().map(parse_alias_patterns);
        Ok(Tree { dir, release, index: Index { files, builtin, aliases }, dep, alias })
    }

    /// Where the dependencies come from, for the build's report.
    pub fn dependency_source(&self) -> &'static str {
        match self.dep {
            Some(_) => "modules.dep",
            None => ".modinfo",
        }
    }

    /// A module's bytes, decompressed.
    pub fn read(&self, rel: &str) -> Result<Vec<u8>, String> {
        let path = self.dir.join(rel);
        let data = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        decompress(data).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The modules `name` needs, by name.
    pub fn depends(&self, name: &str) -> Result<Vec<String>, String> {
        if let Some(dep) = &self.dep {
            return Ok(dep.get(name).cloned().unwrap_or_default());
        }
        let rel = self.index.files.get(name).ok_or_else(|| format!("no module {name}"))?;
        modinfo_depends(&self.read(rel)?).map_err(|e| format!("{}: {e}", self.dir.join(rel).display()))
    }

    /// The aliases of module `name`, globs included.
    pub fn aliases(&self, name: &str) -> Result<Vec<String>, String> {
        if let Some(alias) = &self.alias {
            return Ok(alias.get(name).cloned().unwrap_or_default());
        }
        let rel = self.index.files.get(name).ok_or_else(|| format!("no module {name}"))?;
        modinfo_aliases(&self.read(rel)?).map_err(|e| format!("{}: {e}", self.dir.join(rel).display()))
    }

    /// The kernel's build configuration, when it is beside the modules: `boot/config-<release>` of
    /// the root that holds `lib/modules` or `usr/lib/modules` (a system, or an unpacked package).
    pub fn config(&self) -> Option<(PathBuf, String)> {
        let real = self.dir.canonicalize().ok()?;
        let name = format!("boot/config-{}", self.release);
        // `<root>/lib/modules/<release>` or `<root>/usr/lib/modules/<release>`.
        real.ancestors()
            .skip(3)
            .take(2)
            .map(|root| root.join(&name))
            .find_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t)))
    }
}

#[cfg(test)]
pub(crate) mod tests;
