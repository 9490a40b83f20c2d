//! One qemu VM with its serial console read line by line: boot the real kernel and initramfs, wait
//! for console lines with a deadline, and kill the VM (only the qemu this started, by its handle)
//! when done. TCG by default; `NETINIT_KVM=1` opts in to KVM where it works (x86_64 guests only).
//! x86_64 guests run on qemu's default PC; aarch64 guests on `-M virt` (see `arch::Arch::qemu`).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Instant;

use crate::arch::Arch;

/// How the VM boots.
pub enum Boot {
    /// qemu loads the kernel and initramfs itself.
    Kernel { kernel: PathBuf, initrd: PathBuf, append: String },
    /// The NIC's iPXE option ROM boots from the network (`-boot n`).
    Network,
}

/// The machine's firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS, qemu's default.
    Bios,
    /// OVMF (Debian's `ovmf`), UEFI as PXE hardware runs it today; on aarch64 EDK2's ArmVirtQemu
    /// (`qemu-efi-aarch64`), which boots `-kernel` through its EFI stub.
    Uefi,
}

pub struct Spec {
    /// The guest's machine.
    pub arch: Arch,
    pub boot: Boot,
    pub firmware: Firmware,
    pub memory_mb: u32,
    /// qemu's `-netdev`/`-device` arguments.
    pub nics: Vec<String>,
    /// The network namespace to run qemu in, if any.
    pub netns: Option<String>,
}

impl Spec {
    /// An x86_64 BIOS guest booting `kernel` with `-kernel`, one virtio NIC on qemu's user network
    /// (no NIC ROM): the benchmarks' machine.
    pub fn user_net(kernel: &Path, initrd: &Path, append: String, memory_mb: u32) -> Spec {
        Spec {
            arch: Arch::X86_64,
            boot: Boot::Kernel { kernel: kernel.to_owned(), initrd: initrd.to_owned(), append },
            firmware: Firmware::Bios,
            memory_mb,
            nics: ["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,romfile="]
                .map(String::from)
                .to_vec(),
            netns: None,
        }
    }
}

pub struct Vm {
    child: Child,
    lines: Receiver<String>,
    /// Every console line so far.
    pub transcript: Vec<String>,
    echo: bool,
    /// qemu's human monitor, on a unix socket.
    monitor: PathBuf,
}

fn pump(source: impl Read + Send + 'static, prefix: &'static str, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(source);
        let mut buf = Vec::new();
        while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n']).replace('\r', "");
            if tx.send(format!("{prefix}{line}")).is_err() {
                break;
            }
            buf.clear();
        }
    });
}

impl Vm {
    pub fn boot(spec: &Spec, echo: bool) -> Result<Vm, String> {
        let kvm = std::env::var_os("NETINIT_KVM").is_some_and(|v| v == "1") && spec.arch == Arch::X86_64;
        let accel = if kvm { "kvm" } else { "tcg" };
        let qemu = spec.arch.qemu().0;
        let mut cmd = match &spec.netns {
            // `ip netns exec` execs qemu in place, so the child handle is qemu's own.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, qemu]);
                c
            }
            None => Command::new(qemu),
        };
        cmd.args(["-accel", accel])
            .args(spec.arch.qemu_machine())
            .args(["-smp", "1", "-m", &spec.memory_mb.to_string()])
            .args(["-nodefaults", "-no-reboot", "-display", "none", "-serial", "stdio"]);
        match (spec.firmware, spec.arch) {
            (Firmware::Bios, _) => {}
            (Firmware::Uefi, Arch::X86_64) => {
                cmd.arg("-bios").arg(crate::host::OVMF);
            }
            (Firmware::Uefi, Arch::Aarch64) => {
                cmd.arg("-bios").arg(crate::host::QEMU_EFI_AARCH64);
            }
        }
        match &spec.boot {
            Boot::Kernel { kernel, initrd, append } => {
                cmd.arg("-kernel").arg(kernel).arg("-initrd").arg(initrd).args(["-append", append]);
            }
            Boot::Network => {
                cmd.args(["-boot", "n"]);
            }
        }
        let monitor =
            std::env::temp_dir().join(format!("netinit-qemu-{}-{}.monitor", std::process::id(), unique()));
        cmd.args(["-monitor", &format!("unix:{},server,nowait", monitor.display())]);
        cmd.args(&spec.nics).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("starting {qemu}: {e}"))?;
        let (tx, lines) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            pump(out, "", tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            pump(err, "qemu: ", tx);
        }
        Ok(Vm { child, lines, transcript: Vec::new(), echo, monitor })
    }

    /// The next console line before `deadline`: `Ok(None)` when qemu has exited.
    fn next_line(&mut self, deadline: Instant) -> Result<Option<String>, String> {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(wait) {
            Ok(line) => {
                if self.echo {
                    println!("{line}");
                }
                self.transcript.push(line.clone());
                Ok(Some(line))
            }
            Err(RecvTimeoutError::Disconnected) => Ok(None),
            Err(RecvTimeoutError::Timeout) => Err("timed out".into()),
        }
    }

    /// Waits for a console line containing `needle`.
    pub fn expect(&mut self, needle: &str, deadline: Instant) -> Result<String, String> {
        loop {
            match self.next_line(deadline) {
                Ok(Some(line)) if line.contains(needle) => return Ok(line),
                Ok(Some(_)) => {}
                Ok(None) => return Err(format!("qemu exited before the console showed {needle:?}")),
                Err(e) => return Err(format!("{e} waiting for {needle:?}")),
            }
        }
    }

    /// Runs one command of qemu's human monitor (`set_link n1 on`), waiting up to 5 s for the socket.
    pub fn monitor(&mut self, command: &str) -> Result<(), String> {
        let mut stream = None;
        for _ in 0..50 {
            match std::os::unix::net::UnixStream::connect(&self.monitor) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
        let mut stream = stream.ok_or_else(|| format!("no qemu monitor at {}", self.monitor.display()))?;
        stream.write_all(format!("{command}\n").as_bytes()).map_err(|e| format!("monitor: {e}"))?;
        // The monitor echoes a banner and a prompt; wait for the command's own prompt before closing.
        stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).map_err(|e| e.to_string())?;
        let mut seen = Vec::new();
        let mut buf = [0u8; 512];
        while seen.windows(6).filter(|w| w == b"(qemu)").count() < 2 {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        Ok(())
    }

    /// Types `text` and Enter on the serial console.
    pub fn send(&mut self, text: &str) -> Result<(), String> {
        let stdin = self.child.stdin.as_mut().ok_or("qemu's stdin is closed")?;
        stdin
            .write_all(format!("{text}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("typing into the console: {e}"))
    }

    /// Reads the console until qemu exits (power off, or reboot under `-no-reboot`).
    pub fn wait_exit(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            match self.next_line(deadline) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    let _ = self.child.wait();
                    return Ok(());
                }
                Err(e) => return Err(format!("{e} waiting for the VM to power off or reboot")),
            }
        }
    }
}

/// A number no other VM of this process has, for socket names.
fn unique() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.monitor);
        // Only this VM's own qemu, through its handle.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
