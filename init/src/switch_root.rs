//! The switch_root stage: hand the machine to the image's init, as switch_root(8) does. Choose the init (`init=`,
//! else the first of [`INIT_RULE`] the image has) and check it is executable while a failure can
//! still be reported, move `/dev /proc /sys /run` over, leave Alpine's `modloop` service what it
//! looks for (`modloop_service`), free the initramfs's memory by deleting its files (never crossing
//! into another mount, and only if `/` really is the initramfs), make the new root `/`, and exec the
//! init with the console on fds 0-2.
//!
//! It deliberately does not run any program of the image before exec.

use std::convert::Infallible;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};

use crate::cmdline::{InitCandidate, INIT_RULE};
use crate::sys;

/// The API file systems moved into the new root.
const MOVED: [&str; 4] = ["/dev", "/proc", "/sys", "/run"];
const RAMFS_MAGIC: i64 = 0x8584_58f6;
const TMPFS_MAGIC: i64 = 0x0102_1994;
/// More symlinks than this on the way to the init is a loop (the kernel's limit is 40).
const MAX_LINKS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("the image has no {init}{}", found.as_deref().map(|f| format!(" ({f})")).unwrap_or_default())]
    NoInit { init: String, found: Option<String> },
    #[error("the image has none of the inits netinit looks for: {}", rule_text())]
    NoInitFound,
    #[error("{init} in the image is not an executable file")]
    NotExecutable { init: String },
    #[error("moving {from} to {to}")]
    Move { from: String, to: PathBuf, source: io::Error },
    #[error("making {0} the root")]
    MoveRoot(PathBuf, #[source] io::Error),
    #[error("executing {init}")]
    Exec { init: String, source: io::Error },
}

impl SwitchError {
    pub fn hint(&self) -> &'static str {
        match self {
            SwitchError::NoInit { .. } | SwitchError::NotExecutable { .. } | SwitchError::NoInitFound => {
                "set init= to the image's init, e.g. init=/sbin/openrc-init or init=/sbin/zinit"
            }
            _ => "this is unexpected; the error above names the step and the system's answer",
        }
    }
}

/// The host path of the directory `path` in `root`, created if missing, for mounting on: every
/// symlink resolved inside `root`, as the booted system will see it (an image's `/run -> /var/run`
/// mounts on its `/var/run`, its `/dev -> /` on nothing outside it). `root` itself is refused: a
/// mount there would hide the whole new root.
pub fn mount_point_in(root: &Path, path: &str) -> io::Result<PathBuf> {
    let rel = path.trim_start_matches('/');
    sys::InRoot::open(root)?.create_dirs(rel, 0o755)?;
    let host = resolve_in(root, path)?;
    if host == root || !std::fs::metadata(&host)?.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    Ok(host)
}

/// Resolves `path` inside `root` as the kernel would after chroot: absolute symlinks start again at
/// `root`, `..` never climbs above it. Returns the host path of the final file.
pub fn resolve_in(root: &Path, path: &str) -> io::Result<PathBuf> {
    let mut pending: Vec<String> = vec![path.to_owned()];
    let mut resolved = PathBuf::new(); // relative to root
    let mut links = 0;
    while let Some(p) = pending.pop() {
        let mut components: Vec<Component> = Path::new(&p).components().collect();
        components.reverse();
        if p.starts_with('/') {
            resolved.clear();
        }
        while let Some(c) = components.pop() {
            match c {
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    resolved.pop();
                }
                Component::Normal(name) => {
                    resolved.push(name);
                    let host = root.join(&resolved);
                    let meta = std::fs::symlink_metadata(&host)?;
                    if meta.file_type().is_symlink() {
                        links += 1;
                        if links > MAX_LINKS {
                            return Err(io::Error::from_raw_os_error(libc::ELOOP));
                        }
                        resolved.pop();
                        let rest: PathBuf = components.iter().rev().collect();
                        let target = std::fs::read_link(&host)?;
                        if !rest.as_os_str().is_empty() {
                            pending.push(rest.to_string_lossy().into_owned());
                        }
                        pending.push(target.to_string_lossy().into_owned());
                        break;
                    }
                }
            }
        }
    }
    Ok(root.join(resolved))
}

