//! The modules stage: load the kernel modules packed in the initramfs, each after its dependencies.
//!
//! `cargo xtask cpio` packs the modules of `modules-list` and their dependencies under
//! `/lib/modules/<release>/`, with a `modules.dep` in depmod's format, and their device aliases in
//! `modules.alias`. By default the machine's devices choose what loads ([`coldplug`]: without
//! udev, by the aliases); `netinit.coldplug=no`, or an initramfs without `modules.alias`, loads
//! every packed module instead ([`load_all`]), plus any named by `modules=`. Loading is
//! `finit_module(2)`; there is no modprobe and no udev.
//!
//! The parsing, matching and ordering are pure and tested on the host; [`packed`], [`load_all`]
//! and [`coldplug::start`] are the parts with I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use crate::sys;

pub mod alias;
pub mod coldplug;

use alias::AliasIndex;

/// A module as `modules.dep` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    /// Path relative to the modules directory, as in `modules.dep`.
    pub path: String,
    /// Names of the modules it needs.
    pub deps: Vec<String>,
}

/// `modules.dep`, by module name.
pub type ModuleDb = BTreeMap<String, Module>;

/// A module's name from its path: the file name without `.ko` (and any `.xz`/`.zst`/`.gz`),
/// with `-` read as `_`, as the kernel names modules.
pub fn name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// Parses depmod's `modules.dep`: one line per module, `path: dep-path dep-path ...`.
/// Lines that are not of that shape, and paths that would leave the modules directory (absolute,
/// or with a `..`), are skipped and counted.
pub fn parse_modules_dep(text: &str) -> (ModuleDb, usize) {
    let mut db = ModuleDb::new();
    let mut skipped = 0usize;
    for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let Some((path, deps)) = line.split_once(':') else {
            skipped = skipped.saturating_add(1);
            continue;
        };
        let path = path.trim();
        if !inside(path) || !deps.split_whitespace().all(inside) {
            skipped = skipped.saturating_add(1);
            continue;
        }
        let name = name_of(path);
        let deps = deps.split_whitespace().map(name_of).collect();
        db.insert(name.clone(), Module { name, path: path.to_owned(), deps });
    }
    (db, skipped)
}

/// A module path that stays in the modules directory: relative, no `..`, a `.ko` file.
fn inside(path: &str) -> bool {
    !path.starts_with('/') && path.contains(".ko") && !path.split('/').any(|p| p == ".." || p.is_empty())
}

/// The longest dependency chain followed: real kernels stay below 10; a longer one is a broken
/// `modules.dep`, refused before the recursion could exhaust PID 1's stack.
pub const MAX_DEPTH: usize = 64;

/// Why a set of modules cannot be put in order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("module {module} needs {missing}, which is not in the initramfs")]
    MissingDependency { module: String, missing: String },
    #[error("modules depend on each other in a cycle: {0}")]
    Cycle(String),
    #[error("a dependency chain longer than {MAX_DEPTH} modules: {0} ...")]
    TooDeep(String),
}

