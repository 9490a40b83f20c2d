//! The one module that makes syscalls with side effects on the system: mounts, module loading, loop
//! devices, netlink, sockets bound to a device, chroot, reboot. Each wrapper names the C call it makes
//! and its man page. Stages call these; they never call rustix or libc for such things themselves.
//!
//! It deliberately holds no policy: which mounts, which order, what to do on failure is the stages'.
//! Reading and writing ordinary files is not wrapped: `std::fs` is already that thin layer. Writing
//! into the new root is: [`InRoot`] resolves every path inside it (`in_root.rs`).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::io::Errno;
use rustix::mount::MountFlags;

pub use rustix::system::RebootCommand;

pub mod dm;
mod in_root;
pub use in_root::{set_mode, set_mtime, set_owner_mode, Create, InRoot, Kind};

/// Time since boot, suspend included: `clock_gettime(CLOCK_BOOTTIME)`, clock_gettime(2).
pub fn uptime() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    Duration::new(t.tv_sec.max(0) as u64, t.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// The wall clock: `clock_gettime(CLOCK_REALTIME)`, clock_gettime(2); zero before 1970.
pub fn realtime() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    Duration::new(t.tv_sec.max(0) as u64, t.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// Sets the wall clock: `clock_settime(CLOCK_REALTIME)`, clock_settime(2).
pub fn set_realtime(to: Duration) -> io::Result<()> {
    let t = rustix::time::Timespec {
        tv_sec: i64::try_from(to.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(to.subsec_nanos()),
    };
    Ok(rustix::time::clock_settime(rustix::time::ClockId::Realtime, t)?)
}

/// Random bytes that never block, even before the kernel's pool is seeded:
/// `getrandom(buf, GRND_INSECURE)`, getrandom(2). For DHCP transaction ids and jitter, not for keys.
pub fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    match rustix::rand::getrandom(&mut buf, rustix::rand::GetRandomFlags::INSECURE) {
        Ok(_) => u64::from_ne_bytes(buf),
        // Kernels before 5.6 lack GRND_INSECURE; the uptime's nanoseconds still differ per machine.
        Err(_) => uptime().as_nanos() as u64 ^ u64::from(std::process::id()),
    }
}

/// The running kernel's release, as `/lib/modules/<release>` names it: uname(2).
pub fn kernel_release() -> String {
    rustix::system::uname().release().to_string_lossy().into_owned()
}

/// `mount(source, target, fstype, flags, data)`, mount(2).
pub fn mount(source: &str, target: &Path, fstype: &str, flags: MountFlags, data: &str) -> io::Result<()> {
    let data = std::ffi::CString::new(data).map_err(|_| Errno::INVAL)?;
    Ok(rustix::mount::mount(source, target, fstype, flags, data.as_c_str())?)
}

/// `umount2(target, MNT_DETACH)`, umount(2): takes a mount away now, and frees it when unused.
pub fn unmount_detach(target: &Path) -> io::Result<()> {
    Ok(rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH)?)
}

/// `mount(from, to, NULL, MS_MOVE, NULL)`, mount(2): moves a mount and everything below it.
pub fn mount_move(from: &Path, to: &Path) -> io::Result<()> {
    Ok(rustix::mount::mount_move(from, to)?)
}

/// `mount(source, target, NULL, MS_BIND, NULL)`, mount(2): `source` (a file or a directory) seen
/// at `target` too.
pub fn bind_mount(source: &Path, target: &Path) -> io::Result<()> {
    Ok(rustix::mount::mount_bind(source, target)?)
}

/// `mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL)`, mount(2): makes a bind
/// mount read-only without touching the file system below.
pub fn remount_bind_readonly(target: &Path) -> io::Result<()> {
    let flags = MountFlags::BIND | MountFlags::RDONLY;
    Ok(rustix::mount::mount_remount(target, flags, c"")?)
}

/// `finit_module(fd, params, 0)`, init_module(2), `params` as modprobe would pass them
/// (`max_bonds=0`). `EEXIST` (already loaded) is reported as such; deciding that it is fine is the
/// caller's business.
pub fn load_module(path: &Path, params: &std::ffi::CStr) -> io::Result<()> {
    let file = File::open(path)?;
    Ok(rustix::system::finit_module(&file, params, 0)?)
}

// Loop device ioctls, from <linux/loop.h>; loop(4).
const LOOP_CTL_GET_FREE: rustix::ioctl::Opcode = 0x4C82;
const LOOP_CONFIGURE: rustix::ioctl::Opcode = 0x4C0A;
const LOOP_SET_FD: rustix::ioctl::Opcode = 0x4C00;
const LOOP_SET_STATUS64: rustix::ioctl::Opcode = 0x4C04;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64` from <linux/loop.h>.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` from <linux/loop.h>.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// `ioctl(loop_control, LOOP_CTL_GET_FREE)`: its result is the ioctl's return value, which none of
/// rustix's ready-made patterns return, hence this small implementation of its `Ioctl` trait.
struct GetFree;

// SAFETY: LOOP_CTL_GET_FREE takes no argument and reads or writes no memory; its output is the
// ioctl's non-negative return value.
unsafe impl rustix::ioctl::Ioctl for GetFree {
    type Output = u32;
    const IS_MUTATING: bool = false;
    fn opcode(&self) -> rustix::ioctl::Opcode {
        LOOP_CTL_GET_FREE
    }
    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        std::ptr::null_mut()
    }
    unsafe fn output_from_ptr(
        out: rustix::ioctl::IoctlOutput,
        _: *mut std::ffi::c_void,
    ) -> rustix::io::Result<u32> {
        u32::try_from(out).map_err(|_| Errno::RANGE)
    }
}

