//! Just enough of ELF64 little-endian (elf(5)) for xtask: a section's bytes by name (a module's
//! `.modinfo`) and whether a binary asks for a program interpreter (a dynamically linked `/init`
//! cannot run in an initramfs without its loader), and the machine it is for (`e_machine`: an
//! aarch64 `/init` or module in an x86_64 initramfs would fail only at boot). Reads from a byte
//! slice; no I/O.

fn u16_at(d: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(i..i.checked_add(2)?)?.try_into().ok()?))
}
fn u32_at(d: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(i..i.checked_add(4)?)?.try_into().ok()?))
}
fn u64_at(d: &[u8], i: usize) -> Option<usize> {
    usize::try_from(u64::from_le_bytes(d.get(i..i.checked_add(8)?)?.try_into().ok()?)).ok()
}

fn check_header(d: &[u8]) -> Result<(), String> {
    if d.get(..4) != Some(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    if d.get(4) != Some(&2) || d.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    Ok(())
}

/// `base + index * size`, or `None` when it overflows (a corrupt header).
fn offset(base: usize, index: usize, size: usize) -> Option<usize> {
    base.checked_add(index.checked_mul(size)?)
}

/// The bytes of section `name`, if the file has it.
pub fn section<'a>(d: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, String> {
    check_header(d)?;
    let bad = || "malformed section headers".to_string();
    let shoff = u64_at(d, 0x28).ok_or_else(bad)?;
    let shentsize = usize::from(u16_at(d, 0x3A).ok_or_else(bad)?);
    let shnum = usize::from(u16_at(d, 0x3C).ok_or_else(bad)?);
    let shstrndx = usize::from(u16_at(d, 0x3E).ok_or_else(bad)?);
    let header = |i: usize| offset(shoff, i, shentsize).ok_or_else(bad);
    let strtab_off = u64_at(d, header(shstrndx)?.saturating_add(0x18)).ok_or_else(bad)?;
    for i in 0..shnum {
        let h = header(i)?;
        let name_off = u32_at(d, h).ok_or_else(bad)? as usize;
        let start = offset(strtab_off, 1, name_off).ok_or_else(bad)?;
        let section_name = d.get(start..).and_then(|s| s.split(|&b| b == 0).next()).ok_or_else(bad)?;
        if section_name == name.as_bytes() {
            let off = u64_at(d, h.saturating_add(0x18)).ok_or_else(bad)?;
            let size = u64_at(d, h.saturating_add(0x20)).ok_or_else(bad)?;
            let end = offset(off, 1, size).ok_or_else(bad)?;
            return d.get(off..end).map(Some).ok_or_else(bad);
        }
    }
    Ok(None)
}

/// The header's `e_machine`: 62 for x86_64, 183 for aarch64 (see `arch::Arch::elf_machine`).
pub fn machine(d: &[u8]) -> Result<u16, String> {
    check_header(d)?;
    u16_at(d, 0x12).ok_or_else(|| "no ELF header".to_string())
}