/// The program netinit execs in the new root, with its arguments and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Init {
    pub path: String,
    pub args: Vec<String>,
    /// For the log: `init=`, or which rule chose it.
    pub reason: String,
}

impl std::fmt::Display for Init {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path)?;
        for a in &self.args {
            write!(f, " {a}")?;
        }
        write!(f, " ({})", self.reason)
    }
}

/// One program the boot may exec, with the arguments it would get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub path: String,
    pub args: Vec<String>,
    /// A directory the image must also have for this one to be chosen.
    pub with_dir: Option<&'static str>,
}

/// What the boot will exec, in order of preference: the `init=` program alone, or the candidates of
/// [`INIT_RULE`]. `init_args`, when not empty, replace each one's own arguments.
pub fn candidates(explicit: Option<&str>, init_args: &[String]) -> Vec<Candidate> {
    let args = |own: &[&str]| -> Vec<String> {
        if init_args.is_empty() {
            own.iter().map(|a| a.to_string()).collect()
        } else {
            init_args.to_vec()
        }
    };
    match explicit {
        Some(path) => vec![Candidate { path: path.to_owned(), args: args(&[]), with_dir: None }],
        None => INIT_RULE
            .iter()
            .map(|c: &InitCandidate| Candidate {
                path: c.path.to_owned(),
                args: args(c.args),
                with_dir: c.with_dir,
            })
            .collect(),
    }
}

/// The candidates in words: `/sbin/zinit init if the image has /etc/zinit/, else /sbin/init, else
/// /sbin/openrc-init`.
pub fn candidates_text(candidates: &[Candidate]) -> String {
    let one = |c: &Candidate| {
        let mut s = std::iter::once(&c.path).chain(&c.args).cloned().collect::<Vec<_>>().join(" ");
        if let Some(dir) = c.with_dir {
            s.push_str(&format!(" if the image has {dir}/"));
        }
        s
    };
    candidates.iter().map(one).collect::<Vec<_>>().join(", else ")
}

/// The rule without `init=` and `init_args=`, in words.
pub fn rule_text() -> String {
    candidates_text(&candidates(None, &[]))
}

/// Chooses the init: the `init=` program when given, else the first candidate of [`INIT_RULE`]
/// the image has (`has_file`, `has_dir` answer for paths inside it). `None`: it has none of them.
pub fn choose(
    explicit: Option<&str>,
    init_args: &[String],
    has_file: impl Fn(&str) -> bool,
    has_dir: impl Fn(&str) -> bool,
) -> Option<Init> {
    let all = candidates(explicit, init_args);
    if explicit.is_some() {
        return all.into_iter().next().map(|c| Init { path: c.path, args: c.args, reason: "init=".into() });
    }
    let chosen = all.into_iter().find(|c| has_file(&c.path) && c.with_dir.is_none_or(&has_dir))?;
    let reason = match chosen.with_dir {
        Some(dir) => format!("the image has {} and {dir}/", chosen.path),
        None => format!("the image's {}", chosen.path),
    };
    Some(Init { path: chosen.path, args: chosen.args, reason })
}

/// [`choose`] against the new root at `root`, symlinks resolved inside it.
pub fn choose_in(root: &Path, explicit: Option<&str>, init_args: &[String]) -> Result<Init, SwitchError> {
    let meta = |p: &str| resolve_in(root, p).and_then(std::fs::metadata).ok();
    let has_file = |p: &str| meta(p).is_some_and(|m| !m.is_dir());
    let has_dir = |p: &str| meta(p).is_some_and(|m| m.is_dir());
    choose(explicit, init_args, has_file, has_dir).ok_or(SwitchError::NoInitFound)
}

