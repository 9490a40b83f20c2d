//! The machines netinit is built for, and what differs between them for xtask: the Rust target,
//! the C cross compiler ring needs, the ELF machine a binary must carry, Debian's name for the
//! architecture, and the qemu that boots it. Data only: no I/O.

/// A machine `/init` is built for (`--arch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Arch {
    /// The default.
    #[default]
    X86_64,
    Aarch64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// `--arch`'s value: the Rust name, or Debian's.
    pub fn parse(name: &str) -> Result<Arch, String> {
        Arch::ALL.into_iter().find(|a| a.name() == name || a.debian() == name).ok_or_else(|| {
            format!("no architecture {name:?}: x86_64 (amd64, the default) or aarch64 (arm64)")
        })
    }

    /// What `--arch` and `arch:` call it.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// Debian's architecture name.
    pub fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The Rust target `/init` is built for: static musl.
    pub fn musl_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-musl",
            Arch::Aarch64 => "aarch64-unknown-linux-musl",
        }
    }

    /// The C compiler for ring's C and assembly, and the Debian package that has it. x86_64 uses
    /// musl-gcc (musl's headers); aarch64 Debian's cross gcc, whose glibc headers serve ring's few
    /// freestanding includes, and which also links (Rust's musl target brings its own crt and libc).
    pub fn cc(self) -> (&'static str, &'static str) {
        match self {
            Arch::X86_64 => ("musl-gcc", "musl-tools"),
            Arch::Aarch64 => ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
        }
    }

    /// The `e_machine` of its ELF binaries (elf(5)): EM_X86_64, EM_AARCH64.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => 62,
            Arch::Aarch64 => 183,
        }
    }

    /// The name of an ELF `e_machine`, for messages.
    pub fn machine_name(machine: u16) -> String {
        Arch::ALL
            .into_iter()
            .find(|a| a.elf_machine() == machine)
            .map(|a| a.name().to_owned())
            .unwrap_or_else(|| format!("ELF machine {machine}"))
    }

    /// The qemu that boots it, and the Debian package that has it.
    pub fn qemu(self) -> (&'static str, &'static str) {
        match self {
            Arch::X86_64 => ("qemu-system-x86_64", "qemu-system-x86"),
            Arch::Aarch64 => ("qemu-system-aarch64", "qemu-system-arm"),
        }
    }

    /// The machine qemu emulates.
    pub fn qemu_machine(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &["-cpu", "max"],
            // `pauth-impdef`: TCG's QARMA pointer authentication is most of the CPU time of an
            // arm64 boot; the implementation-defined algorithm is the same for the guest, faster.
            Arch::Aarch64 => &["-M", "virt", "-cpu", "max,pauth-impdef=on"],
        }
    }

    /// The serial console the kernel writes to.
    pub fn console(self) -> &'static str {
        match self {
            Arch::X86_64 => "console=ttyS0,115200",
            Arch::Aarch64 => "console=ttyAMA0",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(Arch::parse("aarch64"), Ok(Arch::Aarch64));
        assert_eq!(Arch::parse("arm64"), Ok(Arch::Aarch64));
        assert_eq!(Arch::parse("x86_64"), Ok(Arch::X86_64));
        assert!(Arch::parse("riscv64").unwrap_err().contains("x86_64 (amd64, the default) or aarch64"));
        assert_eq!(Arch::default(), Arch::X86_64);
        assert_eq!(Arch::machine_name(183), "aarch64");
        assert_eq!(Arch::machine_name(3), "ELF machine 3");
    }
}