/// The modules to load for `wanted`, dependencies first, each once. Among modules with no order
/// between them, the order is by name, so that a boot is reproducible.
pub fn load_order<'a>(db: &'a ModuleDb, wanted: &[String]) -> Result<Vec<&'a Module>, OrderError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        db: &'a ModuleDb,
        name: &str,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
        out: &mut Vec<&'a Module>,
    ) -> Result<(), OrderError> {
        match marks.get(name) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|n| n == name).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(name.to_owned());
                return Err(OrderError::Cycle(cycle.join(" -> ")));
            }
            None => {}
        }
        let Some(module) = db.get(name) else {
            return Err(OrderError::MissingDependency {
                module: stack.last().cloned().unwrap_or_default(),
                missing: name.to_owned(),
            });
        };
        if stack.len() >= MAX_DEPTH {
            return Err(OrderError::TooDeep(stack[..4].join(" -> ")));
        }
        marks.insert(name.to_owned(), Mark::Visiting);
        stack.push(name.to_owned());
        let deps: BTreeSet<&String> = module.deps.iter().collect();
        for dep in deps {
            visit(db, dep, marks, stack, out)?;
        }
        stack.pop();
        marks.insert(name.to_owned(), Mark::Done);
        out.push(module);
        Ok(())
    }

    let mut marks = BTreeMap::new();
    let mut out = Vec::new();
    let wanted: BTreeSet<&String> = wanted.iter().collect();
    for name in wanted {
        visit(db, name, &mut marks, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

/// The modules that `blacklist` keeps from loading: each blacklisted module, and each module that
/// needs one, directly or not, with the blacklisted module that blocks it.
pub fn blocked(db: &ModuleDb, blacklist: &[String]) -> BTreeMap<String, String> {
    fn blocker(
        db: &ModuleDb,
        name: &str,
        blacklist: &[String],
        seen: &mut BTreeSet<String>,
        depth: usize,
    ) -> Option<String> {
        if blacklist.iter().any(|b| b == name) {
            return Some(name.to_owned());
        }
        // Past MAX_DEPTH the chain is refused by `load_order` anyway.
        if depth >= MAX_DEPTH || !seen.insert(name.to_owned()) {
            return None;
        }
        db.get(name)?.deps.iter().find_map(|d| blocker(db, d, blacklist, seen, depth + 1))
    }
    db.keys()
        .filter_map(|name| blocker(db, name, blacklist, &mut BTreeSet::new(), 0).map(|b| (name.clone(), b)))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ModulesError {
    #[error("this initramfs has modules for kernel {} but the running kernel is {running}", packed.join(", "))]
    WrongKernel { running: String, packed: Vec<String> },
    #[error("reading {path}")]
    ReadDep { path: PathBuf, source: io::Error },
    #[error("ordering the modules of {path}")]
    Order { path: PathBuf, source: OrderError },
}

impl ModulesError {
    pub fn hint(&self) -> &'static str {
        match self {
            ModulesError::WrongKernel { .. } => {
                "the kernel was updated but not the initramfs: rebuild it from this kernel's modules (cargo xtask cpio --modules-dir .../lib/modules/<release>)"
            }
            _ => "the initramfs is damaged: rebuild it with cargo xtask cpio",
        }
    }
}

/// Whether the modules packed for the releases `packed` (the directories of `/lib/modules`) can
/// serve the running kernel `running`: they cannot when there are some, and none is for it.
pub fn check_release(running: &str, packed: &[String]) -> Result<(), ModulesError> {
    if packed.is_empty() || packed.iter().any(|p| p == running) {
        return Ok(());
    }
    Err(ModulesError::WrongKernel { running: running.to_owned(), packed: packed.to_vec() })
}

/// What [`load_all`] did.
#[derive(Debug, Default)]
pub struct Loaded {
    pub loaded: usize,
    pub already: usize,
    pub failed: Vec<String>,
}

/// The packed modules: where they are, `modules.dep`, and the coldplug files when packed.
pub struct Packed {
    pub dir: PathBuf,
    pub db: ModuleDb,
    /// `modules.alias` and `modules.always`; `None` when the initramfs has no `modules.alias`
    /// (built before coldplug, or by hand).
    pub coldplug: Option<(AliasIndex, Vec<String>)>,
}

/// Reads the packed modules' index for the running kernel. No modules at all is fine (a kernel
/// with its drivers built in); modules for another kernel are an error.
pub fn packed() -> Result<Packed, ModulesError> {
    let dir = Path::new("/lib/modules").join(sys::kernel_release());
    let dep_path = dir.join("modules.dep");
    let text = match std::fs::read_to_string(&dep_path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut packed: Vec<String> = std::fs::read_dir("/lib/modules")
                .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            packed.sort();
            check_release(&sys::kernel_release(), &packed)?;
            log::warn!(
                "no {}: this initramfs carries no modules for this kernel; going on with built-in drivers",
                dep_path.display()
            );
            String::new()
        }
        Err(source) => return Err(ModulesError::ReadDep { path: dep_path, source }),
    };
    let (db, skipped) = parse_modules_dep(&text);
    if skipped > 0 {
        log::warn!("{}: skipped {skipped} malformed lines", dep_path.display());
    }
    let coldplug = match std::fs::read_to_string(dir.join("modules.alias")) {
        Ok(text) => {
            let (aliases, skipped) = AliasIndex::parse(&text);
            if skipped > 0 {
                log::warn!("{}/modules.alias: skipped {skipped} malformed lines", dir.display());
            }
            let always = std::fs::read_to_string(dir.join("modules.always")).unwrap_or_default();
            let always = always.split_whitespace().map(|m| m.replace('-', "_")).collect();
            Some((aliases, always))
        }
        Err(_) => None,
    };
    Ok(Packed { dir, db, coldplug })
}

/// Loads every packed module plus `extra`, dependencies first, except those `blacklist` blocks
/// (`netinit.coldplug=no`, or an initramfs without `modules.alias`). A module that fails to load
/// is logged and skipped: a missing driver shows up later, at the step that needs it, with its name.
pub fn load_all(packed: &Packed, extra: &[String], blacklist: &[String]) -> Result<Loaded, ModulesError> {
    let Packed { dir, db, .. } = packed;
    let mut wanted: Vec<String> = db.keys().cloned().collect();
    for name in extra {
        if db.contains_key(name) {
            wanted.push(name.clone());
        } else {
            warn_not_packed(name);
        }
    }
    let blocked = blocked(db, blacklist);
    log_refused(&blocked);
    wanted.retain(|m| !blocked.contains_key(m));
    let order = load_order(db, &wanted).map_err(|source| order_error(dir, source))?;
    log::info!("loading {} kernel modules for {}", order.len(), sys::kernel_release());
    let mut result = Loaded::default();
    for module in order {
        result.count(module, load_one(dir, module));
    }
    Ok(result)
}

/// What one `finit_module` gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadResult {
    Loaded,
    /// `EEXIST`: loaded already, by the kernel or a module before.
    Already,
    /// Logged, with the module's name and path.
    Failed,
}

