//! The chunk manifest, `IMAGE.chunks`: what a streamed root checks every byte against.
//!
//! ```text
//! netinit-chunks 1
//! chunk-size 1048576
//! size 268435456
//! sha256 <the whole image, hex>
//! <chunk 0's SHA-256, hex>
//! ...
//! ```
//!
//! One line per chunk; the last may be short. Text, so that an operator can read it and minisign
//! can sign it: signing the manifest signs the whole image, since every chunk's digest is in it.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The first line, with the format's version.
const MAGIC: &str = "netinit-chunks 1";
/// The default chunk: big enough that a 4 GiB image has 4096 of them, small enough that a read
/// that misses waits for one round trip of 1 MiB.
pub const DEFAULT_CHUNK: u64 = 1 << 20;
/// Chunks are whole pages (the block server answers in 4 KiB blocks), and at most 64 MiB.
const CHUNK_MIN: u64 = 4096;
const CHUNK_MAX: u64 = 64 << 20;

pub type Digest32 = [u8; 32];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub chunk_size: u64,
    pub size: u64,
    pub sha256: Digest32,
    pub chunks: Vec<Digest32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("it does not start with \"{MAGIC}\"")]
    Magic,
    #[error("line {line}: {why}")]
    Line { line: usize, why: String },
    #[error("the chunk size {0} is not a multiple of 4096 from 4 KiB to 64 MiB")]
    ChunkSize(u64),
    #[error("it lists {got} chunks, but {size} bytes in chunks of {chunk_size} make {want}")]
    Count { got: usize, want: u64, size: u64, chunk_size: u64 },
}

impl Manifest {
    /// Reads a manifest as [`Manifest::text`] writes it.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
        if lines.next().map(|(_, l)| l) != Some(MAGIC) {
            return Err(ManifestError::Magic);
        }
        let mut field = |name: &str| -> Result<(usize, String), ManifestError> {
            let (line, l) =
                lines.next().ok_or(ManifestError::Line { line: 0, why: format!("no {name} line") })?;
            let value = l
                .strip_prefix(name)
                .and_then(|v| v.strip_prefix(' '))
                .ok_or_else(|| ManifestError::Line { line, why: format!("expected \"{name} ...\"") })?;
            Ok((line, value.to_owned()))
        };
        let number = |(line, v): (usize, String)| {
            v.parse::<u64>().map_err(|_| ManifestError::Line { line, why: format!("{v:?} is not a number") })
        };
        let chunk_size = number(field("chunk-size")?)?;
        let size = number(field("size")?)?;
        let (line, v) = field("sha256")?;
        let sha256 = digest(&v).ok_or(ManifestError::Line { line, why: "not 64 hex digits".into() })?;
        if chunk_size % CHUNK_MIN != 0 || !(CHUNK_MIN..=CHUNK_MAX).contains(&chunk_size) {
            return Err(ManifestError::ChunkSize(chunk_size));
        }
        let mut chunks = Vec::new();
        for (line, l) in lines.filter(|(_, l)| !l.is_empty()) {
            chunks.push(digest(l).ok_or(ManifestError::Line { line, why: "not 64 hex digits".into() })?);
        }
        let want = size.div_ceil(chunk_size);
        if chunks.len() as u64 != want {
            return Err(ManifestError::Count { got: chunks.len(), want, size, chunk_size });
        }
        Ok(Manifest { chunk_size, size, sha256, chunks })
    }

    pub fn text(&self) -> String {
        let mut out = format!(
            "{MAGIC}\nchunk-size {}\nsize {}\nsha256 {}\n",
            self.chunk_size,
            self.size,
            crate::fetch::hex(&self.sha256)
        );
        for c in &self.chunks {
            out.push_str(&crate::fetch::hex(c));
            out.push('\n');
        }
        out
    }

    /// The manifest of what `reader` gives, in chunks of `chunk_size`.
    pub fn of(mut reader: impl Read, chunk_size: u64) -> std::io::Result<Manifest> {
        let mut whole = Sha256::new();
        let mut chunks = Vec::new();
        let mut buf = vec![0u8; chunk_size as usize];
        let mut size = 0u64;
        loop {
            let mut n = 0;
            while n < buf.len() {
                match reader.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if n == 0 {
                break;
            }
            whole.update(&buf[..n]);
            chunks.push(Sha256::digest(&buf[..n]).into());
            size += n as u64;
            if n < buf.len() {
                break;
            }
        }
        Ok(Manifest { chunk_size, size, sha256: whole.finalize().into(), chunks })
    }

    /// The byte range `[start, end)` of chunk `index`.
    pub fn range(&self, index: usize) -> (u64, u64) {
        let start = index as u64 * self.chunk_size;
        (start, (start + self.chunk_size).min(self.size))
    }

    /// The chunks that bytes `[from, from + len)` touch.
    pub fn chunks_of(&self, from: u64, len: u64) -> std::ops::Range<usize> {
        if len == 0 || from >= self.size {
            return 0..0;
        }
        let end = (from + len).min(self.size);
        (from / self.chunk_size) as usize..end.div_ceil(self.chunk_size) as usize
    }

    /// Whether `bytes` are chunk `index`, by its digest; `Err` gives the digest they have.
    pub fn check(&self, index: usize, bytes: &[u8]) -> Result<(), Digest32> {
        let got: Digest32 = Sha256::digest(bytes).into();
        match self.chunks.get(index) {
            Some(want) if *want == got => Ok(()),
            _ => Err(got),
        }
    }
}