/// A loop device attached by [`loop_attach_readonly`]. It is set to autoclear, so it detaches itself
/// when its last user goes away: keep this open until the mount that uses it is made.
pub struct LoopDevice {
    pub path: PathBuf,
    _open: File,
}

impl LoopDevice {
    /// The open device.
    pub fn file(&self) -> &File {
        &self._open
    }
}

/// Attaches `image` read-only to a free loop device, e.g. `/dev/loop0`.
pub fn loop_attach_readonly(image: &Path) -> io::Result<LoopDevice> {
    let backing = File::open(image)?;
    let control = File::options().read(true).write(true).open("/dev/loop-control")?;
    loop_attach(&backing, image, &control, &|n| open_loop_device(&PathBuf::from(format!("/dev/loop{n}"))))
}

/// Attaches `backing` (named `name` in the loop device's status) read-only to a free loop device,
/// asking `control` (`/dev/loop-control`) for one and opening `/dev/loopN` with `open(N)`: the stream
/// server passes handles it opened before switch_root.
///
/// `LOOP_CTL_GET_FREE` then `LOOP_CONFIGURE` (one atomic call, Linux 5.8+), loop(4). Another process
/// may take the same free device between the two calls (`EBUSY`): then it asks for another, a few
/// times. Kernels without `LOOP_CONFIGURE` get `LOOP_SET_FD` + `LOOP_SET_STATUS64`. The device is
/// set to autoclear, so it detaches itself when its last user (the mount) goes away.
pub fn loop_attach(
    backing: &File,
    name: &Path,
    control: &File,
    open: &dyn Fn(u32) -> io::Result<File>,
) -> io::Result<LoopDevice> {
    let mut last = Errno::BUSY;
    for _ in 0..8 {
        // SAFETY: GetFree upholds the Ioctl contract (see its impl).
        let n = unsafe { rustix::ioctl::ioctl(control, GetFree) }?;
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let device = open(n)?;
        let mut info = LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
            lo_file_name: [0; 64],
            lo_crypt_name: [0; 64],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        };
        let name = name.as_os_str().as_encoded_bytes();
        let n = name.len().min(63);
        info.lo_file_name[..n].copy_from_slice(&name[..n]);
        let config = LoopConfig { fd: backing.as_raw_fd() as u32, block_size: 0, info, reserved: [0; 8] };
        // SAFETY: LOOP_CONFIGURE reads one `struct loop_config`, which LoopConfig mirrors field for field.
        let configured = unsafe {
            rustix::ioctl::ioctl(&device, rustix::ioctl::Setter::<LOOP_CONFIGURE, LoopConfig>::new(config))
        };
        match configured {
            Ok(()) => return Ok(LoopDevice { path, _open: device }),
            Err(Errno::BUSY) => last = Errno::BUSY,
            Err(Errno::INVAL) | Err(Errno::NOTTY) => {
                // SAFETY: LOOP_SET_FD takes the backing file descriptor as its integer argument.
                unsafe {
                    rustix::ioctl::ioctl(
                        &device,
                        rustix::ioctl::IntegerSetter::<LOOP_SET_FD>::new_usize(backing.as_raw_fd() as usize),
                    )
                }?;
                // SAFETY: LOOP_SET_STATUS64 reads one `struct loop_info64`, which LoopInfo64 mirrors.
                unsafe {
                    rustix::ioctl::ioctl(
                        &device,
                        rustix::ioctl::Setter::<LOOP_SET_STATUS64, LoopInfo64>::new(info),
                    )
                }?;
                return Ok(LoopDevice { path, _open: device });
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.into())
}

/// devtmpfs creates `/dev/loopN` as the loop driver registers it, which can lag the ioctl that made it.
fn open_loop_device(path: &Path) -> io::Result<File> {
    retry_not_found(|| File::options().read(true).open(path))
}

/// `open` again for up to half a second while it fails with `NotFound`: a device node devtmpfs is
/// about to create.
pub fn retry_not_found<T>(open: impl Fn() -> io::Result<T>) -> io::Result<T> {
    for _ in 0..50 {
        match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::thread::sleep(Duration::from_millis(10)),
            other => return other,
        }
    }
    open()
}

