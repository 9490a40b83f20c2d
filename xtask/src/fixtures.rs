//! Everything the VM scenarios need around them: the tools, /init, each test kernel with its
//! initramfs files, the test images and the roots of real systems, the HTTP and HTTPS servers, and
//! the check that each initramfs is reproducible. `cargo xtask test` and `cargo xtask qemu` share it.

use std::path::Path;

use crate::arch::Arch;
use crate::host::{self, Result};
use crate::https::HttpsServer;
use crate::{build_initramfs, debs, httpd, image, initramfs, kernel, roots, scenario, Extras};

/// What keeps the scenarios' servers running.
pub struct Servers {
    _http: httpd::Server,
    _https: HttpsServer,
}

/// The test initramfs for one kernel (see `scenario::Initramfs`), built around `init`. The default
/// kernel's keep their plain names; another's carry its name (`initramfs@6.12.cpio.gz`).
fn build_boots(init: &Path, k: &kernel::Kernel, images: &image::Images) -> Result<scenario::Boots> {
    let suffix = if k.spec == kernel::ALL[0] { String::new() } else { format!("@{}", k.spec.name) };
    let file = |name: &str| host::cache().join(format!("{name}{suffix}.cpio.gz"));
    // The VMs' initramfs has the rescue shell, which the `single` scenarios use.
    let list = host::root().join("modules-list");
    let initrd = file("initramfs");
    let arch = k.spec.arch;
    build_initramfs(
        init,
        &k.modules_dir,
        &list,
        &initrd,
        &Extras { shell: true, arch, ..Extras::default() },
    )?;
    // The signature and https scenarios boot an initramfs that trusts the test key and the test CA.
    let initrd_trusted = file("initramfs-trusted");
    let extras = Extras {
        shell: true,
        trust: std::slice::from_ref(&images.key),
        ca: std::slice::from_ref(&images.tls.ca_cert),
        arch,
        ..Extras::default()
    };
    build_initramfs(init, &k.modules_dir, &list, &initrd_trusted, &extras)?;
    // The wrong-kernel scenario: the same modules, filed under a release that is not the kernel's
    // (x86_64's kernels only: what it checks is not the machine's, and each arm64 build costs time).
    let mut initrd_wrong_kernel = None;
    if arch == Arch::X86_64 {
        let elsewhere = host::cache().join("kernel/wrong-release");
        let fake = elsewhere.join(format!("{}-not-this-one", k.spec.release));
        // Made afresh each time: a link left by a checkout that moved would point elsewhere.
        std::fs::create_dir_all(&elsewhere).map_err(|e| e.to_string())?;
        link(&fake, &k.modules_dir)?;
        let initrd = file("initramfs-wrong-kernel");
        build_initramfs(init, &fake, &list, &initrd, &Extras::default())?;
        initrd_wrong_kernel = Some(initrd);
    }
    // The streamed root's fallback: an initramfs without its drivers.
    let mut initrd_no_nbd = None;
    if arch == Arch::X86_64 {
        let text = std::fs::read_to_string(&list).map_err(|e| format!("{}: {e}", list.display()))?;
        let without: String = text
            .lines()
            .filter(|l| !matches!(l.trim(), "nbd" | "dm_mod"))
            .map(|l| format!("{l}\n"))
            .collect();
        let list_no_nbd = host::cache().join("modules-list-no-nbd");
        std::fs::write(&list_no_nbd, without).map_err(|e| e.to_string())?;
        let initrd = file("initramfs-no-nbd");
        build_initramfs(
            init,
            &k.modules_dir,
            &list_no_nbd,
            &initrd,
            &Extras { shell: true, arch, ..Extras::default() },
        )?;
        initrd_no_nbd = Some(initrd);
    }
    // The split scenario: the plain initramfs as the two archives of `--split`, for iPXE.
    let split = k.spec == kernel::ALL[0];
    if split {
        let output = host::cache().join(scenario::SPLIT_INITRDS[0]);
        build_initramfs(
            init,
            &k.modules_dir,
            &list,
            &output,
            &Extras { shell: true, split: true, ..Extras::default() },
        )?;
        for name in scenario::SPLIT_INITRDS {
            link(&images.www.join(name), &host::cache().join(name))?;
        }
    }
    Ok(scenario::Boots {
        spec: k.spec,
        kernel: k.vmlinuz.clone(),
        initrd,
        initrd_trusted,
        initrd_wrong_kernel,
        split,
        initrd_no_nbd,
    })
}

