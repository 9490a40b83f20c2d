//! Tests of module indexing and resolution: pure cases as tables, then trees of small real modules
//! (ELF relocatables with a `.modinfo`) compressed by the real `gzip`, `xz` and `zstd`.

use super::*;
use std::io::Write;
use std::process::{Command, Stdio};

fn files() -> BTreeMap<String, String> {
    [
        ("virtio_net", "kernel/drivers/net/virtio_net.ko.xz"),
        ("net_failover", "kernel/drivers/net/net_failover.ko.zst"),
        ("failover", "kernel/net/core/failover.ko.gz"),
        ("loop", "kernel/drivers/block/loop.ko"),
        ("crc32c_generic", "kernel/crypto/crc32c_generic.ko"),
        ("broken", "kernel/broken.ko"),
    ]
    .into_iter()
    .map(|(n, p)| (n.to_owned(), p.to_owned()))
    .collect()
}

fn deps(name: &str) -> Result<Vec<String>, String> {
    Ok(match name {
        "virtio_net" => vec!["net_failover".into(), "failover".into(), "virtio".into()],
        "net_failover" => vec!["failover".into()],
        "broken" => vec!["nowhere".into()],
        _ => vec![],
    })
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn index() -> Index {
    Index {
        files: files(),
        builtin: ["virtio".to_string(), "ext4".to_string()].into(),
        aliases: parse_aliases("alias crypto-crc32c crc32c_generic\nalias crc32c crc32c_generic\nalias fs-ext4 ext4\nalias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio_net\n"),
    }
}

#[test]
fn lists() {
    assert_eq!(
        parse_list("# NICs\nvirtio_net  # qemu\n\n  e1000e\nhid-generic\n"),
        ["virtio_net", "e1000e", "hid_generic"]
    );
}

#[test]
fn file_names() {
    let check = |path: &str, module: bool, name: &str, packed: &str| {
        assert_eq!((is_module_file(path), name_of(path).as_str(), packed_path(path)), (module, name, packed));
    };
    check("kernel/drivers/hid/hid-generic.ko", true, "hid_generic", "kernel/drivers/hid/hid-generic.ko");
    check("kernel/fs/squashfs/squashfs.ko.xz", true, "squashfs", "kernel/fs/squashfs/squashfs.ko");
    check("kernel/fs/overlayfs/overlay.ko.zst", true, "overlay", "kernel/fs/overlayfs/overlay.ko");
    check("kernel/drivers/block/loop.ko.gz", true, "loop", "kernel/drivers/block/loop.ko");
    check("kernel/drivers/block/loop.ko.bz2", false, "loop", "kernel/drivers/block/loop.ko.bz2");
    check("modules.dep", false, "modules.dep", "modules.dep");
    assert_eq!(
        release_of(Path::new("/x/usr/lib/modules/6.12.57+deb13-cloud-amd64")).unwrap(),
        "6.12.57+deb13-cloud-amd64"
    );
}

#[test]
fn kernel_index_files() {
    let dep = parse_modules_dep(
        "kernel/drivers/net/virtio_net.ko.gz: kernel/drivers/net/net_failover.ko.gz kernel/net/core/failover.ko.gz\nkernel/net/core/failover.ko.gz:\n",
    );
    assert_eq!(
        dep["virtio_net"],
        ("kernel/drivers/net/virtio_net.ko.gz".into(), names(&["net_failover", "failover"]))
    );
    assert_eq!(dep["failover"], ("kernel/net/core/failover.ko.gz".into(), vec![]));
    let aliases = index().aliases;
    assert_eq!(
        aliases.keys().collect::<Vec<_>>(),
        ["crc32c", "crypto_crc32c", "fs_ext4"],
        "globs are dropped"
    );
    assert_eq!(aliases["crc32c"], BTreeSet::from(["crc32c_generic".to_string()]));
}

#[test]
fn resolution() {
    let r = index()
        .resolve(&names(&["virtio_net", "loop", "e1000", "ext4", "crc32c", "fs_ext4"]), &mut deps)
        .unwrap();
    assert_eq!(
        r.modules.keys().collect::<Vec<_>>(),
        ["crc32c_generic", "failover", "loop", "net_failover", "virtio_net"]
    );
    assert_eq!(r.builtin, ["ext4"]);
    assert_eq!(r.missing, ["e1000"]);
    assert_eq!(r.aliased, [("crc32c".into(), "crc32c_generic".into()), ("fs_ext4".into(), "ext4".into())]);
    let e = index().resolve(&names(&["broken"]), &mut deps).unwrap_err();
    assert_eq!(e, "broken depends on nowhere, which this kernel does not have");
}

#[test]
fn dep_file_names_the_packed_paths() {
    let r = index().resolve(&names(&["virtio_net", "loop"]), &mut deps).unwrap();
    assert_eq!(
        modules_dep(&r.modules),
        "kernel/net/core/failover.ko:
kernel/drivers/block/loop.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
"
    );
}

/// Runs a real compressor over `data`.
fn compress(tool: &str, args: &[&str], data: &[u8]) -> Vec<u8> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {tool}: {e} (cargo xtask test installs it)"));
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success(), "{tool} {args:?}: {}", out.status);
    out.stdout
}