fn digest(hex: &str) -> Option<Digest32> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Where the manifest of `image` is: beside it, `IMAGE.chunks`.
pub fn path_for(image: &Path) -> PathBuf {
    let mut p = image.as_os_str().to_owned();
    p.push(".chunks");
    PathBuf::from(p)
}

/// `netinit manifest [--chunk-size BYTES] IMAGE`: writes `IMAGE.chunks` and prints its path.
/// Exit status 0, 1 when the image cannot be read or the manifest written, 2 on bad usage.
pub fn cli(args: &[&str]) -> i32 {
    let (chunk, image) = match args {
        [image] => (Some(DEFAULT_CHUNK), *image),
        ["--chunk-size", n, image] | [image, "--chunk-size", n] => (n.parse().ok(), *image),
        _ => (None, ""),
    };
    let Some(chunk_size) = chunk.filter(|c| c % CHUNK_MIN == 0 && (CHUNK_MIN..=CHUNK_MAX).contains(c)) else {
        eprintln!(
            "usage: netinit manifest [--chunk-size BYTES] IMAGE (BYTES: a multiple of 4096, at most 64 MiB)"
        );
        return 2;
    };
    let image = Path::new(image);
    let made = std::fs::File::open(image).and_then(|f| Manifest::of(std::io::BufReader::new(f), chunk_size));
    let manifest = match made {
        Ok(m) => m,
        Err(e) => {
            eprintln!("netinit: reading {}: {e}", image.display());
            return 1;
        }
    };
    let out = path_for(image);
    if let Err(e) = std::fs::write(&out, manifest.text()) {
        eprintln!("netinit: writing {}: {e}", out.display());
        return 1;
    }
    println!("{}", out.display());
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize, chunk: u64) -> (Vec<u8>, Manifest) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let m = Manifest::of(&data[..], chunk).unwrap();
        (data, m)
    }

    #[test]
    fn round_trips_and_covers_every_byte() {
        let (data, m) = sample(3 * 4096 + 100, 4096);
        assert_eq!((m.size, m.chunks.len()), (12388, 4));
        assert_eq!(m.sha256, <Digest32>::from(Sha256::digest(&data)));
        assert_eq!(Manifest::parse(&m.text()), Ok(m.clone()));
        assert_eq!(m.range(3), (12288, 12388));
        assert!(m.check(3, &data[12288..]).is_ok());
        assert!(m.check(2, &data[12288..]).is_err());
        let text = m.text();
        assert!(text.starts_with("netinit-chunks 1\nchunk-size 4096\nsize 12388\nsha256 "), "{text}");
        // A whole number of chunks has no empty last one; an empty image has none.
        assert_eq!(sample(8192, 4096).1.chunks.len(), 2);
        assert_eq!(sample(0, 4096).1.chunks.len(), 0);
    }

    #[test]
    fn chunks_of_a_read() {
        let (_, m) = sample(10 * 4096 + 1, 8192);
        assert_eq!(m.chunks_of(0, 512), 0..1);
        assert_eq!(m.chunks_of(8191, 2), 0..2);
        assert_eq!(m.chunks_of(8192, 8192), 1..2);
        assert_eq!(m.chunks_of(40960, 4096), 5..6, "clipped at the end of the image");
        assert_eq!(m.chunks_of(1 << 30, 4096), 0..0);
        assert_eq!(m.chunks_of(0, 0), 0..0);
    }

    #[test]
    fn refuses_what_is_not_a_manifest() {
        let (_, m) = sample(5000, 4096);
        let good = m.text();
        let bad = |text: &str, want: &str| {
            let e = Manifest::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} lacks {want:?}");
        };
        bad("<html>", "does not start with \"netinit-chunks 1\"");
        bad(&good.replace("chunk-size 4096", "chunk-size 1000"), "chunk size 1000");
        bad(&good.replace("size 5000", "size 50000"), "lists 2 chunks, but 50000 bytes");
        bad(&good.replace("size 5000", "size five"), "line 3: \"five\" is not a number");
        bad(&good.replace("sha256 ", "sha512 "), "line 4: expected \"sha256 ...\"");
        let short_digest = format!("{}\n", &good[..good.len() - 3]);
        bad(&short_digest, "line 6: not 64 hex digits");
        bad("netinit-chunks 1\nchunk-size 4096\n", "no size line");
        assert!(Manifest::parse(&good.replace('\n', "\r\n")).is_ok(), "CRLF from a Windows server");
    }

    #[test]
    fn the_command_writes_beside_the_image() {
        let dir = std::env::temp_dir().join(format!("netinit-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let image = dir.join("root.squashfs");
        std::fs::write(&image, vec![1u8; 10000]).unwrap();
        let path = image.to_str().unwrap();
        assert_eq!(cli(&["--chunk-size", "4096", path]), 0);
        let m = Manifest::parse(&std::fs::read_to_string(dir.join("root.squashfs.chunks")).unwrap()).unwrap();
        assert_eq!((m.chunk_size, m.size, m.chunks.len()), (4096, 10000, 3));
        assert_eq!(cli(&[path]), 0);
        let m = Manifest::parse(&std::fs::read_to_string(dir.join("root.squashfs.chunks")).unwrap()).unwrap();
        assert_eq!(m.chunk_size, DEFAULT_CHUNK);
        assert_eq!(cli(&["--chunk-size", "1000", path]), 2);
        assert_eq!(cli(&[]), 2);
        assert_eq!(cli(&[dir.join("missing").to_str().unwrap()]), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
