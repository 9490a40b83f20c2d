//! SHA-256 of the image on its own thread, so hashing overlaps receiving and writing instead of
//! adding to them: the download loop reads into a buffer from a small recycled pool, writes it to
//! the file, and hands it over; the hashing thread gives it back. Bytes are hashed in the order
//! they are handed over. Where a thread cannot be started, it hashes inline.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use sha2::{Digest, Sha256};

/// Buffers in flight: enough to keep both sides busy, little enough to bound memory (2 MiB).
const POOL: usize = 8;

enum Msg {
    Data(Vec<u8>, usize),
    Reset,
    Finish(SyncSender<[u8; 32]>),
}

pub struct Hasher {
    inner: Inner,
    size: usize,
}

enum Inner {
    Thread {
        tx: SyncSender<Msg>,
        free: Receiver<Vec<u8>>,
    },
    Inline {
        sha: Sha256,
        buf: Option<Vec<u8>>,
    },
    /// The thread stopped: the digest cannot be completed.
    Lost,
}

impl Hasher {
    /// A hasher whose buffers are `size` bytes.
    pub fn new(size: usize) -> Hasher {
        let (tx, rx) = sync_channel::<Msg>(POOL);
        let (give_back, free) = sync_channel::<Vec<u8>>(POOL);
        for _ in 0..POOL {
            // The channel holds POOL buffers, so these sends cannot block or fail.
            let _ = give_back.try_send(vec![0u8; size]);
        }
        let spawned = std::thread::Builder::new().name("sha256".into()).spawn(move || {
            let mut sha = Sha256::new();
            for msg in rx {
                match msg {
                    Msg::Data(buf, n) => {
                        sha.update(&buf[..n]);
                        if give_back.send(buf).is_err() {
                            return;
                        }
                    }
                    Msg::Reset => sha = Sha256::new(),
                    Msg::Finish(reply) => {
                        let _ = reply.send(std::mem::take(&mut sha).finalize().into());
                    }
                }
            }
        });
        let inner = match spawned {
            Ok(_) => Inner::Thread { tx, free },
            Err(e) => {
                log::warn!("hashing on the download's thread: cannot start another ({e})");
                Inner::Inline { sha: Sha256::new(), buf: Some(vec![0u8; size]) }
            }
        };
        Hasher { inner, size }
    }

    /// A buffer to read into.
    pub fn buffer(&mut self) -> Vec<u8> {
        match &mut self.inner {
            Inner::Thread { free, .. } => free.recv().unwrap_or_else(|_| vec![0u8; self.size]),
            Inner::Inline { buf, .. } => buf.take().unwrap_or_else(|| vec![0u8; self.size]),
            Inner::Lost => vec![0u8; self.size],
        }
    }

    /// Hashes the first `n` bytes of `buf`, which came from [`Hasher::buffer`].
    pub fn update(&mut self, buf: Vec<u8>, n: usize) {
        match &mut self.inner {
            Inner::Thread { tx, .. } => {
                if tx.send(Msg::Data(buf, n)).is_err() {
                    log::error!("the hashing thread stopped; the image's digest cannot be computed");
                    self.inner = Inner::Lost;
                }
            }
            Inner::Inline { sha, buf: slot } => {
                sha.update(&buf[..n]);
                *slot = Some(buf);
            }
            Inner::Lost => {}
        }
    }

    /// Forgets everything hashed so far (the download starts again from byte 0).
    pub fn reset(&mut self) {
        match &mut self.inner {
            Inner::Thread { tx, .. } => {
                let _ = tx.send(Msg::Reset);
            }
            Inner::Inline { sha, .. } => *sha = Sha256::new(),
            Inner::Lost => {}
        }
    }

    /// The digest of everything handed over since the last reset; `None` if the hashing thread is
    /// gone, which would leave the digest incomplete.
    pub fn finish(&mut self) -> Option<[u8; 32]> {
        match &mut self.inner {
            Inner::Thread { tx, .. } => {
                let (reply, answer) = sync_channel(1);
                tx.send(Msg::Finish(reply)).ok().and_then(|()| answer.recv().ok())
            }
            Inner::Inline { sha, .. } => Some(std::mem::take(sha).finalize().into()),
            Inner::Lost => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(h: &mut Hasher, data: &[u8]) {
        for chunk in data.chunks(1000) {
            let mut buf = h.buffer();
            buf[..chunk.len()].copy_from_slice(chunk);
            h.update(buf, chunk.len());
        }
    }

    #[test]
    fn same_digest_as_sha256_in_one_go() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut h = Hasher::new(1000);
        feed(&mut h, b"junk before a restart");
        h.reset();
        feed(&mut h, &data);
        let expected: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(h.finish(), Some(expected));
        feed(&mut h, b"abc");
        assert_eq!(h.finish(), Some(<[u8; 32]>::from(Sha256::digest(b"abc"))), "finish starts a new digest");
    }
}