/// `link` made a symbolic link to `target`, replacing what was there.
fn link(link: &Path, target: &Path) -> Result<()> {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).map_err(|e| format!("linking {}: {e}", link.display()))
}

/// Everything the VMs need: tools, each of `kernels` with its initramfs (around one `/init`),
/// test images, the HTTP and HTTPS servers.
pub fn prepare_vm_env(kernels: &[&'static kernel::Spec]) -> Result<(scenario::Env, Servers)> {
    host::ensure_vm_tools()?;
    let init = initramfs::build_init()?;
    let images = image::ensure()?;
    image::ensure_stream(&images, &init)?;
    let mut root_sha256 = vec![(Arch::X86_64, images.root_sha256.clone())];
    let mut inits = vec![(Arch::X86_64, init)];
    let mut boots = Vec::new();
    for &spec in kernels {
        let k = kernel::ensure(spec)?;
        if !inits.iter().any(|(a, _)| *a == spec.arch) {
            // Another machine's `/init`, qemu and test root (see `arch`).
            host::ensure_arm64_vm_tools()?;
            inits.push((spec.arch, initramfs::build_init_for(spec.arch)?));
            root_sha256.push((spec.arch, image::ensure_arch(&images, spec.arch)?));
        }
        let init = inits.iter().find(|(a, _)| *a == spec.arch).map(|(_, i)| i.clone()).unwrap_or_default();
        if spec == kernel::ALL[0] {
            // The roots of real systems carry the default kernel's module lists (see roots.rs).
            roots::ensure(&images.www, &roots::KernelModules { release: spec.release, dir: &k.modules_dir })?;
            // The OpenRC root streamed, too (`stream-openrc`).
            image::manifest(&init, &images.www.join("openrc.squashfs"), None)?;
        }
        boots.push(build_boots(&init, &k, &images)?);
        // `by-kernel/<name>/` serves the test files again, so that each kernel's run of a scenario
        // can have a fault path of its own (the server cuts the first request for a path only).
        let link = images.www.join("by-kernel").join(spec.name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::fs::create_dir_all(images.www.join("by-kernel")).map_err(|e| e.to_string())?;
            std::os::unix::fs::symlink("..", &link)
                .map_err(|e| format!("linking {}: {e}", link.display()))?;
        }
    }
    // The iPXE scenario fetches the default kernel and its initramfs from the same server.
    let default = boots.iter().find(|b| b.spec == kernel::ALL[0]);
    for (name, target) in
        default.iter().flat_map(|b| [("vmlinuz", &b.kernel), ("initramfs.cpio.gz", &b.initrd)])
    {
        link(&images.www.join(name), target)?;
    }
    let server = httpd::serve(&images.www).map_err(|e| format!("starting the test HTTP server: {e}"))?;
    let https = HttpsServer::start(&images.www, &images.tls)?;
    let logs = host::cache().join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let env = scenario::Env {
        boots,
        port: server.port,
        https_port: https.port,
        root_sha256,
        www: images.www,
        logs,
        tls: (images.tls.server_cert.clone(), images.tls.server_key.clone()),
        // Cached once built: a busybox archive with a few modules.
        partner: Some(crate::partner::ensure()?),
    };
    Ok((env, Servers { _http: server, _https: https }))
}

/// Checks each kernel's plain test initramfs (see [`initramfs::verify`]).
pub fn verify_initramfs(env: &scenario::Env) -> Result<()> {
    println!("xtask: checking that each initramfs is reproducible and that cpio lists it");
    let list = host::root().join("modules-list");
    for boots in &env.boots {
        let modules_dir = kernel::ensure(boots.spec)?.modules_dir;
        let init = initramfs::init_path_for(boots.spec.arch);
        let busybox = debs::busybox(boots.spec.arch)?;
        let contents = initramfs::Contents {
            init: &init,
            modules_dir: &modules_dir,
            list: &list,
            shell: Some(&busybox),
            trust: &[],
            ca: &[],
            firmware: None,
            split: false,
        };
        initramfs::verify(&boots.initrd, &contents)?;
    }
    Ok(())
}

/// Debian 12's package of Realtek's NIC firmware, which r8169 declares (component non-free-firmware).
const REALTEK_FIRMWARE: &str = "firmware-realtek";

/// The firmware check: an initramfs with r8169 for Debian 12's generic kernel, packed with
/// `firmware-realtek` unpacked as the firmware directory, must carry (as the real `cpio -t` lists
/// it) each firmware file r8169 declares that the package has. Everything is cached under
/// `target/netinit-cache/firmware/`.
pub fn check_firmware(init: &Path) -> Result<()> {
    println!("xtask: firmware: r8169 with {REALTEK_FIRMWARE} for kernel {}", kernel::DEBIAN_12_GENERIC.name);
    let k = kernel::ensure(&kernel::DEBIAN_12_GENERIC)?;
    let dir = host::cache().join("firmware");
    let unpacked = dir.join(REALTEK_FIRMWARE);
    let apt = kernel::own_apt("bookworm", "non-free-firmware")?;
    host::unpack_deb_with(REALTEK_FIRMWARE, &unpacked, &|download: &Path| {
        host::run(apt().args(["update", "-q"]))?;
        host::run(apt().args(["download", "-q", REALTEK_FIRMWARE]).current_dir(download))
    })?;
    let list = dir.join("modules-list-r8169");
    std::fs::write(&list, "r8169\n").map_err(|e| format!("writing {}: {e}", list.display()))?;
    let output = dir.join("r8169.cpio.gz");
    let contents = initramfs::Contents {
        init,
        modules_dir: &k.modules_dir,
        list: &list,
        shell: None,
        trust: &[],
        ca: &[],
        firmware: Some(&unpacked),
        split: false,
    };
    initramfs::write(&contents, &output)?;
    let listed = initramfs::list(&output)?;
    // What r8169 declares and the package has, found here independently of the packer.
    let tree = crate::kmod::Tree::open(&k.modules_dir)?;
    let r8169 = tree.index.files.get("r8169").ok_or("kernel 6.1-generic has no r8169 module")?;
    let declared = crate::firmware::declared(&crate::elf::modinfo(&tree.read(r8169)?)?);
    let root = crate::firmware::find_root(&unpacked)?;
    let expected: Vec<&String> = declared
        .iter()
        .filter(|name| ["", ".xz", ".zst"].iter().any(|s| root.join(format!("{name}{s}")).exists()))
        .collect();
    if expected.is_empty() {
        return Err(format!("{} has none of the {} files r8169 declares", root.display(), declared.len()));
    }
    let absent: Vec<&&String> = expected
        .iter()
        .filter(|name| {
            !["", ".xz", ".zst"]
                .iter()
                .any(|s| listed.lines().any(|l| l == format!("lib/firmware/{name}{s}")))
        })
        .collect();
    if !absent.is_empty() {
        return Err(format!("cpio -t does not list the firmware {absent:?} in {}", output.display()));
    }
    println!(
        "xtask: firmware: cpio -t lists all {} of the {} files r8169 declares that {REALTEK_FIRMWARE} has",
        expected.len(),
        declared.len()
    );
    Ok(())
}
