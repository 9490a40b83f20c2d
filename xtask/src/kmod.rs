//! Kernel modules for the initramfs: find each module of `modules-list` in a kernel's modules
//! directory, add its dependencies (read from each module's `.modinfo` `depends=`, since Debian's
//! packages ship no `modules.dep`), and write the `modules.dep` the init reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::elf;

/// A module and what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    /// Relative to the modules directory, e.g. `kernel/drivers/net/virtio_net.ko`.
    pub path: String,
    pub depends: Vec<String>,
}

/// The kernel's name for a module file: the stem, `-` read as `_`.
pub fn name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

/// Names in a `modules-list`: one per line, `#` starts a comment.
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.replace('-', "_"))
        .collect()
}

/// Every `.ko` file below `dir/kernel` (and `dir/updates`, `dir/extra`), by module name.
pub fn index(dir: &Path) -> Result<BTreeMap<String, String>, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> Result<(), String> {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out)?;
            } else if path.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".ko")) {
                let rel = path.strip_prefix(base).unwrap_or(&path).to_string_lossy().into_owned();
                out.insert(name_of(&rel), rel);
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    for sub in ["kernel", "updates", "extra"] {
        let d = dir.join(sub);
        if d.is_dir() {
            walk(dir, &d, &mut out)?;
        }
    }
    if out.is_empty() {
        return Err(format!(
            "{} holds no .ko files: is it a lib/modules/<release> directory?",
            dir.display()
        ));
    }
    Ok(out)
}

/// Module names from `modules.builtin` (modules compiled into the kernel), if the file exists.
pub fn builtin(dir: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(dir.join("modules.builtin"))
        .map(|t| t.lines().map(name_of).collect())
        .unwrap_or_default()
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
}

/// Resolves `wanted` and their dependencies. `depends` reads a module's dependencies (from its
/// `.modinfo` in real use). A dependency that is neither a file nor built in is an error: the
/// module could not load.
pub fn resolve(
    wanted: &[String],
    files: &BTreeMap<String, String>,
    builtin: &BTreeSet<String>,
    depends: &mut dyn FnMut(&str) -> Result<Vec<String>, String>,
) -> Result<Resolved, String> {
    let mut r = Resolved::default();
    let mut queue: Vec<(String, Option<String>)> = wanted.iter().map(|w| (w.clone(), None)).collect();
    queue.reverse();
    while let Some((name, needed_by)) = queue.pop() {
        if r.modules.contains_key(&name) {
            continue;
        }
        let Some(path) = files.get(&name) else {
            match (builtin.contains(&name), needed_by) {
                (true, None) => r.builtin.push(name),
                (true, Some(_)) => {}
                (false, None) => r.missing.push(name),
                (false, Some(by)) => {
                    return Err(format!("{by} depends on {name}, which this kernel does not have"))
                }
            }
            continue;
        };
        let deps = depends(path)?;
        for dep in deps.iter().rev() {
            queue.push((dep.clone(), Some(name.clone())));
        }
        r.modules.insert(name.clone(), Module { name, path: path.clone(), depends: deps });
    }
    r.builtin.sort();
    r.builtin.dedup();
    r.missing.sort();
    r.missing.dedup();
    Ok(r)
}

/// Dependencies from a module file's `.modinfo`, built-in ones included (the caller filters).
pub fn read_depends(path: &Path) -> Result<Vec<String>, String> {
    let data = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let info = elf::modinfo(&data).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(info
        .iter()
        .filter(|(k, _)| k == "depends")
        .flat_map(|(_, v)| v.split(',').filter(|d| !d.is_empty()).map(|d| d.replace('-', "_")))
        .collect())
}

/// `modules.dep` in depmod's format: every module with all the modules it needs, transitively,
/// the one to load last first (as modprobe reads it).
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
        let paths: Vec<&str> = deps.iter().rev().map(|d| modules[d].path.as_str()).collect();
        text.push_str(&format!(
            "{}:{}{}\n",
            module.path,
            if paths.is_empty() { "" } else { " " },
            paths.join(" ")
        ));
    }
    text
}

/// The release a modules directory is for: its own name (`lib/modules/<release>`).
pub fn release_of(dir: &Path) -> Result<String, String> {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| format!("{}: cannot tell the kernel release from this path", dir.display()))
}

pub fn module_path(dir: &Path, m: &Module) -> PathBuf {
    dir.join(&m.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> BTreeMap<String, String> {
        [
            ("virtio_net", "kernel/drivers/net/virtio_net.ko"),
            ("net_failover", "kernel/drivers/net/net_failover.ko"),
            ("failover", "kernel/net/core/failover.ko"),
            ("loop", "kernel/drivers/block/loop.ko"),
            ("broken", "kernel/broken.ko"),
        ]
        .into_iter()
        .map(|(n, p)| (n.to_owned(), p.to_owned()))
        .collect()
    }

    fn deps(path: &str) -> Result<Vec<String>, String> {
        Ok(match path {
            "kernel/drivers/net/virtio_net.ko" => {
                vec!["net_failover".into(), "failover".into(), "virtio".into()]
            }
            "kernel/drivers/net/net_failover.ko" => vec!["failover".into()],
            "kernel/broken.ko" => vec!["nowhere".into()],
            _ => vec![],
        })
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn lists() {
        assert_eq!(
            parse_list("# NICs\nvirtio_net  # qemu\n\n  e1000e\nhid-generic\n"),
            ["virtio_net", "e1000e", "hid_generic"]
        );
    }

    #[test]
    fn resolution() {
        let builtin: BTreeSet<String> = ["virtio".to_string(), "ext4".to_string()].into();
        let r =
            resolve(&names(&["virtio_net", "loop", "e1000", "ext4"]), &files(), &builtin, &mut |p| deps(p))
                .unwrap();
        assert_eq!(r.modules.keys().collect::<Vec<_>>(), ["failover", "loop", "net_failover", "virtio_net"]);
        assert_eq!(r.builtin, ["ext4"]);
        assert_eq!(r.missing, ["e1000"]);
        let e = resolve(&names(&["broken"]), &files(), &builtin, &mut |p| deps(p)).unwrap_err();
        assert_eq!(e, "broken depends on nowhere, which this kernel does not have");
    }

    #[test]
    fn dep_file() {
        let r = resolve(
            &names(&["virtio_net", "loop"]),
            &files(),
            &BTreeSet::from(["virtio".to_string()]),
            &mut |p| deps(p),
        )
        .unwrap();
        assert_eq!(
            modules_dep(&r.modules),
            "kernel/net/core/failover.ko:
kernel/drivers/block/loop.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
"
        );
    }

    #[test]
    fn names_and_releases() {
        assert_eq!(name_of("kernel/drivers/hid/hid-generic.ko"), "hid_generic");
        assert_eq!(
            release_of(Path::new("/x/lib/modules/6.1.0-56-cloud-amd64")).unwrap(),
            "6.1.0-56-cloud-amd64"
        );
    }
}