/// The compressors, with the options the kernel's `make modules_install` gives them.
const TOOLS: [(&str, &str, &[&str]); 3] = [
    (".gz", "gzip", &["-n", "-9", "-c"]),
    (".xz", "xz", &["--check=crc32", "--lzma2=dict=1MiB", "-c"]),
    (".zst", "zstd", &["-q", "-19", "-c"]),
];

/// A small module: `.modinfo` with its name and dependencies, and a body that compresses.
fn module(name: &str, depends: &str) -> Vec<u8> {
    // Aliases as Debian's kernel declares them (`modinfo -F alias`).
    let aliases = match name {
        "virtio_net" => "alias=virtio:d00000001v*\0",
        "squashfs" => "alias=fs-squashfs\0",
        "overlay" => "alias=fs-overlay\0",
        "loop" => "alias=devname:loop-control\0alias=char-major-10-237\0alias=block-major-7-*\0",
        "e1000e" => {
            "alias=pci:v00008086d000010D3sv*sd*bc*sc*i*\0alias=pci:v00008086d0000105Esv*sd*bc*sc*i*\0"
        }
        _ => "",
    };
    let info =
        format!("license=GPL\0{aliases}depends={depends}\0name={name}\0vermagic=6.12.0 SMP mod_unload\0");
    let text: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8 & 0x3f).collect();
    elf::relocatable(&[(".text", &text), (".modinfo", info.as_bytes())])
}

#[test]
fn real_compressed_modules_decompress_to_their_bytes() {
    let plain = module("virtio_net", "net_failover,failover");
    assert_eq!(decompress(plain.clone()).unwrap(), plain, "an uncompressed module is left as it is");
    for (suffix, tool, args) in TOOLS {
        let packed = compress(tool, args, &plain);
        assert_ne!(packed, plain);
        assert_eq!(decompress(packed.clone()).unwrap(), plain, "{suffix}");
        assert_eq!(
            modinfo_depends(&decompress(packed.clone()).unwrap()).unwrap(),
            ["net_failover", "failover"]
        );
        let mut damaged = packed.clone();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0x55;
        assert!(decompress(damaged).is_err(), "{suffix}: a damaged file is an error");
        assert!(decompress(packed[..packed.len() / 2].to_vec()).is_err(), "{suffix}: a cut file is an error");
    }
    let not_elf = compress("gzip", &["-c"], b"#!/bin/sh\n");
    assert_eq!(decompress(not_elf).unwrap_err(), "decompressed, it is not an ELF file");
    assert_eq!(decompress(b"BZh91AY".to_vec()).unwrap_err(), "neither an ELF file nor gzip, xz or zstd data");
}

/// A fresh directory for one test.
pub fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub const RELEASE: &str = "6.12.0-test";

/// A kernel package as `dpkg -x` unpacks it, usr-merged: modules in all three compressions and one
/// plain, no `modules.dep`, a `modules.builtin`, and `boot/config-<release>`.
pub fn unpacked_package(test: &str) -> (PathBuf, BTreeMap<&'static str, Vec<u8>>) {
    let root = scratch(test);
    let dir = root.join("usr/lib/modules").join(RELEASE);
    let modules = [
        ("kernel/drivers/net/virtio_net.ko.xz", "virtio_net", "net_failover,failover"),
        ("kernel/drivers/net/net_failover.ko.zst", "net_failover", "failover"),
        ("kernel/net/core/failover.ko.gz", "failover", ""),
        ("kernel/fs/squashfs/squashfs.ko.xz", "squashfs", ""),
        ("kernel/drivers/block/loop.ko", "loop", ""),
        ("kernel/fs/overlayfs/overlay.ko.zst", "overlay", ""),
    ];
    let mut plain = BTreeMap::new();
    for (rel, name, depends) in modules {
        let bytes = module(name, depends);
        let data = match TOOLS.iter().find(|(suffix, _, _)| rel.ends_with(suffix)) {
            Some((_, tool, args)) => compress(tool, args, &bytes),
            None => bytes.clone(),
        };
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        plain.insert(rel, bytes);
    }
    std::fs::write(dir.join("modules.builtin"), "kernel/drivers/virtio/virtio_pci.ko\n").unwrap();
    std::fs::create_dir_all(root.join("boot")).unwrap();
    std::fs::write(
        root.join(format!("boot/config-{RELEASE}")),
        "CONFIG_RD_GZIP=y\nCONFIG_MODULE_DECOMPRESS=y\n",
    )
    .unwrap();
    (root, plain)
}

