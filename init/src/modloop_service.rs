//! Alpine's `modloop` OpenRC service, left what it looks for. After switch_root it reads `modloop=`
//! from `/proc/cmdline`; when that is a URL it downloads it again (`wget -P /lib`), mounts it on
//! `/.modloop` and replaces `/lib/modules` with a link to `/.modloop/modules`. For netinit,
//! `modloop=` is the whole root image, already in RAM: that would fetch it twice and leave
//! `/lib/modules` pointing at nothing. Without a `modloop=`, the service looks for
//! `/.modloop/modules/$(uname -r)` and, when it is there, links `/lib/modules` to it.
//!
//! So, for an image that has the service in a runlevel, netinit binds the image's own
//! `/lib/modules` (read-only, from the squashfs) on `/.modloop/modules`, and shows the booted system
//! a `/proc/cmdline` without its `modloop*` words (a copy in `/run/netinit/cmdline`, bound over it):
//! the service then neither downloads nor breaks anything, and `/lib/modules` ends up the image's.
//! Images without the service are left alone. Everything here is best effort: a failure is a
//! warning, and the worst that follows is the service doing what it would have done anyway.
//!
//! [`booted_cmdline`] is pure; [`prepare`] carries it out.

use std::path::Path;

use crate::{rootfs, switch_root, sys};

/// The runlevels Alpine enables services in.
const RUNLEVELS: [&str; 3] = ["sysinit", "boot", "default"];
/// The words of the kernel cmdline the booted system does not see: the image netinit fetched.
const HIDDEN: [&str; 4] = [
    crate::cmdline::MODLOOP,
    crate::cmdline::MODLOOP_SHA256,
    crate::cmdline::MODLOOP_VERIFY,
    crate::cmdline::MODLOOP_STREAM,
];
/// Where the booted system's copy of the cmdline lives (in `/run`, which moves into the new root).
const CMDLINE_COPY: &str = "run/netinit/cmdline";

/// The kernel cmdline without the `modloop=`, `modloop_sha256=`, `modloop_verify=` and
/// `modloop_stream=` words; every
/// other word is kept exactly as written, quotes included, in order.
pub fn booted_cmdline(cmdline: &str) -> String {
    let hidden = |word: &str| {
        let name = word.split('=').next().unwrap_or("").replace('-', "_");
        word.contains('=') && HIDDEN.contains(&name.as_str())
    };
    let mut kept: Vec<&str> = Vec::new();
    let mut rest = false; // after a lone `--`, everything is the init's
    for word in crate::cmdline::raw_words(cmdline) {
        rest |= word == "--";
        if rest || !hidden(word) {
            kept.push(word);
        }
    }
    kept.join(" ") + "\n"
}

/// Whether the image at `root` starts Alpine's modloop service in one of its runlevels.
fn enabled(root: &Path) -> bool {
    RUNLEVELS
        .iter()
        .any(|rl| std::fs::symlink_metadata(root.join("etc/runlevels").join(rl).join("modloop")).is_ok())
}

/// Called between moving the API file systems into `new_root` and making it `/`.
pub fn prepare(new_root: &Path) {
    if !enabled(new_root) {
        return;
    }
    log::info!(
        "the image starts Alpine's modloop service: giving it the image's /lib/modules on /.modloop/modules and a /proc/cmdline without modloop=, so that it fetches nothing"
    );
    bind_modules(new_root);
    hide_modloop(new_root);
}

/// Binds the image's own `/lib/modules` (symlinks resolved inside the image) on `/.modloop/modules`.
fn bind_modules(new_root: &Path) {
    let lower = new_root.join(rootfs::LOWER.trim_start_matches('/'));
    let modules = match switch_root::resolve_in(&lower, "/lib/modules") {
        Ok(dir) if dir.is_dir() => dir,
        _ => {
            let release = sys::kernel_release();
            log::warn!(
                "the image has no /lib/modules: its modloop service will fail to find modules for {release}"
            );
            return;
        }
    };
    let bound = switch_root::mount_point_in(new_root, "/.modloop/modules")
        .and_then(|target| sys::bind_mount(&modules, &target));
    if let Err(e) = bound {
        log::warn!("binding {} on /.modloop/modules: {e}", modules.display());
    }
}

/// Bind-mounts a copy of the cmdline without the `modloop*` words over `/proc/cmdline`, read-only.
fn hide_modloop(new_root: &Path) {
    let proc_cmdline = new_root.join("proc/cmdline");
    let copy = new_root.join(CMDLINE_COPY);
    let done = std::fs::read_to_string(&proc_cmdline)
        .and_then(|text| std::fs::write(&copy, booted_cmdline(&text)))
        .and_then(|()| sys::bind_mount(&copy, &proc_cmdline))
        .and_then(|()| sys::remount_bind_readonly(&proc_cmdline));
    if let Err(e) = done {
        log::warn!("hiding modloop= from the booted system's /proc/cmdline: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_booted_system_sees_the_cmdline_without_the_image() {
        let check =
            |cmdline: &str, expected: &str| assert_eq!(booted_cmdline(cmdline), expected, "{cmdline:?}");
        check(
            "BOOT_IMAGE=vmlinuz modloop=http://u:p@h/r.sqfs ip=dhcp console=ttyS0",
            "BOOT_IMAGE=vmlinuz ip=dhcp console=ttyS0\n",
        );
        check("modloop=http://h/r modloop_sha256=ab modloop-verify=yes quiet\n", "quiet\n");
        check("modloop=http://h/r modloop_stream=yes panic=5", "panic=5\n");
        check("init_args=\"a b\"  modloop=x   panic=5", "init_args=\"a b\" panic=5\n");
        check("modloop", "modloop\n"); // a flag of that name is not netinit's parameter
        check("modloop=x -- modloop=y", "-- modloop=y\n");
        check("", "\n");
    }

    #[test]
    fn only_images_that_start_the_service() {
        let root = std::env::temp_dir().join(format!("netinit-modloop-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("etc/runlevels/boot")).unwrap();
        std::fs::create_dir_all(root.join("etc/init.d")).unwrap();
        std::fs::write(root.join("etc/init.d/modloop"), "").unwrap();
        assert!(!enabled(&root), "installed but not in a runlevel");
        std::os::unix::fs::symlink("/etc/init.d/modloop", root.join("etc/runlevels/boot/modloop")).unwrap();
        assert!(enabled(&root), "a link as rc-update makes it, dangling outside the image");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