/// Checks that `init` is an executable file in `root`.
fn check_init(root: &Path, init: &str) -> Result<(), SwitchError> {
    let no_init = |found: Option<String>| SwitchError::NoInit { init: init.to_owned(), found };
    let host = resolve_in(root, init).map_err(|e| no_init(Some(e.to_string())))?;
    let meta = std::fs::metadata(&host).map_err(|e| no_init(Some(e.to_string())))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(SwitchError::NotExecutable { init: init.to_owned() });
    }
    Ok(())
}

/// What deleting the initramfs did.
#[derive(Debug, Default, PartialEq, Eq)]
struct Freed {
    entries: usize,
    bytes: u64,
    failed: usize,
}

/// Deletes the initramfs's files below `dir`, staying on the file system `dev`. Best effort.
fn delete_tree(dir: &Path, dev: u64, freed: &mut Freed) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        freed.failed += 1;
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            freed.failed += 1;
            continue;
        };
        if meta.dev() != dev {
            continue; // a mount point: the new root, or something mounted below it
        }
        let removed = if meta.is_dir() {
            delete_tree(&path, dev, freed);
            std::fs::remove_dir(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => {
                freed.entries += 1;
                freed.bytes += meta.len();
            }
            Err(_) => freed.failed += 1,
        }
    }
}

/// Frees the initramfs, as switch_root(8) does, but only when `/` is the initramfs (ramfs or tmpfs).
fn free_initramfs(new_root: &Path) {
    let is_initramfs = rustix::fs::statfs("/").is_ok_and(|s| matches!(s.f_type, RAMFS_MAGIC | TMPFS_MAGIC));
    let Ok(root_dev) = std::fs::metadata("/").map(|m| m.dev()) else { return };
    if !is_initramfs || std::fs::metadata(new_root).is_ok_and(|m| m.dev() == root_dev) {
        log::warn!("/ is not an initramfs or the new root is not a mount; not deleting anything");
        return;
    }
    let mut freed = Freed::default();
    delete_tree(Path::new("/"), root_dev, &mut freed);
    log::info!("freed the initramfs: {} files and directories, {} KiB", freed.entries, freed.bytes / 1024);
    if freed.failed > 0 {
        log::warn!("{} initramfs entries could not be deleted; their memory stays in use", freed.failed);
    }
}

/// Everything up to the point of no return: after this, `/` is the new root. `prepare` runs once the
/// API file systems are in the new root and before the initramfs is freed (the boot passes
/// `modloop_service::prepare`).
pub fn enter(new_root: &Path, init: &Init, prepare: fn(&Path)) -> Result<(), SwitchError> {
    check_init(new_root, &init.path)?;
    for from in MOVED {
        let move_to = |to: &Path| sys::mount_move(Path::new(from), to);
        mount_point_in(new_root, from).and_then(|to| move_to(&to)).map_err(|source| SwitchError::Move {
            from: from.to_owned(),
            to: new_root.join(&from[1..]),
            source,
        })?;
    }
    prepare(new_root);
    free_initramfs(new_root);
    sys::move_root(new_root).map_err(|e| SwitchError::MoveRoot(new_root.to_owned(), e))?;
    Ok(())
}

/// Execs the target init with the console as stdin, stdout and stderr. Returns only on failure.
pub fn exec(init: &Init) -> Result<Infallible, SwitchError> {
    match std::fs::File::options().read(true).write(true).open("/dev/console") {
        Ok(console) => {
            if let Err(e) = sys::set_stdio(&console) {
                log::warn!("making /dev/console stdin/stdout/stderr: {e}");
            }
        }
        Err(e) => log::warn!("opening /dev/console in the new root: {e}"),
    }
    let mut cmd = std::process::Command::new(&init.path);
    cmd.args(&init.args);
    // The kernel passes unknown `name=value` words to init as environment variables; netinit's own
    // (image URLs with credentials, keys) stay here rather than reach every service of the system.
    for name in inherited_to_drop(std::env::vars_os().map(|(k, _)| k.to_string_lossy().into_owned())) {
        cmd.env_remove(name);
    }
    let source = cmd.exec();
    Err(SwitchError::Exec { init: init.path.clone(), source })
}