/// Whether the program headers include `PT_INTERP`.
pub fn has_interpreter(d: &[u8]) -> Result<bool, String> {
    check_header(d)?;
    let bad = || "malformed program headers".to_string();
    let phoff = u64_at(d, 0x20).ok_or_else(bad)?;
    let phentsize = usize::from(u16_at(d, 0x36).ok_or_else(bad)?);
    let phnum = usize::from(u16_at(d, 0x38).ok_or_else(bad)?);
    for i in 0..phnum {
        if u32_at(d, offset(phoff, i, phentsize).ok_or_else(bad)?).ok_or_else(bad)? == 3 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A module's `.modinfo`: NUL-separated `key=value` strings.
pub fn modinfo(d: &[u8]) -> Result<Vec<(String, String)>, String> {
    let info = section(d, ".modinfo")?.ok_or("no .modinfo section: not a kernel module")?;
    Ok(info
        .split(|&b| b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect())
}

/// A minimal ELF64 little-endian relocatable file (`ET_REL`, x86-64) with these sections and a
/// section name table: the shape of a kernel module, for tests.
#[cfg(test)]
pub fn relocatable(sections: &[(&str, &[u8])]) -> Vec<u8> {
    let mut names = vec![0u8];
    let mut name_offsets = Vec::new();
    for (name, _) in sections.iter().copied().chain([(".shstrtab", &[][..])]) {
        name_offsets.push(names.len() as u32);
        names.extend_from_slice(name.as_bytes());
        names.push(0);
    }
    let mut body = vec![0u8; 64];
    let mut headers = vec![0u8; 64]; // section 0: SHN_UNDEF
    let datas = sections.iter().map(|(_, d)| *d).chain([&names[..]]);
    for (i, data) in datas.enumerate() {
        let kind: u32 = if i == sections.len() { 3 } else { 1 }; // SHT_STRTAB, SHT_PROGBITS
        let at = body.len() as u64;
        body.extend_from_slice(data);
        let mut h = Vec::with_capacity(64);
        h.extend_from_slice(&name_offsets[i].to_le_bytes());
        h.extend_from_slice(&kind.to_le_bytes());
        h.extend_from_slice(&[0; 16]); // flags, addr
        h.extend_from_slice(&at.to_le_bytes());
        h.extend_from_slice(&(data.len() as u64).to_le_bytes());
        h.extend_from_slice(&[0; 8]); // link, info
        h.extend_from_slice(&1u64.to_le_bytes()); // addralign
        h.extend_from_slice(&[0; 8]); // entsize
        headers.extend_from_slice(&h);
    }
    while !body.len().is_multiple_of(8) {
        body.push(0);
    }
    let shoff = body.len() as u64;
    let shnum = (sections.len() + 2) as u16;
    let mut header = b"\x7fELF\x02\x01\x01".to_vec();
    header.resize(16, 0);
    header.extend_from_slice(&1u16.to_le_bytes()); // ET_REL
    header.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    header.extend_from_slice(&1u32.to_le_bytes());
    header.extend_from_slice(&[0; 16]); // entry, phoff
    header.extend_from_slice(&shoff.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes()); // flags
    for half in [64u16, 0, 0, 64, shnum, shnum - 1] {
        header.extend_from_slice(&half.to_le_bytes()); // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
    }
    body[..64].copy_from_slice(&header);
    body.extend_from_slice(&headers);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relocatable_with_modinfo() {
        let m = relocatable(&[(".text", b"\xc3"), (".modinfo", b"license=GPL\0depends=a,b\0name=x\0")]);
        assert_eq!(section(&m, ".text").unwrap(), Some(&b"\xc3"[..]));
        assert!(!has_interpreter(&m).unwrap());
        assert_eq!(machine(&m), Ok(62));
        assert_eq!(
            modinfo(&m).unwrap(),
            [("license", "GPL"), ("depends", "a,b"), ("name", "x")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        // Cut short, the section headers are out of the file: an error, not a panic.
        assert_eq!(modinfo(&m[..m.len() - 48]).unwrap_err(), "malformed section headers");
    }

    #[test]
    fn this_test_binary_is_elf() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(section(&me, ".text").unwrap().is_some_and(|t| !t.is_empty()));
        assert_eq!(section(&me, ".no-such-section").unwrap(), None);
        // The host test binary is dynamically linked (glibc): it has an interpreter.
        assert!(has_interpreter(&me).unwrap());
        assert_eq!(machine(&me), Ok(crate::arch::Arch::X86_64.elf_machine()));
        assert_eq!(modinfo(&me).unwrap_err(), "no .modinfo section: not a kernel module");
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        assert_eq!(section(b"#!/bin/sh\n", ".text").unwrap_err(), "not an ELF file");
        let mut truncated = b"\x7fELF\x02\x01".to_vec();
        truncated.resize(70, 0xff);
        assert!(section(&truncated, ".modinfo").is_err());
        assert!(has_interpreter(&truncated).is_err());
    }
}