/// The parameters netinit loads a module with, as modprobe.d's `options` lines would give them:
/// `bonding` makes no `bond0` of its own (its `max_bonds` defaults to 1), so that the network
/// stage creates each `bond=` itself, with its options, over rtnetlink; and `nbd` makes none of
/// its 16 idle `/dev/nbdN` (its `nbds_max` default): the streamed root's `NBD_CMD_CONNECT` makes the
/// one device it attaches, and the booted system sees that one only.
const MODULE_PARAMS: [(&str, &std::ffi::CStr); 2] = [("bonding", c"max_bonds=0"), ("nbd", c"nbds_max=0")];

/// The parameters for module `name`: empty for all but [`MODULE_PARAMS`]'.
pub fn params(name: &str) -> &'static std::ffi::CStr {
    MODULE_PARAMS.iter().find(|(m, _)| *m == name).map_or(c"", |(_, p)| p)
}

/// Loads the module `m` of the modules directory `dir`.
pub fn load_one(dir: &Path, m: &Module) -> LoadResult {
    log::debug!("loading {}", m.path);
    match sys::load_module(&dir.join(&m.path), params(&m.name)) {
        Ok(()) => LoadResult::Loaded,
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => LoadResult::Already,
        Err(e) => {
            log::warn!("loading module {} ({}): {e}", m.name, m.path);
            LoadResult::Failed
        }
    }
}

impl Loaded {
    pub fn count(&mut self, m: &Module, result: LoadResult) {
        match result {
            LoadResult::Loaded => self.loaded += 1,
            LoadResult::Already => self.already += 1,
            LoadResult::Failed => self.failed.push(m.name.clone()),
        }
    }
}

/// Says which modules `blacklist=` keeps from loading, and for those that only need a blacklisted
/// one, which.
pub fn log_refused(refused: &BTreeMap<String, String>) {
    for (module, by) in refused {
        if module == by {
            log::info!("not loading {module}: blacklisted");
        } else {
            log::info!("not loading {module}: it needs {by}, which is blacklisted");
        }
    }
}

/// `modules=` named a module this initramfs does not carry.
pub fn warn_not_packed(name: &str) {
    log::warn!("modules: {name} is not in this initramfs; add it to modules-list and rebuild");
}