/// The environment variables that are netinit's cmdline parameters.
fn inherited_to_drop(names: impl Iterator<Item = String>) -> Vec<String> {
    names.filter(|n| crate::cmdline::is_parameter(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree(name: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("netinit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in ["bin", "sbin", "usr/lib/systemd", "lib"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("bin/busybox"), "").unwrap();
        std::fs::write(root.join("usr/lib/systemd/systemd"), "").unwrap();
        symlink("/bin/busybox", root.join("sbin/init")).unwrap();
        symlink("../usr/lib/systemd/systemd", root.join("sbin/systemd")).unwrap();
        symlink("/usr/lib", root.join("lib/up")).unwrap();
        symlink("loop2", root.join("sbin/loop1")).unwrap();
        symlink("loop1", root.join("sbin/loop2")).unwrap();
        symlink("../../../../../../bin/busybox", root.join("sbin/deep")).unwrap();
        root
    }

    #[test]
    fn the_init_is_chosen_by_the_rule() {
        let check = |explicit: Option<&str>,
                     args: &[&str],
                     files: &[&str],
                     dirs: &[&str],
                     expected: Option<&str>| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let got = choose(explicit, &args, |p| files.contains(&p), |p| dirs.contains(&p));
            assert_eq!(got.map(|i| i.to_string()).as_deref(), expected, "{explicit:?} {files:?} {dirs:?}");
        };
        let zinit = ["/sbin/zinit", "/sbin/init", "/sbin/openrc-init"];
        check(
            None,
            &[],
            &zinit,
            &["/etc/zinit"],
            Some("/sbin/zinit init (the image has /sbin/zinit and /etc/zinit/)"),
        );
        check(
            None,
            &["-d", "init"],
            &zinit,
            &["/etc/zinit"],
            Some("/sbin/zinit -d init (the image has /sbin/zinit and /etc/zinit/)"),
        );
        check(None, &[], &zinit, &[], Some("/sbin/init (the image's /sbin/init)"));
        check(None, &[], &["/sbin/zinit"], &[], None);
        check(
            None,
            &[],
            &["/sbin/openrc-init"],
            &["/etc/zinit"],
            Some("/sbin/openrc-init (the image's /sbin/openrc-init)"),
        );
        check(None, &["a", "b"], &["/sbin/init"], &[], Some("/sbin/init a b (the image's /sbin/init)"));
        check(None, &[], &[], &["/etc/zinit"], None);
        check(Some("/bin/sh"), &[], &zinit, &["/etc/zinit"], Some("/bin/sh (init=)"));
        check(Some("/x"), &["y"], &[], &[], Some("/x y (init=)"));
        assert_eq!(
            rule_text(),
            "/sbin/zinit init if the image has /etc/zinit/, else /sbin/init, else /sbin/openrc-init"
        );
    }

    #[test]
    fn the_rule_looks_inside_the_new_root() {
        let root = tree("choose");
        let got = |explicit: Option<&str>| {
            choose_in(&root, explicit, &[]).map(|i| i.to_string()).map_err(|e| e.to_string())
        };
        assert_eq!(got(None), Ok("/sbin/init (the image's /sbin/init)".into()));
        std::fs::write(root.join("sbin/zinit"), "").unwrap();
        assert_eq!(got(None), Ok("/sbin/init (the image's /sbin/init)".into()), "no /etc/zinit/ yet");
        std::fs::create_dir_all(root.join("etc/zinit")).unwrap();
        assert_eq!(got(None), Ok("/sbin/zinit init (the image has /sbin/zinit and /etc/zinit/)".into()));
        assert_eq!(got(Some("/sbin/systemd")), Ok("/sbin/systemd (init=)".into()));
        std::fs::remove_file(root.join("sbin/zinit")).unwrap();
        std::fs::remove_file(root.join("sbin/init")).unwrap();
        assert_eq!(
            got(None),
            Err("the image has none of the inits netinit looks for: /sbin/zinit init if the image has /etc/zinit/, else /sbin/init, else /sbin/openrc-init".into())
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn netinit_parameters_do_not_reach_the_target_init() {
        let env =
            ["HOME", "TERM", "modloop", "modloop_sha256", "ssh_key", "netinit.retries", "BOOTIF", "console"];
        let dropped = inherited_to_drop(env.iter().map(|s| s.to_string()));
        assert_eq!(dropped, ["modloop", "modloop_sha256", "ssh_key", "netinit.retries", "BOOTIF"]);
    }

    #[test]
    fn deleting_stays_on_one_file_system() {
        let root = tree("delete");
        std::fs::write(root.join("bin/big"), vec![0u8; 5000]).unwrap();
        let dev = std::fs::metadata(&root).unwrap().dev();
        let mut freed = Freed::default();
        delete_tree(&root.join("bin"), dev, &mut freed);
        assert_eq!((freed.entries, freed.bytes, freed.failed), (2, 5000, 0));
        assert_eq!(std::fs::read_dir(root.join("bin")).unwrap().count(), 0);
        // Another device number stands for a mount point: nothing is touched.
        let mut freed = Freed::default();
        delete_tree(&root, dev + 1, &mut freed);
        assert_eq!(freed, Freed::default());
        assert!(root.join("usr/lib/systemd/systemd").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn init_is_resolved_inside_the_new_root() {
        let root = tree("resolve");
        let check = |path: &str, expected: Result<&str, i32>| {
            let got = resolve_in(&root, path).map_err(|e| e.raw_os_error().unwrap_or(-1));
            assert_eq!(got, expected.map(|p| root.join(p)), "{path}");
        };
        check("/sbin/init", Ok("bin/busybox"));
        check("/sbin/systemd", Ok("usr/lib/systemd/systemd"));
        check("/lib/up/systemd/systemd", Ok("usr/lib/systemd/systemd"));
        check("/sbin/deep", Ok("bin/busybox"));
        check("/bin/../bin/./busybox", Ok("bin/busybox"));
        check("/sbin/loop1", Err(libc::ELOOP));
        check("/sbin/nothing", Err(libc::ENOENT));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn mount_points_are_made_and_resolved_inside_the_new_root() {
        let root = tree("mountpoints");
        let outside = std::env::temp_dir().join(format!("netinit-mountpoints-out-{}", std::process::id()));
        std::fs::create_dir_all(&outside).unwrap();
        // An image's absolute symlinks to directories outside, and one to its own root.
        symlink(&outside, root.join("run")).unwrap();
        symlink("/", root.join("dev")).unwrap();
        std::fs::create_dir_all(root.join("var")).unwrap();
        symlink("/var/run2", root.join("run3")).unwrap();
        let inside = root.join(outside.strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inside).unwrap();
        assert_eq!(mount_point_in(&root, "/run").unwrap(), inside);
        assert_eq!(mount_point_in(&root, "/dev").unwrap_err().raw_os_error(), Some(libc::ENOTDIR));
        assert_eq!(mount_point_in(&root, "/proc").unwrap(), root.join("proc"));
        assert!(root.join("proc").is_dir(), "created");
        assert_eq!(mount_point_in(&root, "/.modloop/modules").unwrap(), root.join(".modloop/modules"));
        // A dangling symlink to a directory the image lacks is not followed out, nor created.
        assert!(mount_point_in(&root, "/run3").is_err());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }
}