#[test]
fn a_tree_without_modules_dep_is_derived_from_modinfo() {
    let (root, plain) = unpacked_package("derived");
    let dir = root.join("usr/lib/modules").join(RELEASE);
    for given in [root.clone(), root.join("usr/lib/modules"), dir.clone()] {
        let tree = Tree::open(&given).unwrap();
        assert_eq!(
            (tree.dir.as_path(), tree.release.as_str()),
            (dir.as_path(), RELEASE),
            "{}",
            given.display()
        );
    }
    let tree = Tree::open(&root).unwrap();
    assert_eq!(tree.dependency_source(), ".modinfo");
    assert_eq!(tree.index.files.len(), 6);
    assert_eq!(tree.index.builtin, BTreeSet::from(["virtio_pci".to_string()]));
    let r = tree
        .index
        .resolve(&names(&["virtio_net", "virtio_pci", "e1000e"]), &mut |n| tree.depends(n))
        .unwrap();
    assert_eq!(
        (r.builtin.as_slice(), r.missing.as_slice()),
        (&names(&["virtio_pci"])[..], &names(&["e1000e"])[..])
    );
    assert_eq!(
        modules_dep(&r.modules),
        "kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
"
    );
    for (rel, bytes) in &plain {
        assert_eq!(&tree.read(rel).unwrap(), bytes, "{rel}");
    }
    let (config_path, config) = tree.config().unwrap();
    assert_eq!(config_path, root.join(format!("boot/config-{RELEASE}")));
    assert!(config.contains("CONFIG_RD_GZIP=y"));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_kernels_own_index_files_win() {
    let (root, _) = unpacked_package("own-index");
    let dir = root.join("usr/lib/modules").join(RELEASE);
    // A modules.dep that says something .modinfo does not: overlay needs loop. And an alias.
    std::fs::write(
        dir.join("modules.dep"),
        "kernel/fs/overlayfs/overlay.ko.zst: kernel/drivers/block/loop.ko\nkernel/drivers/block/loop.ko:\n",
    )
    .unwrap();
    std::fs::write(dir.join("modules.alias"), "alias fs-overlay overlay\nalias char-major-10-237 loop\n")
        .unwrap();
    let tree = Tree::open(&dir).unwrap();
    assert_eq!(tree.dependency_source(), "modules.dep");
    assert_eq!(tree.index.files.keys().collect::<Vec<_>>(), ["loop", "overlay"]);
    let r = tree.index.resolve(&parse_list("fs-overlay\n"), &mut |n| tree.depends(n)).unwrap();
    assert_eq!(r.aliased, [("fs_overlay".into(), "overlay".into())]);
    assert_eq!(
        modules_dep(&r.modules),
        "kernel/drivers/block/loop.ko:\nkernel/fs/overlayfs/overlay.ko: kernel/drivers/block/loop.ko\n"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn directories_that_are_no_kernels_modules() {
    let root = scratch("not-modules");
    let e = Tree::open(&root).unwrap_err();
    assert!(e.contains("is not a lib/modules/<release> directory"), "{e}");
    for release in ["6.1.0-1-amd64", "6.12.0-1-amd64"] {
        std::fs::create_dir_all(root.join("lib/modules").join(release).join("kernel")).unwrap();
    }
    let e = Tree::open(&root).unwrap_err();
    assert!(e.contains("holds the modules of several kernels; give one of:"), "{e}");
    assert!(e.contains("lib/modules/6.1.0-1-amd64 ") && e.ends_with("lib/modules/6.12.0-1-amd64"), "{e}");
    let e = Tree::open(&root.join("lib/modules/6.1.0-1-amd64")).unwrap_err();
    assert!(e.contains("holds no kernel modules (.ko, .ko.gz, .ko.xz or .ko.zst)"), "{e}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_alias_index_keeps_device_aliases_and_always_names_what_no_device_asks_for() {
    // Lines as Debian 12's generic kernel's depmod writes them.
    let text = "\
alias fs-squashfs squashfs
alias devname:loop-control loop
alias char-major-10-237 loop
alias block-major-7-* loop
alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e
alias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio-pci
alias virtio:d00000001v* virtio_net
alias cpu:type:x86,ven*fam*mod*:feature:*0094* crc32c_intel
alias crypto-crc32c crc32c_intel
";
    let aliases = parse_alias_patterns(text);
    assert_eq!(aliases["loop"], ["devname:loop-control", "char-major-10-237", "block-major-7-*"]);
    assert!(aliases.contains_key("virtio_pci"), "module names read with _");
    assert_eq!(
        alias_index(&aliases),
        "\
alias cpu:type:x86,ven*fam*mod*:feature:*0094* crc32c_intel
alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e
alias virtio:d00000001v* virtio_net
alias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio_pci
"
    );
    let listed = ["virtio_net", "squashfs", "loop", "e1000e", "overlay", "loop", "crc32c_intel"];
    assert_eq!(always(listed, &aliases), "loop\noverlay\nsquashfs\n", "overlay declares no alias at all");
    for (alias, device) in [
        ("pci:v00008086d000010D3sv*sd*bc*sc*i*", true),
        ("acpi*:PNP0A08:*", true),
        ("fs-overlay", false),
        ("net-pf-17", false),
        ("devname:fuse", false),
        ("symbol:tcp_sendmsg", false),
    ] {
        assert_eq!(is_device_alias(alias), device, "{alias}");
    }
}

#[test]
fn a_listed_module_without_device_aliases_loads_with_the_driver_it_needs() {
    let module = |name: &str, deps: &[&str]| {
        (name.to_owned(), Module { name: name.into(), path: format!("{name}.ko"), depends: names(deps) })
    };
    let modules: BTreeMap<String, Module> = [
        module("mlx4_en", &["mlx4_core"]),
        module("mlx4_core", &["devlink"]),
        module("devlink", &[]),
        module("mlx5_ib", &["ib_core", "mlx5_core"]),
        module("ib_core", &[]),
        module("mlx5_core", &["devlink"]),
        module("squashfs", &[]),
    ]
    .into();
    let mut aliases = parse_alias_patterns(
        "alias pci:v000015B3d00001003sv*sd*bc*sc*i* mlx4_core\nalias pci:v000015B3d00001017sv*sd*bc*sc*i* mlx5_core\nalias fs-squashfs squashfs\n",
    );
    inherit_aliases(&mut aliases, &modules, ["mlx4_en", "mlx5_ib", "squashfs", "mlx4_core"]);
    assert_eq!(aliases["mlx4_en"], ["pci:v000015B3d00001003sv*sd*bc*sc*i*"]);
    assert_eq!(aliases["mlx5_ib"], ["pci:v000015B3d00001017sv*sd*bc*sc*i*"]);
    assert_eq!(aliases["mlx4_core"], ["pci:v000015B3d00001003sv*sd*bc*sc*i*"], "its own, once");
    assert!(!aliases.contains_key("devlink"), "not listed: a dependency only");
    assert_eq!(always(["mlx4_en", "mlx5_ib", "squashfs"], &aliases), "squashfs\n");
    assert_eq!(
        always(["8021q", "bonding", "squashfs"], &aliases),
        "squashfs\n",
        "8021q and bonding load on demand"
    );
}

#[test]
fn aliases_come_from_modules_alias_when_the_kernel_has_one_else_from_modinfo() {
    let (root, _) = unpacked_package("aliases");
    let tree = Tree::open(&root).unwrap();
    assert_eq!(tree.aliases("virtio_net").unwrap(), ["virtio:d00000001v*"]);
    assert_eq!(tree.aliases("loop").unwrap().len(), 3);
    assert_eq!(tree.aliases("failover").unwrap(), Vec::<String>::new());
    let dir = root.join("usr/lib/modules").join(RELEASE);
    std::fs::write(dir.join("modules.alias"), "alias virtio:d00000001v00001AF4 virtio_net\n").unwrap();
    let tree = Tree::open(&root).unwrap();
    assert_eq!(tree.aliases("virtio_net").unwrap(), ["virtio:d00000001v00001AF4"], "the kernel's file wins");
    assert_eq!(tree.aliases("loop").unwrap(), Vec::<String>::new());
    std::fs::remove_dir_all(&root).unwrap();
}
