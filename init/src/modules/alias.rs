//! Which packed modules drive a device: the `modalias` a device shows in sysfs (or in its uevent)
//! against the patterns of `modules.alias`, with modprobe's rule: `fnmatch(3)` without flags, so
//! `*`, `?`, `[...]` and `\` escapes, case-sensitive (the kernel writes hex digits in upper case on
//! both sides). Every module whose pattern matches is a driver for the device, as with modprobe.
//!
//! Pure, and bounded: the matcher backtracks only to the last `*`, so a match costs at most
//! pattern length times text length steps, and a device is tried only against the patterns its
//! modalias could match by their literal prefix.

use std::collections::BTreeMap;

/// The longest `modalias` or pattern looked at: sysfs files are at most a page.
pub const MAX_LEN: usize = 4096;

/// `fnmatch(pattern, text, 0)`.
pub fn fnmatch(pattern: &[u8], text: &[u8]) -> bool {
    if pattern.len() > MAX_LEN || text.len() > MAX_LEN {
        return false;
    }
    let (mut p, mut t) = (0usize, 0usize);
    // Where to resume after the last `*`: the pattern just after it, and the text it has eaten up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, t));
                p += 1;
                continue;
            }
            Some(b'?') => Some(1),
            Some(b'[') => class(&pattern[p..], text[t]),
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == text[t]).then_some(2),
            Some(&c) => (c == text[t]).then_some(1),
            None => None,
        };
        match (step, star) {
            (Some(len), _) => {
                p += len;
                t += 1;
            }
            (None, Some((after, eaten))) => {
                // Let the `*` eat one more byte, and try again from just after it.
                p = after;
                t = eaten + 1;
                star = Some((after, eaten + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A bracket expression at the start of `pattern` against the byte `c`: the expression's length
/// when `c` matches it, `None` when not. An unclosed `[` is a plain `[`, as fnmatch reads it.
fn class(pattern: &[u8], c: u8) -> Option<usize> {
    let mut i = 1;
    let negated = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = match pattern.get(i) {
            None => return (c == b'[').then_some(1),
            Some(b']') if !first => break,
            Some(b'\\') if i + 1 < pattern.len() => {
                i += 1;
                pattern[i]
            }
            Some(&lo) => lo,
        };
        first = false;
        i += 1;
        let (range, hi) = match (pattern.get(i), pattern.get(i + 1)) {
            (Some(b'-'), Some(&hi)) if hi != b']' => (true, hi),
            _ => (false, lo),
        };
        if range {
            i += 2;
        }
        matched |= lo <= c && c <= hi;
    }
    (matched != negated).then_some(i + 1)
}

/// The part of a pattern before its first special character: every text it matches starts so.
fn literal_prefix(pattern: &str) -> &str {
    pattern.find(['*', '?', '[', '\\']).map_or(pattern, |i| &pattern[..i])
}

/// `modules.alias`, by each pattern's literal prefix, so that a device is matched with `fnmatch`
/// only against the patterns whose prefix its modalias starts with: a few, among the thousands of
/// a server's drivers (a `pci:v00008086d000010D3...` device against Intel's 10D3 patterns and the
/// class-wide ones, not every Intel NIC's).
#[derive(Debug, Default)]
pub struct AliasIndex {
    /// Literal prefix to (line number, pattern, module).
    by_prefix: BTreeMap<String, Vec<(usize, String, String)>>,
    len: usize,
}

impl AliasIndex {
    /// Reads depmod's format, `alias PATTERN MODULE` per line. Other lines are counted as skipped.
    pub fn parse(text: &str) -> (AliasIndex, usize) {
        let mut index = AliasIndex::default();
        let mut skipped = 0usize;
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let mut words = line.split_whitespace();
            let (Some("alias"), Some(pattern), Some(module), None) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                skipped = skipped.saturating_add(1);
                continue;
            };
            if pattern.len() > MAX_LEN {
                skipped = skipped.saturating_add(1);
                continue;
            }
            let entry = (n, pattern.to_owned(), module.replace('-', "_"));
            index.by_prefix.entry(literal_prefix(pattern).to_owned()).or_default().push(entry);
            index.len += 1;
        }
        (index, skipped)
    }

    /// The number of patterns.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The modules with a pattern that matches `modalias`, each once, in the file's order.
    pub fn drivers(&self, modalias: &str) -> Vec<&str> {
        let ends = modalias.char_indices().map(|(i, _)| i).chain([modalias.len()]);
        let mut matched: Vec<(usize, &str)> = ends
            .filter_map(|end| self.by_prefix.get(&modalias[..end]))
            .flatten()
            .filter(|(_, pattern, _)| fnmatch(pattern.as_bytes(), modalias.as_bytes()))
            .map(|(n, _, module)| (*n, module.as_str()))
            .collect();
        matched.sort_unstable();
        let mut out: Vec<&str> = Vec::new();
        for (_, module) in matched {
            if !out.contains(&module) {
                out.push(module);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_as_fnmatch_reads_them() {
        let cases: &[(&str, &str, bool)] = &[
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("*", "", true),
            ("a*", "a", true),
            ("?", "", false),
            ("a?c", "abc", true),
            ("*a*b*c*", "xxaxxbxxcxx", true),
            ("*a*b*c*", "xxaxxcxxbxx", false),
            ("[abc]x", "bx", true),
            ("[!abc]x", "bx", false),
            ("[^abc]x", "dx", true),
            ("[0-9A-F]", "C", true),
            ("[0-9A-F]", "c", false),
            ("[]]", "]", true),
            ("[a-]", "-", true),
            ("[", "[", true),
            ("[ab", "[ab", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("a\\", "a\\", true),
        ];
        for &(pattern, text, expected) in cases {
            assert_eq!(fnmatch(pattern.as_bytes(), text.as_bytes()), expected, "{pattern:?} on {text:?}");
        }
        let long = "a".repeat(MAX_LEN + 1);
        assert!(!fnmatch(b"*", long.as_bytes()), "past the bound nothing matches");
        // The worst case for naive backtracking stays linear-ish: this returns at once.
        let text = "a".repeat(4000);
        assert!(!fnmatch(format!("{}b", "*a".repeat(100)).as_bytes(), text.as_bytes()));
    }

    /// Lines of Debian 12's 6.1.0-56-amd64 `modules.alias` (from the modules' `.modinfo`), and
    /// modaliases as qemu's devices show them in sysfs.
    const ALIASES: &str = "\
alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000
alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000001v* virtio_net
alias virtio:d00000002v* virtio_blk
alias pci:v*d*sv*sd*bc01sc06i01* ahci
alias pci:v*d*sv*sd*bc0Csc03i30* xhci_pci
alias cpu:type:x86,ven*fam*mod*:feature:*0094* crc32c_intel
alias acpi*:PNP0C0C:* button
alias usb:v0BDAp8153d*dc*dsc*dp*ic02isc06ip00in* r8152
alias usb:v0BDAp8153d*dc*dsc*dp*icFFisc*ip*in* r8152
alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e-duplicate
";

    #[test]
    fn devices_find_their_drivers() {
        let (index, skipped) = AliasIndex::parse(&format!("{ALIASES}garbage\nalias only-two\n"));
        assert_eq!((index.len(), skipped), (12, 2));
        let check =
            |modalias: &str, expected: &[&str]| assert_eq!(index.drivers(modalias), expected, "{modalias}");
        check("pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00", &["e1000"]);
        check("pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00", &["e1000e", "e1000e_duplicate"]);
        check("pci:v00008086d000010d3sv00008086sd00000000bc02sc00i00", &[]);
        check("pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", &["virtio_pci"]);
        check("virtio:d00000001v00001AF4", &["virtio_net"]);
        check("virtio:d00000002v00001AF4", &["virtio_blk"]);
        check("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", &["ahci"]);
        check("pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30", &["xhci_pci"]);
        check("acpi:PNP0C0C:", &["button"]);
        check("usb:v0BDAp8153d3000dc00dsc00dp00icFFisc00ip00in00", &["r8152"]);
        check("cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0001,0002,0094,00E6", &["crc32c_intel"]);
        check("cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0001", &[]);
        check("platform:serial8250", &[]);
        check("no-bus-at-all", &[]);
    }
}
