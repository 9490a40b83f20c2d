//! `cargo xtask`: build the initramfs, boot it in a VM, run every test. Std-first, one `match` over
//! the subcommands; each installs what it is missing (or prints the exact command when not root).

mod bench;
mod debs;
mod elf;
mod host;
mod httpd;
mod image;
mod initramfs;
mod kernel;
mod kmod;
mod netlab;
mod nginx;
mod roots;
mod scenario;
mod storm;
mod vm;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use host::Result;

const USAGE: &str = "usage: cargo xtask <command>

  qemu   [--timeout SECS]       build everything, boot it in qemu, show the console; exit 0 when the
                                booted image reports back
  test   [--only NAME] [--no-lint] [--jobs N] [--verbose]
                                lint, host tests, and every VM scenario of qemu-tests/
  bench  fetch [--size-mib N] [--runs N] [--nginx]
                                the fetcher's throughput on loopback beside curl's (1 GiB, 5 runs;
                                --nginx: served by Debian's nginx instead of xtask's server)
  bench  storm [--clients N] [--size-mib M] [--no-cache] [--client-timeout SECS]
                                a reboot storm: N clients (200) at once fetch an M MiB image (32)
                                from nginx with a busy server's limits, netinit then curl; then
                                both through a caching proxy (not with --no-cache); clients still
                                running after SECS (900) are killed
  cpio   [--modules-dir DIR | --kernel NAME] [--modules-list FILE] [--output FILE] [--shell]
         [--trust KEY]... [--ca PEM]...
                                build the initramfs (DIR: a [usr/]lib/modules/<release> directory,
                                or the root of an unpacked kernel package; modules .ko, .ko.gz,
                                .ko.xz, .ko.zst; NAME: a test kernel, 6.1 (the default) or 6.12,
                                fetched into the cache); --shell adds the host's static
                                busybox as a rescue shell (for `single` and netinit.fail=shell);
                                --trust packs a minisign public key: images must then be signed;
                                --ca adds CA certificates for https, beside Mozilla's roots";

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
        // Used by the test networks: the test HTTP server inside a network namespace.
        Some("serve") if rest.len() == 2 => cmd_serve(&rest[0], &rest[1]),
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
}