/// Opens `name` read-only under the directory `dir` (a handle kept from before switch_root): openat(2).
pub fn open_at(dir: &OwnedFd, name: &str) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    Ok(File::from(fd))
}

/// A directory handle (`O_PATH`), for [`open_at`].
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    Ok(rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// The device number of an open block device: fstat(2)'s `st_rdev`.
pub fn device_number(file: &File) -> io::Result<dm::DevNum> {
    Ok(dm::DevNum::from_rdev(rustix::fs::fstat(file)?.st_rdev))
}

/// A connected pair of Unix stream sockets, close-on-exec: socketpair(2).
pub fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    Ok(rustix::net::socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)?)
}

/// What keeps a root-storage daemon alive and answering while the system it serves runs: its memory
/// locked (mlockall(2), `MCL_CURRENT | MCL_FUTURE`), its allocations never waiting on its own I/O
/// (prctl(2) `PR_SET_IO_FLUSHER`), the OOM killer told to pass it by (`oom_score_adj` -1000),
/// SIGTERM and SIGINT ignored (a shutdown's kill-everyone must not take the root's storage first).
/// Each step that fails is named in the result; the caller logs them and goes on.
pub fn harden_storage_daemon() -> Vec<String> {
    let mut failed = Vec::new();
    // SAFETY: mlockall and prctl take no pointers; signal() installs SIG_IGN, which runs no code.
    unsafe {
        if libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) != 0 {
            failed.push(format!("mlockall: {}", io::Error::last_os_error()));
        }
        if libc::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) != 0 {
            failed.push(format!("PR_SET_IO_FLUSHER: {}", io::Error::last_os_error()));
        }
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", "-1000\n") {
        failed.push(format!("oom_score_adj: {e}"));
    }
    failed
}

/// `PR_SET_IO_FLUSHER` of <linux/prctl.h> (Linux 5.6).
const PR_SET_IO_FLUSHER: libc::c_int = 57;

/// Blocks `signal` in this thread and those it starts, so that one thread can take it with
/// [`wait_signal`]: pthread_sigmask(3).
pub fn block_signal(signal: libc::c_int) {
    // SAFETY: the set is initialized by sigemptyset before use; the old mask is not asked for.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits until `signal` (blocked by [`block_signal`]) arrives: sigwait(3).
pub fn wait_signal(signal: libc::c_int) {
    // SAFETY: as in block_signal; sigwait writes one int.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        let mut got = 0;
        libc::sigwait(&set, &mut got);
    }
}

/// `chdir(dir); mount(".", "/", MS_MOVE); chroot("."); chdir("/")`: the heart of switch_root(8).
pub fn move_root(new_root: &Path) -> io::Result<()> {
    rustix::process::chdir(new_root)?;
    rustix::mount::mount_move(".", "/")?;
    rustix::process::chroot(".")?;
    rustix::process::chdir("/")?;
    Ok(())
}