pub fn order_error(dir: &Path, source: OrderError) -> ModulesError {
    ModulesError::Order { path: dir.join("modules.dep"), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bonding_makes_no_bond_of_its_own() {
        assert_eq!(params("bonding"), c"max_bonds=0");
        assert_eq!(params("8021q"), c"");
        assert_eq!(params("nbd"), c"nbds_max=0");
    }

    const DEP: &str = "\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/fs/overlayfs/overlay.ko:
";

    fn names(modules: &[&Module]) -> Vec<String> {
        modules.iter().map(|m| m.name.clone()).collect()
    }

    fn wanted(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn paths_out_of_the_modules_directory_are_skipped() {
        let (db, skipped) = parse_modules_dep(
            "../../../etc/evil.ko:\n/abs/evil.ko:\nkernel/a.ko: ../b.ko\nkernel//c.ko:\nREADME:\nkernel/ok.ko:\n",
        );
        assert_eq!((db.keys().map(String::as_str).collect::<Vec<_>>(), skipped), (vec!["ok"], 5));
    }

    #[test]
    fn a_chain_deeper_than_the_bound_is_refused_not_recursed() {
        let text: String =
            (0..10_000).map(|i| format!("m{i}.ko: m{}.ko\n", i + 1)).collect::<String>() + "m10000.ko:\n";
        let (db, _) = parse_modules_dep(&text);
        assert!(matches!(load_order(&db, &wanted(&["m0"])), Err(OrderError::TooDeep(_))));
        assert!(blocked(&db, &wanted(&["m10000"])).len() < 100, "the blocker search stops at the bound too");
        let shallow: String =
            (0..MAX_DEPTH - 1).map(|i| format!("m{i}.ko: m{}.ko\n", i + 1)).collect::<String>()
                + &format!("m{}.ko:\n", MAX_DEPTH - 1);
        let (db, _) = parse_modules_dep(&shallow);
        assert_eq!(load_order(&db, &wanted(&["m0"])).map(|o| o.len()), Ok(MAX_DEPTH));
    }

    #[test]
    fn module_names() {
        let check = |path: &str, name: &str| assert_eq!(name_of(path), name);
        check("kernel/drivers/net/virtio_net.ko", "virtio_net");
        check("kernel/fs/fuse/cuse.ko.xz", "cuse");
        check("kernel/drivers/hid/hid-generic.ko.zst", "hid_generic");
        check("loop.ko", "loop");
    }

    #[test]
    fn parse() {
        let (db, skipped) = parse_modules_dep(DEP);
        assert_eq!((db.len(), skipped), (9, 0));
        assert_eq!(db["virtio_net"].deps, ["net_failover", "failover"]);
        assert_eq!(db["overlay"].path, "kernel/fs/overlayfs/overlay.ko");
        let (db, skipped) = parse_modules_dep("garbage line\n\n# comment\nkernel/a.ko:\n");
        assert_eq!((db.len(), skipped), (1, 1));
    }

    #[test]
    fn order() {
        let (db, _) = parse_modules_dep(DEP);
        let check = |w: &[&str], expected: &[&str]| {
            assert_eq!(names(&load_order(&db, &wanted(w)).unwrap()), expected, "{w:?}");
        };
        check(&[], &[]);
        check(&["failover"], &["failover"]);
        check(&["virtio_net"], &["failover", "net_failover", "virtio_net"]);
        check(&["virtio_net", "failover", "virtio_net"], &["failover", "net_failover", "virtio_net"]);
        check(
            &["virtio_pci", "overlay"],
            &[
                "overlay",
                "virtio_ring",
                "virtio",
                "virtio_pci_legacy_dev",
                "virtio_pci_modern_dev",
                "virtio_pci",
            ],
        );
        let all: Vec<&str> = db.keys().map(String::as_str).collect();
        let order = names(&load_order(&db, &wanted(&all)).unwrap());
        for m in db.values() {
            let at = order.iter().position(|n| *n == m.name).unwrap();
            for dep in &m.deps {
                assert!(order.iter().position(|n| n == dep).unwrap() < at, "{dep} before {}", m.name);
            }
        }
    }

    #[test]
    fn kernel_releases() {
        let r = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_release("6.1.0-56-amd64", &r(&["6.1.0-56-amd64"])).is_ok());
        assert!(
            check_release("6.1.0-56-amd64", &r(&[])).is_ok(),
            "no modules at all: a kernel with drivers built in"
        );
        let e = check_release("6.1.0-57-amd64", &r(&["6.1.0-56-amd64"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "this initramfs has modules for kernel 6.1.0-56-amd64 but the running kernel is 6.1.0-57-amd64"
        );
        assert!(e.hint().starts_with("the kernel was updated but not the initramfs"));
    }

    #[test]
    fn blacklisting() {
        let (db, _) = parse_modules_dep(DEP);
        let check = |black: &[&str], expected: &[(&str, &str)]| {
            let got = blocked(&db, &wanted(black));
            let got: Vec<(&str, &str)> = got.iter().map(|(m, b)| (m.as_str(), b.as_str())).collect();
            assert_eq!(got, expected, "{black:?}");
        };
        check(&[], &[]);
        check(&["overlay"], &[("overlay", "overlay")]);
        check(
            &["failover"],
            &[("failover", "failover"), ("net_failover", "failover"), ("virtio_net", "failover")],
        );
        check(
            &["virtio_ring"],
            &[("virtio", "virtio_ring"), ("virtio_pci", "virtio_ring"), ("virtio_ring", "virtio_ring")],
        );
        check(&["not_packed"], &[]);
    }

    #[test]
    fn order_errors() {
        let (db, _) = parse_modules_dep("a.ko: b.ko\nb.ko: c.ko\nc.ko: a.ko\nd.ko: e.ko\n");
        let check = |w: &[&str], expected: OrderError| {
            assert_eq!(load_order(&db, &wanted(w)).unwrap_err(), expected, "{w:?}");
        };
        check(&["a"], OrderError::Cycle("a -> b -> c -> a".into()));
        check(&["d"], OrderError::MissingDependency { module: "d".into(), missing: "e".into() });
        check(&["zz"], OrderError::MissingDependency { module: String::new(), missing: "zz".into() });
    }
}
