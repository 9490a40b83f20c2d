//! `cargo xtask`: build the initramfs, boot it in a VM, run every test. Std-first, one `match` over
//! the subcommands; each installs what it is missing (or prints the exact command when not root).

mod arch;
mod bench;
mod bench_boot;
mod bench_modules;
mod bench_stream;
mod debs;
mod elf;
mod firmware;
mod fixtures;
mod host;
mod httpd;
mod https;
mod image;
mod initramfs;
mod kernel;
mod kmod;
mod netlab;
mod nginx;
mod partner;
mod recorder;
mod report;
mod roots;
mod runner;
mod scenario;
mod split;
mod storm;
mod vlan_switch;
mod vm;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use host::Result;

const USAGE: &str = "usage: cargo xtask <command>

  qemu   [--timeout SECS] [--arch ARCH]
                                build everything, boot it in qemu, show the console; exit 0 when the
                                booted image reports back (ARCH: x86_64, the default, or aarch64:
                                qemu-system-aarch64 -M virt, Debian 12's arm64 kernel)
  test   [--only NAME] [--no-lint] [--jobs N] [--verbose]
                                lint, host tests, the firmware check (--only firmware-realtek),
                                every VM scenario of qemu-tests/, then `bench boot --runs 1`
                                (--only bench-boot)
  bench  boot [--runs N] [--json]
                                the whole boot under TCG, beside the floor (the kernel and a tiny
                                static init) and a busybox shell init doing the same job: 1 MiB
                                and 257 MiB images, plain, with modloop_sha256= and signed; N (5)
                                boots of each, alternating; a table (or JSON) with the budget
  bench  fetch [--size-mib N] [--runs N] [--nginx]
                                the fetcher's throughput on loopback beside curl's (1 GiB, 5 runs;
                                --nginx: served by Debian's nginx instead of xtask's server)
  bench  stream [--runs N] [--json]
                                the streamed root against the full download: images padded with
                                256 MiB, 1 GiB and 2 GiB the boot never reads, served at 20 MiB/s;
                                N (3) boots of each, alternating; medians of the time to the new
                                root, MiB fetched before it, prefetch and hand-over times, and the
                                slope of the time to the root against the image's size
  bench  modules [--kernel NAME] [--nic MODEL] [--runs N]
                                coldplug against netinit.coldplug=no: the modules stage's time
                                and module counts, booting NAME (6.1-generic) with one qemu NIC
                                MODEL (e1000) N times (5) each, alternating
  bench  storm [--clients N] [--size-mib M] [--no-cache] [--client-timeout SECS]
                                a reboot storm: N clients (200) at once fetch an M MiB image (32)
                                from nginx with a busy server's limits, netinit then curl; then
                                both through a caching proxy (not with --no-cache); clients still
                                running after SECS (900) are killed
  manifest IMAGE [--chunk-size BYTES]
                                write IMAGE.chunks, the streamed root's manifest (the chunk size,
                                1 MiB by default; the size; the SHA-256 of the image and of each
                                chunk), with the built netinit's `netinit manifest`
  cpio   [--arch ARCH] [--modules-dir DIR | --kernel NAME] [--modules-list FILE] [--output FILE]
         [--shell] [--trust KEY]... [--ca PEM]... [--firmware-dir FW] [--split]
                                build the initramfs (ARCH: x86_64, the default, or aarch64;
                                DIR: a [usr/]lib/modules/<release> directory,
                                or the root of an unpacked kernel package; modules .ko, .ko.gz,
                                .ko.xz, .ko.zst; NAME: a test kernel, 6.1 (the default), 6.12 or
                                6.1-generic, or 6.1-arm64 (aarch64's default), fetched into the
                                cache); --shell adds a static busybox (the host's; Debian's arm64
                                one for aarch64) as a rescue shell (for `single` and netinit.fail=shell);
                                --trust packs a minisign public key: images must then be signed;
                                --ca adds CA certificates for https, beside Mozilla's roots;
                                --firmware-dir packs the firmware the modules declare that FW (a
                                lib/firmware directory, or a root holding [usr/]lib/firmware) has;
                                --split writes the modules and firmware apart, into
                                <output without .cpio.gz>-modules.cpio.gz (netinit.cpio.gz gives
                                netinit-modules.cpio.gz), for a second iPXE initrd line.
                                Prints a packing report: sizes, modules, firmware, biggest files";

/// The name of `cargo xtask test`'s firmware check, for `--only`.
const FIRMWARE_CHECK: &str = "firmware-realtek";

/// The name of `cargo xtask test`'s run of `bench boot --runs 1`, for `--only`.
const BENCH_BOOT: &str = "bench-boot";

/// The static busybox that `--shell` packs (Debian's busybox-static).
const BUSYBOX: &str = "/bin/busybox";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or(&[]);
    let result = match args.first().map(String::as_str) {
        Some("cpio") => cmd_cpio(rest),
        Some("qemu") => cmd_qemu(rest),
        Some("test") => cmd_test(rest),
        Some("bench") => cmd_bench(rest),
        Some("manifest") => cmd_manifest(rest),
        // Used by the test networks: the test HTTP server inside a network namespace.
        Some("serve") if rest.len() == 2 => cmd_serve(&rest[0], &rest[1]),
        // Used by the VLAN scenarios: the trunk port between a guest and a lab's bridge.
        Some("vlan-switch") if rest.len() == 4 => cmd_vlan_switch(rest),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask manifest IMAGE [--chunk-size BYTES]`.
fn cmd_manifest(args: &[String]) -> Result<()> {
    let (image, rest) = args.split_first().ok_or(format!("manifest needs an IMAGE\n\n{USAGE}"))?;
    let flags = flags(rest, &["--chunk-size"], &[])?;
    let chunk = flag(&flags, "--chunk-size")
        .map(|n| n.parse::<u64>().map_err(|e| format!("--chunk-size {n}: {e}")))
        .transpose()?;
    let init = initramfs::build_init()?;
    image::manifest(&init, std::path::Path::new(image), chunk)?;
    println!("wrote {image}.chunks");
    Ok(())
}

/// `--name value` from the arguments, refusing unknown flags.
fn flags(args: &[String], known: &[&str], switches: &[&str]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if switches.contains(&a.as_str()) {
            out.push((a.clone(), String::new()));
        } else if known.contains(&a.as_str()) {
            let v = it.next().ok_or(format!("{a} needs a value"))?;
            out.push((a.clone(), v.clone()));
        } else {
            return Err(format!("unknown argument {a:?}\n\n{USAGE}"));
        }
    }
    Ok(out)
}

/// `--arch`'s machine, x86_64 when it is absent.
fn arch_flag(flags: &[(String, String)]) -> Result<arch::Arch> {
    flag(flags, "--arch")
        .map(|a| arch::Arch::parse(a).map_err(|e| format!("--arch: {e}")))
        .transpose()
        .map(Option::unwrap_or_default)
}

fn flag<'a>(flags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    flags.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn default_initramfs() -> PathBuf {
    host::cache().join("initramfs.cpio.gz")
}

/// What an initramfs carries besides `/init` and the modules.
#[derive(Default)]
struct Extras<'a> {
    shell: bool,
    trust: &'a [PathBuf],
    ca: &'a [PathBuf],
    /// Firmware for the packed modules, from this directory.
    firmware: Option<&'a Path>,
    /// Write the modules and firmware as a second archive.
    split: bool,
    /// The machine: which busybox `shell` packs.
    arch: arch::Arch,
}

/// Builds the initramfs around `init` (from [`initramfs::build_init`]); prints what it made.
fn build_initramfs(
    init: &Path,
    modules_dir: &Path,
    list: &Path,
    output: &Path,
    extras: &Extras,
) -> Result<()> {
    let busybox = if extras.shell { Some(debs::busybox(extras.arch)?) } else { None };
    let contents = initramfs::Contents {
        init,
        modules_dir,
        list,
        shell: busybox.as_deref(),
        trust: extras.trust,
        ca: extras.ca,
        firmware: extras.firmware,
        split: extras.split,
    };
    let built = initramfs::write(&contents, output)?;
    let mut notes = String::new();
    if extras.shell {
        notes.push_str(", with a busybox rescue shell");
    }
    if !extras.trust.is_empty() {
        notes.push_str(&format!(", trusting {} signing key(s)", extras.trust.len()));
    }
    if !extras.ca.is_empty() {
        notes.push_str(&format!(", {} extra CA file(s)", extras.ca.len()));
    }
    println!(
        "xtask: {} ({} KiB): /init {} KiB, {} modules ({} KiB, dependencies from {}) for {}{notes}",
        output.display(),
        built.archive_size / 1024,
        built.init_size / 1024,
        built.modules,
        built.modules_size / 1024,
        built.dependency_source,
        built.release,
    );
    if let Some(second) = &built.modules_archive {
        println!("xtask: split: the modules and firmware are in {}", second.display());
    }
    print!("{}", built.report.render());
    Ok(())
}

fn cmd_cpio(args: &[String]) -> Result<()> {
    let known = [
        "--modules-dir",
        "--kernel",
        "--modules-list",
        "--output",
        "--trust",
        "--ca",
        "--firmware-dir",
        "--arch",
    ];
    let f = flags(args, &known, &["--shell", "--split"])?;
    let arch = arch_flag(&f)?;
    let modules_dir = match (flag(&f, "--modules-dir"), flag(&f, "--kernel")) {
        (Some(_), Some(_)) => return Err("give --modules-dir or --kernel, not both".into()),
        (Some(d), None) => PathBuf::from(d),
        (None, name) => {
            let name = name.unwrap_or(kernel::default_for(arch).name);
            let spec =
                kernel::by_name(name).ok_or(format!("--kernel: no test kernel {name:?}\n\n{USAGE}"))?;
            if spec.arch != arch {
                return Err(format!(
                    "--kernel {name} is an {} kernel; give --arch {}",
                    spec.arch.name(),
                    spec.arch.name()
                ));
            }
            kernel::ensure(spec)?.modules_dir
        }
    };
    let list =
        flag(&f, "--modules-list").map(PathBuf::from).unwrap_or_else(|| host::root().join("modules-list"));
    let output = flag(&f, "--output").map(PathBuf::from).unwrap_or_else(default_initramfs);
    let all = |name: &str| -> Vec<PathBuf> {
        f.iter().filter(|(k, _)| k == name).map(|(_, v)| PathBuf::from(v)).collect()
    };
    let (trust, ca) = (all("--trust"), all("--ca"));
    build_initramfs(
        &initramfs::build_init_for(arch)?,
        &modules_dir,
        &list,
        &output,
        &Extras {
            shell: flag(&f, "--shell").is_some(),
            trust: &trust,
            ca: &ca,
            firmware: flag(&f, "--firmware-dir").map(Path::new),
            split: flag(&f, "--split").is_some(),
            arch,
        },
    )
}

fn cmd_bench(args: &[String]) -> Result<()> {
    let (what, rest) = args.split_first().ok_or(USAGE)?;
    match what.as_str() {
        "fetch" => {
            let f = flags(rest, &["--size-mib", "--runs"], &["--nginx"])?;
            let server =
                if flag(&f, "--nginx").is_some() { bench::Server::Nginx } else { bench::Server::Xtask };
            bench::fetch(number(&f, "--size-mib", 1024)?, number(&f, "--runs", 5)?.max(1) as usize, server)
        }
        "storm" => {
            let f = flags(rest, &["--clients", "--size-mib", "--client-timeout"], &["--no-cache"])?;
            storm::storm(&storm::Options {
                clients: number(&f, "--clients", 200)?.max(1) as usize,
                size_mib: number(&f, "--size-mib", 32)?.max(1),
                cache: flag(&f, "--no-cache").is_none(),
                client_timeout: Duration::from_secs(number(&f, "--client-timeout", 900)?),
            })
        }
        "boot" => {
            let f = flags(rest, &["--runs"], &["--json"])?;
            bench_boot::boot_bench(number(&f, "--runs", 5)?.max(1) as usize, flag(&f, "--json").is_some())
        }
        "stream" => {
            let f = flags(rest, &["--runs"], &["--json"])?;
            bench_stream::stream(number(&f, "--runs", 3)?.max(1) as usize, flag(&f, "--json").is_some())
        }
        "modules" => {
            let f = flags(rest, &["--kernel", "--nic", "--runs"], &[])?;
            bench_modules::modules(
                flag(&f, "--kernel").unwrap_or("6.1-generic"),
                flag(&f, "--nic").unwrap_or("e1000"),
                number(&f, "--runs", 5)?.max(1) as usize,
            )
        }
        _ => Err(format!("unknown benchmark {what:?}\n\n{USAGE}")),
    }
}

/// A whole-number flag's value, or `default` when it is absent.
fn number(flags: &[(String, String)], name: &str, default: u64) -> Result<u64> {
    flag(flags, name)
        .map(|v| v.parse::<u64>().map_err(|_| format!("{name} takes a whole number")))
        .transpose()
        .map(|v| v.unwrap_or(default))
}

fn cmd_vlan_switch(args: &[String]) -> Result<()> {
    let vid = args[0].parse().map_err(|_| format!("bad VLAN id {:?}", args[0]))?;
    let addr = |s: &String| s.parse().map_err(|_| format!("bad address {s:?}"));
    vlan_switch::run(vid, &args[1], addr(&args[2])?, addr(&args[3])?)
}

fn cmd_serve(dir: &str, addr: &str) -> Result<()> {
    let _server =
        httpd::serve_at(Path::new(dir), addr).map_err(|e| format!("serving {dir} on {addr}: {e}"))?;
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn cmd_qemu(args: &[String]) -> Result<()> {
    let f = flags(args, &["--timeout", "--arch"], &[])?;
    let timeout = flag(&f, "--timeout")
        .map(|t| t.parse::<u64>().map_err(|_| "--timeout takes seconds"))
        .transpose()?
        .unwrap_or(300);
    let arch = arch_flag(&f)?;
    let k = kernel::default_for(arch);
    let (env, _server) = fixtures::prepare_vm_env(&[k])?;
    let demo = scenario::Scenario {
        name: "demo".into(),
        description: String::new(),
        cmdline: format!("modloop={{server}}/{} ip=dhcp panic=10", image::root_path(arch)),
        steps: vec![scenario::Step::Expect(image::MARKER.into())],
        nics: vec![netlab::Nic::User],
        ipxe: false,
        firmware: vm::Firmware::Bios,
        initramfs: scenario::Initramfs::Plain,
        kernels: vec![k],
        kernel: k,
        user_nic: ("virtio-net-pci".into(), String::new()),
        qemu: Vec::new(),
        services: Vec::new(),
        logs: Vec::new(),
        records: Vec::new(),
        arch,
        forbids: vec!["Kernel panic".into()],
        timeout: Duration::from_secs(timeout),
    };
    println!("xtask: booting qemu (TCG) with: {}", scenario::kernel_cmdline(&demo, &env));
    let outcome = scenario::run(&demo, &env, true);
    match outcome.failure {
        None => {
            println!(
                "xtask: the booted image reported back ({}) after {:.1}s",
                image::MARKER,
                outcome.elapsed.as_secs_f64()
            );
            Ok(())
        }
        Some(e) => Err(format!("the demo boot failed: {e}")),
    }
}

fn cmd_test(args: &[String]) -> Result<()> {
    let f = flags(args, &["--only", "--jobs"], &["--no-lint", "--verbose"])?;
    let only: Vec<&str> = f.iter().filter(|(k, _)| k == "--only").map(|(_, v)| v.as_str()).collect();
    let jobs: usize = flag(&f, "--jobs")
        .map(|j| j.parse().map_err(|_| "--jobs takes a number"))
        .transpose()?
        .unwrap_or(2)
        .max(1);
    let verbose = flag(&f, "--verbose").is_some();

    // Host tests use real tools too (cpio lists what mkcpio writes): install them first.
    host::ensure_vm_tools()?;
    if flag(&f, "--no-lint").is_none() {
        host::ensure_lint_tools()?;
        println!("xtask: cargo fmt --check");
        host::run(host::cargo().args(["fmt", "--all", "--check"]))?;
        println!("xtask: cargo clippy -D warnings");
        host::run(host::cargo().args([
            "clippy",
            "--quiet",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    println!("xtask: host tests");
    // Host tests that use real tools (cpio, openssl) fail rather than skip when one is missing.
    host::run(host::cargo().args(["test", "--quiet", "--workspace"]).env("NETINIT_REQUIRE_TOOLS", "1"))?;

    let strays = scenario::strays(&host::root());
    if !strays.is_empty() {
        let list: Vec<String> = strays.iter().map(|p| p.display().to_string()).collect();
        return Err(format!("scenarios outside qemu-tests/ never run; move or remove: {}", list.join(", ")));
    }
    // The firmware check packs a real initramfs (no VM); `--only firmware-realtek` runs it alone.
    if only.is_empty() || only.contains(&FIRMWARE_CHECK) {
        fixtures::check_firmware(&initramfs::build_init()?)?;
    }
    let loaded = scenario::load_all(&host::root().join("qemu-tests"))?;
    let mut scenarios: Vec<scenario::Scenario> = loaded.iter().flat_map(scenario::runs).collect();
    if !only.is_empty() {
        scenarios.retain(|s| only.contains(&s.name.as_str()));
        if scenarios.is_empty() && only.iter().all(|o| [FIRMWARE_CHECK, BENCH_BOOT].contains(o)) {
            if only.contains(&BENCH_BOOT) {
                println!("xtask: cargo xtask bench boot --runs 1");
                bench_boot::boot_bench(1, false)?;
            }
            return Ok(());
        }
        if scenarios.is_empty() {
            return Err(format!("no scenario named {only:?}"));
        }
    }
    let kernels: Vec<&'static kernel::Spec> =
        kernel::KNOWN.into_iter().filter(|k| scenarios.iter().any(|s| s.kernel == *k)).collect();
    let (env, _server) = fixtures::prepare_vm_env(&kernels)?;
    fixtures::verify_initramfs(&env)?;
    println!("xtask: {} VM scenarios, {jobs} at a time", scenarios.len());
    let started = Instant::now();
    let results = runner::run_all(&scenarios, &env, jobs, verbose);
    let passed = results.iter().filter(|ok| **ok).count();
    let failed = results.len() - passed;
    println!("xtask: VM scenarios took {:.0}s", started.elapsed().as_secs_f64());
    println!("scenarios: {passed} passed, {failed} failed");
    if failed > 0 || results.len() != scenarios.len() {
        return Err(format!("{failed} VM scenario(s) failed"));
    }
    // The performance guard: one boot of each benchmark case, its table printed, no timing
    // asserted (a boot that does not reach its root, or a check that does not run, fails it).
    if only.is_empty() || only.contains(&BENCH_BOOT) {
        println!("xtask: cargo xtask bench boot --runs 1");
        bench_boot::boot_bench(1, false)?;
    }
    Ok(())
}