/// `reboot(cmd)`, reboot(2). Returns only on failure.
pub fn reboot(cmd: RebootCommand) -> io::Error {
    rustix::fs::sync();
    match rustix::system::reboot(cmd) {
        Ok(()) => io::Error::other("reboot(2) returned"),
        Err(e) => e.into(),
    }
}

/// `sethostname(name)`, sethostname(2).
pub fn set_hostname(name: &str) -> io::Result<()> {
    Ok(rustix::system::sethostname(name.as_bytes())?)
}

/// A UDP socket on `0.0.0.0:port` bound to one interface, allowed to broadcast, with a receive
/// timeout: socket(2), setsockopt(2) with `SO_REUSEADDR`, `SO_BROADCAST`, `SO_BINDTODEVICE` (socket(7)),
/// bind(2). `SO_BINDTODEVICE` comes from libc: rustix has no wrapper for it.
pub fn udp_socket_on_device(ifname: &str, port: u16) -> io::Result<OwnedFd> {
    use rustix::net::{sockopt, AddressFamily, SocketType};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::DGRAM, None)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    sockopt::set_socket_broadcast(&fd, true)?;
    bind_to_device(&fd, ifname)?;
    rustix::net::bind(&fd, &std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, port))?;
    Ok(fd)
}

/// `SO_BINDTODEVICE` (socket(7)), from libc: rustix has no wrapper for it.
fn bind_to_device(fd: &OwnedFd, ifname: &str) -> io::Result<()> {
    let name = std::ffi::CString::new(ifname).map_err(|_| Errno::INVAL)?;
    let len = name.as_bytes_with_nul().len() as libc::socklen_t;
    // SAFETY: `name` is a valid NUL-terminated buffer of `len` bytes that outlives the call; the
    // kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_BINDTODEVICE, name.as_ptr().cast(), len)
    };
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// A raw ICMPv6 socket on `ifname`, for Router Solicitations and Advertisements: socket(2) with
/// `SOCK_RAW`/`IPPROTO_ICMPV6` (raw(7), icmp6 in ipv6(7)), non-blocking, bound to the device, hop
/// limit 255 (RFC 4861 6.1: routers drop neighbour discovery with less). The kernel fills in the
/// ICMPv6 checksum.
pub fn icmpv6_socket_on_device(ifname: &str) -> io::Result<OwnedFd> {
    use rustix::net::{ipproto, sockopt, AddressFamily, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::INET6,
        SocketType::RAW,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        Some(ipproto::ICMPV6),
    )?;
    bind_to_device(&fd, ifname)?;
    sockopt::set_ipv6_multicast_hops(&fd, 255)?;
    sockopt::set_ipv6_unicast_hops(&fd, Some(255))?;
    Ok(fd)
}

/// The inode of a socket, as `/proc/net/udp` lists it: fstat(2).
pub fn inode(fd: &OwnedFd) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_ino)
}

/// An rtnetlink socket that receives IPv4 address changes (`RTMGRP_IPV4_IFADDR`), non-blocking;
/// read it with [`recv_now`].
pub fn address_events() -> io::Result<OwnedFd> {
    use rustix::net::{netlink, AddressFamily, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        // NETLINK_ROUTE is protocol 0, the default.
        None,
    )?;
    // RTMGRP_IPV4_IFADDR, <linux/rtnetlink.h>.
    rustix::net::bind(&fd, &netlink::SocketAddrNetlink::new(0, 0x10))?;
    Ok(fd)
}

/// A non-blocking UDP socket on `ifname`, bound to `[::]:port` (the DHCPv6 client's 546):
/// socket(2), `SO_REUSEADDR`, `SO_BINDTODEVICE`, `IPV6_V6ONLY`, bind(2).
pub fn udp6_socket_on_device(ifname: &str, port: u16) -> io::Result<OwnedFd> {
    use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::INET6,
        SocketType::DGRAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    sockopt::set_ipv6_v6only(&fd, true)?;
    bind_to_device(&fd, ifname)?;
    rustix::net::bind(&fd, &std::net::SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, port, 0, 0))?;
    Ok(fd)
}

/// `sendto(fd, buf, 0, to)` to an IPv6 address, sendto(2).
pub fn send_to6(fd: &OwnedFd, buf: &[u8], to: std::net::SocketAddrV6) -> io::Result<()> {
    rustix::net::sendto(fd, buf, rustix::net::SendFlags::empty(), &to)?;
    Ok(())
}

