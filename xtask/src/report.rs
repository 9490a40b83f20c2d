//! The packing report `cargo xtask cpio` prints, so an operator sees what an initramfs weighs and
//! what to drop: its size compressed (each archive) and uncompressed, the modules and firmware in
//! it, and the ten biggest files with their share. Pure: it reads the archive's entries as paths and
//! sizes, and renders text; it reads no file and writes nothing.

/// How many of the biggest files the report names.
pub const BIGGEST: usize = 10;

/// What an initramfs (one archive, or the pair `--split` writes) holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Each archive written and its compressed size.
    pub archives: Vec<(String, u64)>,
    /// The cpio bytes, headers included, before compression (all archives).
    pub uncompressed: u64,
    /// Which compression, and why (empty: not said).
    pub compression: String,
    pub modules: usize,
    pub modules_size: u64,
    pub firmware: usize,
    pub firmware_size: u64,
    /// The biggest files, biggest first (ties by path), at most [`BIGGEST`].
    pub biggest: Vec<(String, u64)>,
}

/// The report over `entries` (each file's archive path and size; directories and devices may be
/// given with size 0), written as `archives` of `uncompressed` cpio bytes in all.
pub fn summarize<'a>(
    entries: impl IntoIterator<Item = (&'a str, u64)>,
    archives: Vec<(String, u64)>,
    uncompressed: u64,
) -> Report {
    let mut r = Report {
        archives,
        uncompressed,
        compression: String::new(),
        modules: 0,
        modules_size: 0,
        firmware: 0,
        firmware_size: 0,
        biggest: Vec::new(),
    };
    let mut files: Vec<(String, u64)> = Vec::new();
    for (path, size) in entries {
        if path.starts_with("lib/modules/") && path.ends_with(".ko") {
            r.modules += 1;
            r.modules_size += size;
        } else if path.starts_with("lib/firmware/") && size > 0 {
            r.firmware += 1;
            r.firmware_size += size;
        }
        if size > 0 {
            files.push((path.to_owned(), size));
        }
    }
    files.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    files.truncate(BIGGEST);
    r.biggest = files;
    r
}

/// Whole KiB, rounded down as the build's other lines are.
fn kib(bytes: u64) -> u64 {
    bytes / 1024
}

impl Report {
    /// The compressed size of all archives together.
    pub fn compressed(&self) -> u64 {
        self.archives.iter().map(|(_, size)| size).sum()
    }

    /// The report as lines for the terminal.
    pub fn render(&self) -> String {
        let mut out = format!(
            "xtask: initramfs {} KiB compressed, {} KiB uncompressed",
            kib(self.compressed()),
            kib(self.uncompressed)
        );
        if self.archives.len() > 1 {
            let each: Vec<String> =
                self.archives.iter().map(|(name, size)| format!("{name} {} KiB", kib(*size))).collect();
            out.push_str(&format!(" ({})", each.join(", ")));
        }
        if !self.compression.is_empty() {
            out.push_str(&format!("\nxtask: compressed with {}", self.compression));
        }
        out.push_str(&format!(
            "\nxtask: {} modules ({} KiB), {} firmware files ({} KiB)\n",
            self.modules,
            kib(self.modules_size),
            self.firmware,
            kib(self.firmware_size)
        ));
        out.push_str(&format!("xtask: the {} biggest files, uncompressed:\n", self.biggest.len()));
        for (path, size) in &self.biggest {
            // Per mille, rounded, shown as a percentage with one decimal.
            let share = (size * 1000 + self.uncompressed / 2).checked_div(self.uncompressed).unwrap_or(0);
            out.push_str(&format!("  {:>7} KiB {:>3}.{}%  {path}\n", kib(*size), share / 10, share % 10));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_modules_and_firmware_and_ranks_the_biggest() {
        let entries = [
            ("init", 2_000_000),
            ("dev", 0),
            ("dev/console", 0),
            ("lib/modules/6.1/kernel/a.ko", 300_000),
            ("lib/modules/6.1/kernel/b.ko", 100_000),
            ("lib/modules/6.1/modules.dep", 500),
            ("lib/firmware/rtl_nic/x.fw", 4096),
            ("lib/firmware/rtl_nic", 0),
            ("bin/busybox", 1_000_000),
            ("bin/sh", 7),
        ];
        let r = summarize(entries, vec![("i.cpio.gz".into(), 1_500_000)], 4_000_000);
        assert_eq!((r.modules, r.modules_size), (2, 400_000));
        assert_eq!((r.firmware, r.firmware_size), (1, 4096));
        let names: Vec<&str> = r.biggest.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            names,
            [
                "init",
                "bin/busybox",
                "lib/modules/6.1/kernel/a.ko",
                "lib/modules/6.1/kernel/b.ko",
                "lib/firmware/rtl_nic/x.fw",
                "lib/modules/6.1/modules.dep",
                "bin/sh"
            ]
        );
        assert_eq!(
            r.render(),
            "xtask: initramfs 1464 KiB compressed, 3906 KiB uncompressed
xtask: 2 modules (390 KiB), 1 firmware files (4 KiB)
xtask: the 7 biggest files, uncompressed:
     1953 KiB  50.0%  init
      976 KiB  25.0%  bin/busybox
      292 KiB   7.5%  lib/modules/6.1/kernel/a.ko
       97 KiB   2.5%  lib/modules/6.1/kernel/b.ko
        4 KiB   0.1%  lib/firmware/rtl_nic/x.fw
        0 KiB   0.0%  lib/modules/6.1/modules.dep
        0 KiB   0.0%  bin/sh
"
        );
    }

    #[test]
    fn at_most_ten_and_each_archive_named() {
        let names: Vec<String> = (0..15).map(|i| format!("lib/modules/r/m{i:02}.ko")).collect();
        let entries = names.iter().enumerate().map(|(i, n)| (n.as_str(), 1000 + i as u64));
        let r = summarize(entries, vec![("a.cpio.gz".into(), 2048), ("a-modules.cpio.gz".into(), 1024)], 0);
        assert_eq!(r.biggest.len(), BIGGEST);
        assert_eq!(r.biggest[0], ("lib/modules/r/m14.ko".into(), 1014));
        assert_eq!(r.compressed(), 3072);
        let text = r.render();
        assert!(text.starts_with(
            "xtask: initramfs 3 KiB compressed, 0 KiB uncompressed (a.cpio.gz 2 KiB, a-modules.cpio.gz 1 KiB)\n"
        ));
        assert!(text.contains("0.0%  lib/modules/r/m14.ko"), "no share of an empty archive: {text}");
        let r = Report { compression: "zstd -19: config-r has CONFIG_RD_ZSTD=y".into(), ..r };
        assert!(r.render().contains(
            "(a.cpio.gz 2 KiB, a-modules.cpio.gz 1 KiB)\nxtask: compressed with zstd -19: config-r has CONFIG_RD_ZSTD=y\nxtask: 15 modules"
        ));
    }
}
