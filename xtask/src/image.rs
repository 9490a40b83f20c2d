//! The test root images the VMs fetch: a busybox-static root whose init reports what it sees (PID,
//! the root file system, the network netinit handed over) and powers off; and files that are not
//! squashfs images, for the error scenarios. Built with mksquashfs, reproducibly, into the cache.
//! For another machine than x86_64 the same root with that machine's busybox, signed, under
//! `<debian-arch>/` of the served tree ([`ensure_arch`]).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::arch::Arch;
use crate::host::{self, Result};

/// The line the test root's init prints once it has checked everything; the demo waits for it.
pub const MARKER: &str = "NETINIT-TEST-ROOT-OK";

/// The test root's `/sbin/init`. Each `netinit-test-root:` line is a fact a scenario may assert.
const INIT: &str = r#"#!/bin/sh
export PATH=/bin
say() { echo "netinit-test-root: $*"; }
say "pid=$$"
say "root=$(busybox awk '$2 == "/" { fs = $3 } END { print fs }' /proc/mounts)"
if echo ok > /written-by-test-root && [ "$(busybox cat /written-by-test-root)" = ok ]; then say "writable=yes"; else say "writable=no"; fi
[ -f /run/netinit/lease ] && busybox sed 's/^/netinit-test-root: lease /' /run/netinit/lease
[ -f /run/netinit/boot.json ] && busybox tr ',' '\n' < /run/netinit/boot.json | busybox sed 's/^/netinit-test-root: boot.json /'
busybox sed -n 's/^nameserver /netinit-test-root: nameserver=/p' /etc/resolv.conf
busybox sed -n 's/^search /netinit-test-root: search=/p' /etc/resolv.conf
say "addresses=$(busybox ip -4 -o addr show | busybox awk '{ printf "%s ", $4 }')"
say "addresses6=$(busybox ip -6 -o addr show scope global | busybox awk '{ printf "%s ", $4 }')"
busybox ip -6 route show default | busybox sed 's/^/netinit-test-root: route6 /'
say "lower=$(busybox awk '$2 == "/run/netinit/lower" { print $3 }' /proc/mounts)"
busybox ip -4 route | busybox sed 's/^/netinit-test-root: route /'
for nic in /sys/class/net/eth*; do say "mtu ${nic##*/}=$(busybox cat "$nic/mtu")"; done
for nic in /sys/class/net/eth*; do say "driver ${nic##*/}=$(busybox basename "$(busybox readlink "$nic/device/driver")")"; done
say "disks=$(for d in /sys/block/*; do case "${d##*/}" in loop*) ;; *) printf '%s ' "${d##*/}";; esac; done)"
say "modules-loaded=$(busybox wc -l < /proc/modules)"
busybox awk '{ print "netinit-test-root: module " $1 ";" }' /proc/modules
[ -f /proc/net/bonding/bond0 ] && busybox grep -E 'Bonding Mode|Currently Active Slave|Aggregator ID|Partner Mac Address' /proc/net/bonding/bond0 | busybox sed 's/^[[:space:]]*/netinit-test-root: bond0 /'
say "args=$*"
say "env-modloop=${modloop:-unset}"
say "env-http_proxy=${http_proxy:-unset}"
say "hostname=$(busybox hostname)"
[ -f /etc/motd ] && say "motd=$(busybox cat /etc/motd)"
[ -f /etc/apk/repositories ] && busybox sed 's/^/netinit-test-root: repo /' /etc/apk/repositories
[ -f /root/.ssh/authorized_keys ] && say "authorized_keys=$(busybox cat /root/.ssh/authorized_keys)"
[ -f /usr/local/bin/suid-probe ] && say "suid-probe=$(busybox stat -c %a /usr/local/bin/suid-probe)"
[ -e /run/netinit-escaped ] && say "escaped into the initramfs"
say "rw-size=$(busybox df -k /run/netinit/rw | busybox awk 'NR == 2 { print $2 }')"
say "lower-source=$(busybox awk '$2 == "/run/netinit/lower" { print $1 }' /proc/mounts)"
# The streamed root (modloop_stream=yes): the block server's status now (SIGUSR1); then with
# test_stream_pause=SECONDS the server stopped that long while a file the boot never read is read
# (the read must stall, then complete); with test_stream_wait=SECONDS, the wait for its hand-over
# to the RAM copy and the root device's backing before and after it.
stream_pid=$(busybox cat /run/netinit/stream.pid 2>/dev/null)
server_running() { [ -n "$stream_pid" ] && [ -r "/proc/$stream_pid/stat" ] && [ "$(busybox awk '{ print $3 }' "/proc/$stream_pid/stat")" != Z ]; }
root_dev=$(busybox awk '$2 == "/run/netinit/lower" { print $1 }' /proc/mounts)
root_slaves() { busybox ls "/sys/block/${root_dev##*/}/slaves" 2>/dev/null | busybox tr '\n' ' '; }
probe_ok() { [ "$(busybox sha256sum /stream-probe | busybox cut -d' ' -f1)" = "$(busybox cat /stream-probe.sha256)" ] && echo ok || echo bad; }
if server_running; then
	busybox kill -USR1 "$stream_pid"
	busybox sleep 1
fi
if [ -n "$test_stream_pause" ] && server_running; then
	busybox kill -STOP "$stream_pid"
	say "paused the block server for ${test_stream_pause}s"
	( busybox sleep "$test_stream_pause"; busybox kill -CONT "$stream_pid" ) &
	t0=$(busybox cut -d. -f1 /proc/uptime)
	probe=$(probe_ok)
	took=$(( $(busybox cut -d. -f1 /proc/uptime) - t0 ))
	if [ "$took" -ge $((test_stream_pause - 2)) ]; then say "stalled=yes"; else say "stalled=no (${took}s)"; fi
	say "stream-probe=$probe"
fi
if [ -n "$test_stream_wait" ]; then
	say "root-slaves=$(root_slaves)"
	n=0
	while server_running && [ "$n" -lt "$test_stream_wait" ]; do busybox sleep 1; n=$((n + 1)); done
	server_running && say "the block server is still running after ${test_stream_wait}s"
	say "after hand-over root-slaves=$(root_slaves)"
	say "stream-probe=$(probe_ok)"
fi
# test_udhcpc=1: the booted system starts its own DHCP client, as Alpine's networking would
# (netinit.keep_lease= must then step aside); test_stay=SECONDS: stay up that long (renewals).
if [ -n "$test_udhcpc" ]; then
	printf '#!/bin/busybox sh\ncase "$1" in deconfig) busybox ip -4 addr flush dev "$interface";; bound|renew) busybox ip addr add "$ip/$mask" dev "$interface";; esac\n' > /tmp/udhcpc.script
	busybox chmod +x /tmp/udhcpc.script
	say "starting udhcpc"
	busybox udhcpc -i eth0 -q -n -t 5 -T 2 -s /tmp/udhcpc.script && say "udhcpc got a lease"
	busybox sleep 6
fi
if [ -n "$test_stay" ]; then
	say "staying up ${test_stay}s"
	busybox sleep "$test_stay"
	[ -f /run/netinit/lease ] && busybox sed 's/^/netinit-test-root: later lease /' /run/netinit/lease
	say "later addresses=$(busybox ip -4 -o addr show | busybox awk '{ printf "%s ", $4 }')"
	say "later routes=$(busybox ip -4 route | busybox tr '\n' ';')"
fi
echo "NETINIT-TEST-ROOT-OK"
busybox poweroff -f
"#;

pub struct Images {
    /// Served as `root.squashfs`, `not-a-squashfs.img`, `overlays/<MAC>.tar.gz` and so on.
    pub www: PathBuf,
    /// `root.squashfs`'s SHA-256, lower-case hex.
    pub root_sha256: String,
    /// The minisign public key that signed `root.squashfs` (`root.squashfs.minisig`).
    pub key: PathBuf,
    pub tls: TestTls,
}

/// A test CA and a server certificate it signed, for 10.0.2.2 and 127.0.0.1.
pub struct TestTls {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// The test CA's `openssl ca` configuration: its certificates are valid from 2020 to 2039, so that
/// a guest whose clock is from before 2020 fails them and one raised to netinit's build passes
/// (the `clock-epoch` scenario). `openssl req -x509` and `x509 -req` of OpenSSL 3.0 start a
/// certificate now, which a machine that made them after netinit's commit would not pass.
const CA_CONFIG: &str = "[ca]
default_ca = test
[test]
dir = .
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = anything
unique_subject = no
[anything]
commonName = supplied
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
[server_ext]
subjectAltName = IP:10.0.2.2,IP:127.0.0.1
extendedKeyUsage = serverAuth
basicConstraints = CA:FALSE
";

/// Makes the test CA and server certificate with openssl, once (again when [`CA_CONFIG`] changes).
fn test_tls() -> Result<TestTls> {
    let dir = host::cache().join("test-tls");
    let tls = TestTls {
        ca_cert: dir.join("netinit-test-ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    };
    let stamp = dir.join("ca.cnf");
    let made = [&tls.ca_cert, &tls.server_cert, &tls.server_key].iter().all(|p| p.is_file());
    if made && std::fs::read_to_string(&stamp).is_ok_and(|s| s == CA_CONFIG) {
        return Ok(tls);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("index.txt"), "").map_err(|e| e.to_string())?;
    std::fs::write(dir.join("serial"), "01\n").map_err(|e| e.to_string())?;
    let openssl = |args: &[&str]| {
        host::run(
            Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        )
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let dates = ["-startdate", "20200101000000Z", "-enddate", "20391231235959Z"];
    let ca = ["ca", "-batch", "-notext", "-config", "ca.tmp.cnf", "-keyfile", "ca.key"];
    // Written as ca.cnf (the stamp) only once everything is made.
    std::fs::write(dir.join("ca.tmp.cnf"), CA_CONFIG).map_err(|e| e.to_string())?;
    openssl(
        &[
            &["req", "-new"][..],
            &ec,
            &["-subj", "/CN=netinit test CA", "-keyout", "ca.key", "-out", "ca.csr"],
        ]
        .concat(),
    )?;
    openssl(
        &[
            &ca[..],
            &["-selfsign", "-in", "ca.csr", "-extensions", "ca_ext", "-out", "netinit-test-ca.pem"],
            &dates,
        ]
        .concat(),
    )?;
    openssl(
        &[
            &["req", "-new"][..],
            &ec,
            &["-subj", "/CN=10.0.2.2", "-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
    )?;
    openssl(
        &[
            &ca[..],
            &[
                "-cert",
                "netinit-test-ca.pem",
                "-in",
                "server.csr",
                "-extensions",
                "server_ext",
                "-out",
                "server.pem",
            ],
            &dates,
        ]
        .concat(),
    )?;
    std::fs::rename(dir.join("ca.tmp.cnf"), &stamp).map_err(|e| e.to_string())?;
    Ok(tls)
}

/// The MAC qemu gives the first NIC, which names the test apkovl.
pub const GUEST_MAC: &str = "52:54:00:12:34:56";

/// Builds the test files into `target/netinit-cache/www` (once; rebuilt if the script changes).
pub fn ensure() -> Result<Images> {
    let www = host::cache().join("www");
    let stamp = www.join(".stamp");
    // The stamp covers the whole recipe: this file, the test root's script included.
    let want = format!("{:x}", fnv(include_str!("image.rs").as_bytes()));
    let key = test_key()?;
    let tls = test_tls()?;
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        let root_sha256 = sha256_file(&www.join("root.squashfs"))?;
        return Ok(Images { www, root_sha256, key, tls });
    }
    let _ = std::fs::remove_dir_all(&www);
    std::fs::create_dir_all(&www).map_err(|e| e.to_string())?;
    test_root(Path::new("/bin/busybox"), &host::cache().join("test-root"), &www.join("root.squashfs"))?;
    // An HTML error page saved under the image's name: what a misconfigured web server serves.
    std::fs::write(
        www.join("not-a-squashfs.img"),
        "<!DOCTYPE html>\n<html><body>Welcome to nginx!</body></html>\n".repeat(64),
    )
    .map_err(|e| e.to_string())?;
    // An Alpine apkovl for the guest's MAC: configuration unpacked over the new root, with entries
    // netinit must refuse. Signed (for the trusting initramfs), and unsigned under unsigned/.
    std::fs::create_dir_all(www.join("overlays")).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(www.join("unsigned")).map_err(|e| e.to_string())?;
    let ovl = www.join(format!("overlays/{GUEST_MAC}.tar.gz"));
    std::fs::write(&ovl, apkovl()?).map_err(|e| e.to_string())?;
    std::fs::copy(&ovl, www.join(format!("unsigned/{GUEST_MAC}.tar.gz"))).map_err(|e| e.to_string())?;
    sign(&ovl, &www.join(format!("overlays/{GUEST_MAC}.tar.gz.minisig")))?;
    // Signatures: the image signed by the test key; under badsig/, the same image with the
    // signature of another file.
    sign(&www.join("root.squashfs"), &www.join("root.squashfs.minisig"))?;
    std::fs::create_dir_all(www.join("badsig")).map_err(|e| e.to_string())?;
    std::fs::copy(www.join("root.squashfs"), www.join("badsig/root.squashfs")).map_err(|e| e.to_string())?;
    sign(&www.join("not-a-squashfs.img"), &www.join("badsig/root.squashfs.minisig"))?;
    std::fs::write(&stamp, want).map_err(|e| e.to_string())?;
    let root_sha256 = sha256_file(&www.join("root.squashfs"))?;
    Ok(Images { www, root_sha256, key, tls })
}

/// The size of the streamed root's probe: a file of random bytes the boot never reads.
const PROBE_MIB: u64 = 24;

/// The streamed root's test images, under `www/`: `stream/root.squashfs`, the test root with
/// `/stream-probe` (random bytes) and its SHA-256 in `/stream-probe.sha256`, signed, with its
/// manifest (`.chunks`, by `init`'s `netinit manifest`), signed too; `stream-bad/`, the same image
/// with one byte changed in a middle chunk beside the good manifest (a corrupt mirror);
/// `stream-other/`, the same image beside the manifest of the plain test root (another image).
pub fn ensure_stream(images: &Images, init: &Path) -> Result<()> {
    let dir = images.www.join("stream");
    let stamp = dir.join(".stamp");
    let want = format!("{:x}", fnv(include_str!("image.rs").as_bytes()));
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        return Ok(());
    }
    for d in ["stream", "stream-bad", "stream-other"] {
        let _ = std::fs::remove_dir_all(images.www.join(d));
        std::fs::create_dir_all(images.www.join(d)).map_err(|e| e.to_string())?;
    }
    let tree = host::cache().join("test-root-stream");
    let image = dir.join("root.squashfs");
    let extra = |tree: &Path| -> Result<()> {
        crate::bench::write_data(&tree.join("stream-probe"), PROBE_MIB)?;
        let digest = sha256_file(&tree.join("stream-probe"))?;
        std::fs::write(tree.join("stream-probe.sha256"), format!("{digest}\n")).map_err(|e| e.to_string())
    };
    test_root_with(Path::new("/bin/busybox"), &tree, &image, &extra)?;
    sign(&image, &dir.join("root.squashfs.minisig"))?;
    manifest(init, &image, None)?;
    sign(&dir.join("root.squashfs.chunks"), &dir.join("root.squashfs.chunks.minisig"))?;
    // The corrupt mirror: one byte changed in the probe's middle chunk, the manifest the good one's.
    let mut bytes = std::fs::read(&image).map_err(|e| e.to_string())?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(images.www.join("stream-bad/root.squashfs"), bytes).map_err(|e| e.to_string())?;
    for f in ["root.squashfs.chunks", "root.squashfs.chunks.minisig"] {
        std::fs::copy(dir.join(f), images.www.join("stream-bad").join(f)).map_err(|e| e.to_string())?;
    }
    // Another image's manifest beside this image.
    std::fs::copy(&image, images.www.join("stream-other/root.squashfs")).map_err(|e| e.to_string())?;
    let other = images.www.join("stream-other/plain.squashfs");
    std::fs::copy(images.www.join("root.squashfs"), &other).map_err(|e| e.to_string())?;
    manifest(init, &other, None)?;
    std::fs::rename(
        images.www.join("stream-other/plain.squashfs.chunks"),
        images.www.join("stream-other/root.squashfs.chunks"),
    )
    .map_err(|e| e.to_string())?;
    std::fs::remove_file(&other).map_err(|e| e.to_string())?;
    std::fs::write(&stamp, want).map_err(|e| e.to_string())
}

/// `netinit manifest [--chunk-size N] IMAGE` with the built `init`: writes `IMAGE.chunks`.
pub fn manifest(init: &Path, image: &Path, chunk_size: Option<u64>) -> Result<()> {
    let mut cmd = Command::new(init);
    cmd.arg("manifest");
    if let Some(n) = chunk_size {
        cmd.args(["--chunk-size", &n.to_string()]);
    }
    host::run(cmd.arg(image).stdout(std::process::Stdio::null()))
}

/// The test root around `busybox` (a static one), built in `tree` and written as `out`.
fn test_root(busybox: &Path, tree: &Path, out: &Path) -> Result<()> {
    test_root_with(busybox, tree, out, &|_| Ok(()))
}

/// [`test_root`] with files `extra` adds to the tree.
fn test_root_with(
    busybox: &Path,
    tree: &Path,
    out: &Path,
    extra: &dyn Fn(&Path) -> Result<()>,
) -> Result<()> {
    let _ = std::fs::remove_dir_all(tree);
    for d in ["bin", "sbin", "etc", "proc", "sys", "dev", "run", "tmp"] {
        std::fs::create_dir_all(tree.join(d)).map_err(|e| e.to_string())?;
    }
    std::fs::copy(busybox, tree.join("bin/busybox"))
        .map_err(|e| format!("copying {}: {e}", busybox.display()))?;
    std::os::unix::fs::symlink("busybox", tree.join("bin/sh")).map_err(|e| e.to_string())?;
    write_exec(&tree.join("sbin/init"), INIT)?;
    extra(tree)?;
    mksquashfs(tree, out)
}

/// Where the test root for `arch` is served, below the test server's root.
pub fn root_path(arch: Arch) -> String {
    match arch {
        Arch::X86_64 => "root.squashfs".into(),
        other => format!("{}/root.squashfs", other.debian()),
    }
}

/// The test root for `arch` (built once into `www/<debian-arch>/` with that machine's
/// busybox-static, and signed with the test key as `root.squashfs.minisig`); returns its SHA-256.
/// Call after [`ensure`], which rebuilds the whole tree when its recipe changes.
pub fn ensure_arch(images: &Images, arch: Arch) -> Result<String> {
    if arch == Arch::X86_64 {
        return Ok(images.root_sha256.clone());
    }
    let busybox = crate::debs::busybox(arch)?;
    let image = images.www.join(root_path(arch));
    let dir = image.parent().map(Path::to_path_buf).unwrap_or_default();
    let stamp = dir.join(".stamp");
    let want = format!("{:x}", fnv(include_str!("image.rs").as_bytes()));
    if !std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let tree = host::cache().join(format!("test-root-{}", arch.debian()));
        test_root(&busybox, &tree, &image)?;
        sign(&image, &image.with_extension("squashfs.minisig"))?;
        std::fs::write(&stamp, want).map_err(|e| e.to_string())?;
    }
    sha256_file(&image)
}

/// The test apkovl: `etc/motd`, a setuid file (kept only when the overlay is signed), and what must
/// be skipped or kept inside the root: a `..` path, a device node, and a file written through a
/// symlink entry to `/run` (which lands in the new root's own `/run`, hidden once the initramfs's
/// `/run` moves over it, never in the initramfs's).
fn apkovl() -> Result<Vec<u8>> {
    use tar::EntryType as T;
    let entries: [(&str, T, u32, &str, &[u8]); 10] = [
        ("etc/", T::Directory, 0o755, "", b""),
        ("etc/motd", T::Regular, 0o644, "", b"hello from the apkovl\n"),
        ("usr/", T::Directory, 0o755, "", b""),
        ("usr/local/", T::Directory, 0o755, "", b""),
        ("usr/local/bin/", T::Directory, 0o755, "", b""),
        ("usr/local/bin/suid-probe", T::Regular, 0o4755, "", b"#!/bin/sh\n"),
        ("../escaped", T::Regular, 0o644, "", b"x"),
        ("dev/evil", T::Char, 0o666, "", b""),
        ("etc/escape", T::Symlink, 0o777, "/run", b""),
        ("etc/escape/netinit-escaped", T::Regular, 0o644, "", b"x"),
    ];
    let mut builder =
        tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best()));
    for (path, kind, mode, link, data) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        if kind == T::Char {
            header.set_device_major(1).map_err(|e| e.to_string())?;
            header.set_device_minor(1).map_err(|e| e.to_string())?;
        }
        // Raw names: `set_path` refuses `..`, as a hostile archive would not.
        let old = header.as_old_mut();
        old.name[..path.len()].copy_from_slice(path.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_cksum();
        builder.append(&header, data).map_err(|e| e.to_string())?;
    }
    builder.into_inner().and_then(|gz| gz.finish()).map_err(|e| format!("writing the test apkovl: {e}"))
}

/// The test signing key pair (made once, without a password), as minisign writes it; returns the
/// public key's path.
fn test_key() -> Result<PathBuf> {
    let dir = host::cache().join("test-key");
    let (public, secret) = (dir.join("netinit-test.pub"), dir.join("netinit-test.key"));
    if !public.is_file() || !secret.is_file() {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        host::run(
            Command::new("minisign")
                .args(["-G", "-W", "-f", "-p"])
                .arg(&public)
                .arg("-s")
                .arg(&secret)
                .stdout(std::process::Stdio::null()),
        )?;
    }
    Ok(public)
}

/// `minisign -S`: signs `file` into `signature` with the test key.
pub fn sign(file: &Path, signature: &Path) -> Result<()> {
    let secret = host::cache().join("test-key/netinit-test.key");
    host::run(
        Command::new("minisign")
            .arg("-S")
            .arg("-s")
            .arg(&secret)
            .arg("-m")
            .arg(file)
            .arg("-x")
            .arg(signature)
            .args(["-t", "netinit test image"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null()),
    )
}

pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    let data = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(sha2::Sha256::digest(&data).iter().map(|b| format!("{b:02x}")).collect())
}

fn write_exec(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())
}

/// mksquashfs with fixed times and owners, so the same tree gives the same image.
pub fn mksquashfs(tree: &Path, out: &Path) -> Result<()> {
    host::run(
        Command::new("mksquashfs")
            .arg(tree)
            .arg(out)
            .args(["-noappend", "-quiet", "-no-progress", "-all-root", "-comp", "gzip"])
            .args(["-mkfs-time", "0", "-all-time", "0"])
            .stdout(std::process::Stdio::null()),
    )
}

/// FNV-1a: a stamp to notice that the recipe changed.
pub fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}