/// One datagram and its sender's IPv6 address if one is waiting, `None` if not: recvfrom(2) with
/// `MSG_DONTWAIT`.
pub fn recv_from6_now(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<(usize, std::net::Ipv6Addr)>> {
    match rustix::net::recvfrom(fd, buf, rustix::net::RecvFlags::DONTWAIT) {
        Ok((n, _, from)) => {
            let from = from.and_then(|a| std::net::SocketAddrV6::try_from(a).ok()).map(|a| *a.ip());
            Ok(Some((n, from.unwrap_or(std::net::Ipv6Addr::UNSPECIFIED))))
        }
        Err(Errno::AGAIN) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `sendto(fd, buf, 0, to)`, sendto(2).
pub fn send_to(fd: &OwnedFd, buf: &[u8], to: std::net::SocketAddrV4) -> io::Result<()> {
    rustix::net::sendto(fd, buf, rustix::net::SendFlags::empty(), &to)?;
    Ok(())
}

/// Which of `fds` have data to read, waiting at most `timeout`: poll(2). EINTR counts as nothing ready.
pub fn poll_readable(fds: &[&OwnedFd], timeout: Duration) -> io::Result<Vec<bool>> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut pfds: Vec<PollFd> = fds.iter().map(|fd| PollFd::new(*fd, PollFlags::IN)).collect();
    let t = Timespec { tv_sec: timeout.as_secs() as i64, tv_nsec: i64::from(timeout.subsec_nanos()) };
    match rustix::event::poll(&mut pfds, Some(&t)) {
        Ok(_) => Ok(pfds.iter().map(|p| p.revents().intersects(PollFlags::IN | PollFlags::ERR)).collect()),
        Err(Errno::INTR) => Ok(vec![false; fds.len()]),
        Err(e) => Err(e.into()),
    }
}

/// A counter another thread can make readable, to end a [`poll_readable`] early: eventfd(2).
pub fn eventfd() -> io::Result<OwnedFd> {
    use rustix::event::EventfdFlags;
    Ok(rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?)
}

/// Makes an [`eventfd`] readable (adds 1 to its counter); it stays readable until read.
pub fn eventfd_signal(fd: &OwnedFd) -> io::Result<()> {
    rustix::io::write(fd, &1u64.to_ne_bytes())?;
    Ok(())
}

/// One datagram if one is waiting: recv(2) with `MSG_DONTWAIT`. `Ok(None)` when there is none.
pub fn recv_now(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match rustix::net::recv(fd, buf, rustix::net::RecvFlags::DONTWAIT) {
        Ok((n, _)) => Ok(Some(n)),
        Err(Errno::AGAIN) | Err(Errno::INTR) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A socket that receives the kernel's uevents as they are broadcast (netlink(7),
/// `NETLINK_KOBJECT_UEVENT`, multicast group 1: what udev listens to), with a receive buffer of
/// `buffer` bytes so that a burst while drivers probe is kept. Read it with [`recv_now`];
/// `ENOBUFS` from it means uevents were lost.
pub fn uevent_socket(buffer: usize) -> io::Result<OwnedFd> {
    use rustix::net::{netlink, AddressFamily, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(netlink::KOBJECT_UEVENT),
    )?;
    // Best effort: the default (rmem_default, about 200 KiB) holds hundreds of uevents already.
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&fd, buffer);
    rustix::net::bind(&fd, &netlink::SocketAddrNetlink::new(0, 1))?;
    Ok(fd)
}

/// A socket that receives rtnetlink's link notifications (rtnetlink(7), multicast group
/// `RTMGRP_LINK`): a NIC registers, is set up, or its carrier changes. The kernel sends the first
/// carrier-on of a NIC at once, as its queue discipline becomes usable. Read it with [`recv_now`].
pub fn link_events() -> io::Result<OwnedFd> {
    use rustix::net::{netlink, AddressFamily, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        // NETLINK_ROUTE is protocol 0, the default.
        None,
    )?;
    // RTMGRP_LINK, <linux/rtnetlink.h>.
    rustix::net::bind(&fd, &netlink::SocketAddrNetlink::new(0, 1))?;
    Ok(fd)
}

/// A NETLINK_ROUTE socket, netlink(7), rtnetlink(7). It only moves bytes; requests and their
/// acknowledgements are `net::netlink`'s.
pub struct Netlink {
    fd: OwnedFd,
}

impl Netlink {
    /// socket(2) and bind(2), with `SO_RCVTIMEO` at `timeout` (socket(7)), so that a kernel that
    /// never answers cannot hold PID 1: [`Netlink::recv`] then fails with `WouldBlock`.
    pub fn open(timeout: Duration) -> io::Result<Self> {
        use rustix::net::{AddressFamily, SocketType};
        let fd = rustix::net::socket(AddressFamily::NETLINK, SocketType::DGRAM, None)?;
        rustix::net::bind(&fd, &rustix::net::netlink::SocketAddrNetlink::new(0, 0))?;
        rustix::net::sockopt::set_socket_timeout(&fd, rustix::net::sockopt::Timeout::Recv, Some(timeout))?;
        Ok(Netlink { fd })
    }

    /// A NETLINK_GENERIC socket (genetlink), for the families the kernel's drivers register (`nbd`).
    pub fn open_generic(timeout: Duration) -> io::Result<Self> {
        use rustix::net::{AddressFamily, SocketType};
        let fd = rustix::net::socket(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            Some(rustix::net::netlink::GENERIC),
        )?;
        rustix::net::bind(&fd, &rustix::net::netlink::SocketAddrNetlink::new(0, 0))?;
        rustix::net::sockopt::set_socket_timeout(&fd, rustix::net::sockopt::Timeout::Recv, Some(timeout))?;
        Ok(Netlink { fd })
    }

    /// One message to the kernel: sendto(2).
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        let kernel = rustix::net::netlink::SocketAddrNetlink::new(0, 0);
        rustix::net::sendto(&self.fd, msg, rustix::net::SendFlags::empty(), &kernel)?;
        Ok(())
    }

    /// One datagram from the kernel, waiting at most the socket's timeout: recv(2). EINTR is retried.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match rustix::net::recv(&self.fd, &mut *buf, rustix::net::RecvFlags::empty()) {
                Ok((n, _)) => return Ok(n.min(buf.len())),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The bytes an unprivileged writer may still put on the file system holding `path`: statfs(2).
pub fn fs_free(path: &Path) -> io::Result<u64> {
    let st = rustix::fs::statfs(path)?;
    Ok((st.f_bavail as u64).saturating_mul(st.f_bsize as u64))
}

/// `open(path, O_WRONLY)` + write(2) of one value, as sysctl(8) does for `/proc/sys`.
pub fn write_sysctl(path: &str, value: &str) -> io::Result<()> {
    use std::io::Write;
    File::options().write(true).open(path)?.write_all(value.as_bytes())
}

/// Makes `fd` the process's stdin, stdout and stderr: dup2(2).
pub fn set_stdio(fd: impl AsFd) -> io::Result<()> {
    let fd = fd.as_fd();
    for target in [0, 1, 2] {
        // SAFETY: dup2 onto 0, 1 and 2 replaces the process's standard streams; nothing in netinit
        // holds those raw descriptors as owned file descriptors.
        let rc = unsafe { libc::dup2(fd.as_raw_fd(), target) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Runs `program` on `/dev/console` as the leader of a new session with the console as its
/// controlling terminal, so job control and Ctrl-C work, and waits for it: fork(2), setsid(2),
/// `ioctl(TIOCSCTTY)` (tty_ioctl(4)), execve(2), waitpid(2).
pub fn run_on_console(program: &str, args: &[&str]) -> io::Result<std::process::ExitStatus> {
    use std::os::unix::process::CommandExt;
    let console = File::options().read(true).write(true).open("/dev/console")?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .stdin(console.try_clone()?)
        .stdout(console.try_clone()?)
        .stderr(console)
        .env("PS1", "(netinit rescue) # ")
        .env("PATH", "/bin:/sbin:/usr/bin:/usr/sbin");
    // SAFETY: between fork and exec the closure only makes two syscalls, setsid and ioctl, which are
    // async-signal-safe; it allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            rustix::process::ioctl_tiocsctty(std::io::stdin())?;
            Ok(())
        });
    }
    cmd.status()
}