/// Builds the initramfs around `init` (from [`initramfs::build_init`]); prints what it made.
fn build_initramfs(
    init: &Path,
    modules_dir: &Path,
    list: &Path,
    output: &Path,
    extras: &Extras,
) -> Result<()> {
    let contents = initramfs::Contents {
        init,
        modules_dir,
        list,
        shell: extras.shell.then_some(Path::new(BUSYBOX)),
        trust: extras.trust,
        ca: extras.ca,
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
    Ok(())
}

fn cmd_cpio(args: &[String]) -> Result<()> {
    let known = ["--modules-dir", "--kernel", "--modules-list", "--output", "--trust", "--ca"];
    let f = flags(args, &known, &["--shell"])?;
    let modules_dir = match (flag(&f, "--modules-dir"), flag(&f, "--kernel")) {
        (Some(_), Some(_)) => return Err("give --modules-dir or --kernel, not both".into()),
        (Some(d), None) => PathBuf::from(d),
        (None, name) => {
            let name = name.unwrap_or(kernel::ALL[0].name);
            let spec =
                kernel::by_name(name).ok_or(format!("--kernel: no test kernel {name:?}\n\n{USAGE}"))?;
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
        &initramfs::build_init()?,
        &modules_dir,
        &list,
        &output,
        &Extras { shell: flag(&f, "--shell").is_some(), trust: &trust, ca: &ca },
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

fn cmd_serve(dir: &str, addr: &str) -> Result<()> {
    let _server =
        httpd::serve_at(Path::new(dir), addr).map_err(|e| format!("serving {dir} on {addr}: {e}"))?;
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// A real HTTPS server for the scenarios: `openssl s_server -WWW` serving the test files with a
/// certificate from the test CA. Dropping it stops it.
struct HttpsServer {
    child: std::process::Child,
    port: u16,
}

impl HttpsServer {
    fn start(www: &Path, tls: &image::TestTls) -> Result<HttpsServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let child = std::process::Command::new("openssl")
            .args(["s_server", "-WWW", "-quiet", "-accept", &format!("127.0.0.1:{port}")])
            .arg("-cert")
            .arg(&tls.server_cert)
            .arg("-key")
            .arg(&tls.server_key)
            .current_dir(www)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("starting openssl s_server: {e}"))?;
        // Wait until it accepts connections.
        for _ in 0..50 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(HttpsServer { child, port });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("openssl s_server did not start listening".into())
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What keeps the scenarios' servers running.
struct Servers {
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
    build_initramfs(init, &k.modules_dir, &list, &initrd, &Extras { shell: true, ..Extras::default() })?;
    // The signature and https scenarios boot an initramfs that trusts the test key and the test CA.
    let initrd_trusted = file("initramfs-trusted");
    let extras = Extras {
        shell: true,
        trust: std::slice::from_ref(&images.key),
        ca: std::slice::from_ref(&images.tls.ca_cert),
    };
    build_initramfs(init, &k.modules_dir, &list, &initrd_trusted, &extras)?;
    // The wrong-kernel scenario: the same modules, filed under a release that is not the kernel's.
    let elsewhere = host::cache().join("kernel/wrong-release");
    let fake = elsewhere.join(format!("{}-not-this-one", k.spec.release));
    if !fake.exists() {
        std::fs::create_dir_all(&elsewhere).map_err(|e| e.to_string())?;
        std::os::unix::fs::symlink(&k.modules_dir, &fake)
            .map_err(|e| format!("linking {}: {e}", fake.display()))?;
    }
    let initrd_wrong_kernel = file("initramfs-wrong-kernel");
    build_initramfs(init, &fake, &list, &initrd_wrong_kernel, &Extras::default())?;
    Ok(scenario::Boots {
        spec: k.spec,
        kernel: k.vmlinuz.clone(),
        initrd,
        initrd_trusted,
        initrd_wrong_kernel,
    })
}

/// Everything the VMs need: tools, each of `kernels` with its initramfs (around one `/init`),
/// test images, the HTTP and HTTPS servers.
fn prepare_vm_env(kernels: &[&'static kernel::Spec]) -> Result<(scenario::Env, Servers)> {
    host::ensure_vm_tools()?;
    let init = initramfs::build_init()?;
    let images = image::ensure()?;
    let mut boots = Vec::new();
    for &spec in kernels {
        let k = kernel::ensure(spec)?;
        if spec == kernel::ALL[0] {
            // The roots of real systems carry the default kernel's module lists (see roots.rs).
            roots::ensure(&images.www, &roots::KernelModules { release: spec.release, dir: &k.modules_dir })?;
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
        let link = images.www.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, &link).map_err(|e| format!("linking {}: {e}", link.display()))?;
    }
    let server = httpd::serve(&images.www).map_err(|e| format!("starting the test HTTP server: {e}"))?;
    let https = HttpsServer::start(&images.www, &images.tls)?;
    let logs = host::cache().join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let env = scenario::Env {
        boots,
        port: server.port,
        https_port: https.port,
        root_sha256: images.root_sha256,
        www: images.www,
        logs,
    };
    Ok((env, Servers { _http: server, _https: https }))
}

fn cmd_qemu(args: &[String]) -> Result<()> {
    let f = flags(args, &["--timeout"], &[])?;
    let timeout = flag(&f, "--timeout")
        .map(|t| t.parse::<u64>().map_err(|_| "--timeout takes seconds"))
        .transpose()?
        .unwrap_or(300);
    let (env, _server) = prepare_vm_env(&[kernel::ALL[0]])?;
    let demo = scenario::Scenario {
        name: "demo".into(),
        description: String::new(),
        cmdline: "modloop={server}/root.squashfs ip=dhcp panic=10".into(),
        steps: vec![scenario::Step::Expect(image::MARKER.into())],
        nics: vec![netlab::Nic::User],
        ipxe: false,
        firmware: vm::Firmware::Bios,
        initramfs: scenario::Initramfs::Plain,
        kernels: vec![kernel::ALL[0]],
        kernel: kernel::ALL[0],
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
    let loaded = scenario::load_all(&host::root().join("qemu-tests"))?;
    let mut scenarios: Vec<scenario::Scenario> = loaded.iter().flat_map(scenario::runs).collect();
    if !only.is_empty() {
        scenarios.retain(|s| only.contains(&s.name.as_str()));
        if scenarios.is_empty() {
            return Err(format!("no scenario named {only:?}"));
        }
    }
    let kernels: Vec<&'static kernel::Spec> =
        kernel::ALL.into_iter().filter(|k| scenarios.iter().any(|s| s.kernel == *k)).collect();
    let (env, _server) = prepare_vm_env(&kernels)?;
    verify_initramfs(&env)?;
    println!("xtask: {} VM scenarios, {jobs} at a time", scenarios.len());
    let logs = env.logs.clone();
    let queue = Mutex::new(scenarios.iter().collect::<VecDeque<_>>());
    let results = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                while let Some(s) = queue.lock().ok().and_then(|mut q| q.pop_front()) {
                    let outcome = scenario::run(s, &env, verbose);
                    let log = logs.join(format!("{}.log", s.name));
                    let _ = std::fs::write(&log, outcome.transcript.join("\n") + "\n");
                    report(s, &outcome, &log);
                    if let Ok(mut r) = results.lock() {
                        r.push(outcome.failure.is_none());
                    }
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_default();
    let passed = results.iter().filter(|ok| **ok).count();
    let failed = results.len() - passed;
    println!("xtask: VM scenarios took {:.0}s", started.elapsed().as_secs_f64());
    println!("scenarios: {passed} passed, {failed} failed");
    if failed > 0 || results.len() != scenarios.len() {
        return Err(format!("{failed} VM scenario(s) failed"));
    }
    Ok(())
}

/// Checks each kernel's plain test initramfs (see [`initramfs::verify`]).
fn verify_initramfs(env: &scenario::Env) -> Result<()> {
    println!("xtask: checking that each initramfs is reproducible and that cpio lists it");
    let list = host::root().join("modules-list");
    let init = initramfs::init_path();
    for boots in &env.boots {
        let modules_dir = kernel::ensure(boots.spec)?.modules_dir;
        let contents = initramfs::Contents {
            init: &init,
            modules_dir: &modules_dir,
            list: &list,
            shell: Some(Path::new(BUSYBOX)),
            trust: &[],
            ca: &[],
        };
        initramfs::verify(&boots.initrd, &contents)?;
    }
    Ok(())
}

fn report(s: &scenario::Scenario, outcome: &scenario::Outcome, log: &Path) {
    let secs = outcome.elapsed.as_secs_f64();
    match &outcome.failure {
        None => println!("xtask: PASS {} ({secs:.1}s)", s.name),
        Some(why) => {
            let tail: Vec<&String> = outcome.transcript.iter().rev().take(60).collect();
            let mut text = format!(
                "xtask: FAIL {} ({secs:.1}s): {why}\n  {}\n  console (last {} lines; all in {}):\n",
                s.name,
                s.description,
                tail.len(),
                log.display()
            );
            for line in tail.into_iter().rev() {
                text.push_str("    | ");
                text.push_str(line);
                text.push('\n');
            }
            print!("{text}");
        }
    }
}
