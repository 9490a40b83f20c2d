//! SHA-256 of the image when `modloop_sha256=` asks for it, and its minisign signature check when
//! there is one, on their own thread, so hashing overlaps receiving and writing instead of adding to
//! them: the download loop reads into a buffer from a small recycled pool, writes it to the file,
//! and hands it over; the hashing thread gives it back. Bytes are hashed in the order they are
//! handed over. Where a thread cannot be started, it hashes inline; with nothing to compute, there
//! is no thread and a buffer is only read into and written out.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use minisign_verify::{PublicKey, Signature, StreamVerifier};
use sha2::{Digest, Sha256};

/// Buffers in flight: enough to keep both sides busy, little enough to bound memory (1 MiB, which
/// `/init`'s peak RSS shows: 8 buffers took it to 7.7 MiB under TCG with a digest to compute).
const POOL: usize = 4;

/// A key and the signature it must verify (minisign's prehashed Ed25519 over BLAKE2b-512).
pub struct Check {
    pub key: PublicKey,
    pub signature: Signature,
}

/// What hashing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// The SHA-256, when it was asked for.
    pub sha256: Option<[u8; 32]>,
    /// The signature check's result, when there was a signature to check.
    pub signature: Option<Result<(), String>>,
}

/// What to compute: SHA-256 or not, and the signature check if there is one.
#[derive(Clone, Copy)]
struct Want {
    sha256: bool,
    check: Option<&'static Check>,
}

/// SHA-256 when asked for and, with a [`Check`], the signature verifier.
struct State {
    sha: Option<Sha256>,
    verifier: Option<StreamVerifier<'static>>,
}

impl State {
    fn new(want: Want) -> Self {
        // `verify_stream` fails only for another key id or a legacy signature; `finish` reports it.
        let verifier = want.check.and_then(|c| c.key.verify_stream(&c.signature).ok());
        State { sha: want.sha256.then(Sha256::new), verifier }
    }

    fn update(&mut self, bytes: &[u8]) {
        if let Some(sha) = &mut self.sha {
            sha.update(bytes);
        }
        if let Some(v) = &mut self.verifier {
            v.update(bytes);
        }
    }

    /// The digests so far; the state starts again empty.
    fn finish(&mut self, want: Want) -> Digests {
        let sha256 = self.sha.take().map(|sha| sha.finalize().into());
        let signature = match (want.check, self.verifier.as_mut()) {
            (None, _) => None,
            (Some(_), Some(v)) => Some(v.finalize().map_err(|e| e.to_string())),
            (Some(_), None) => {
                Some(Err("the key does not match the signature, or it is a legacy one".into()))
            }
        };
        *self = State::new(want);
        Digests { sha256, signature }
    }
}

enum Msg {
    Data(Vec<u8>, usize),
    Reset,
    Finish(SyncSender<Digests>),
}

pub struct Hasher {
    inner: Inner,
    size: usize,
    want: Want,
}

enum Inner {
    Thread {
        tx: SyncSender<Msg>,
        free: Receiver<Vec<u8>>,
    },
    Inline {
        state: Box<State>,
        buf: Option<Vec<u8>>,
    },
    /// Nothing to compute: one buffer, read into and written out.
    Nothing {
        buf: Option<Vec<u8>>,
    },
    /// The thread stopped: the digest cannot be completed.
    Lost,
}

impl Hasher {
    /// A hasher whose buffers are `size` bytes, computing SHA-256 if `sha256` and checking
    /// `check`'s signature if given.
    pub fn new(size: usize, sha256: bool, check: Option<Check>) -> Hasher {
        // The streaming verifier borrows its key and signature. They are leaked, a few hundred bytes
        // once per boot, so that the verifier can move into the thread with them.
        let check: Option<&'static Check> = check.map(|c| &*Box::leak(Box::new(c)));
        let want = Want { sha256, check };
        if !sha256 && check.is_none() {
            return Hasher { inner: Inner::Nothing { buf: Some(vec![0u8; size]) }, size, want };
        }
        let (tx, rx) = sync_channel::<Msg>(POOL);
        let (give_back, free) = sync_channel::<Vec<u8>>(POOL);
        for _ in 0..POOL {
            // The channel holds POOL buffers, so these sends cannot block or fail.
            let _ = give_back.try_send(vec![0u8; size]);
        }
        let spawned = std::thread::Builder::new().name("sha256".into()).spawn(move || {
            let mut state = State::new(want);
            for msg in rx {
                match msg {
                    Msg::Data(buf, n) => {
                        state.update(&buf[..n]);
                        if give_back.send(buf).is_err() {
                            return;
                        }
                    }
                    Msg::Reset => state = State::new(want),
                    Msg::Finish(reply) => {
                        let _ = reply.send(state.finish(want));
                    }
                }
            }
        });
        let inner = match spawned {
            Ok(_) => Inner::Thread { tx, free },
            Err(e) => {
                log::warn!("hashing on the download's thread: cannot start another ({e})");
                Inner::Inline { state: Box::new(State::new(want)), buf: Some(vec![0u8; size]) }
            }
        };
        Hasher { inner, size, want }
    }

    /// A buffer to read into.
    pub fn buffer(&mut self) -> Vec<u8> {
        match &mut self.inner {
            Inner::Thread { free, .. } => free.recv().unwrap_or_else(|_| vec![0u8; self.size]),
            Inner::Inline { buf, .. } | Inner::Nothing { buf } => {
                buf.take().unwrap_or_else(|| vec![0u8; self.size])
            }
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
            Inner::Inline { state, buf: slot } => {
                state.update(&buf[..n]);
                *slot = Some(buf);
            }
            Inner::Nothing { buf: slot } => *slot = Some(buf),
            Inner::Lost => {}
        }
    }

    /// Forgets everything hashed so far (the download starts again from byte 0).
    pub fn reset(&mut self) {
        match &mut self.inner {
            Inner::Thread { tx, .. } => {
                // If the thread is gone, `finish` says so and the download fails: nothing to do here.
                let _ = tx.send(Msg::Reset);
            }
            Inner::Inline { state, .. } => **state = State::new(self.want),
            Inner::Nothing { .. } | Inner::Lost => {}
        }
    }

    /// The digests of everything handed over since the last reset; `None` if the hashing thread is
    /// gone, which would leave them incomplete.
    pub fn finish(&mut self) -> Option<Digests> {
        match &mut self.inner {
            Inner::Thread { tx, .. } => {
                let (reply, answer) = sync_channel(1);
                tx.send(Msg::Finish(reply)).ok().and_then(|()| answer.recv().ok())
            }
            Inner::Inline { state, .. } => Some(state.finish(self.want)),
            Inner::Nothing { .. } => Some(Digests { sha256: None, signature: None }),
            Inner::Lost => None,
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A key made with `minisign -G -W`, and its signature of [`signed_data`] made with `minisign -S`.
    pub const KEY: &str = include_str!("testdata/test.pub");
    pub const SIGNATURE: &str = include_str!("testdata/data.bin.minisig");

    /// The bytes [`SIGNATURE`] signs: 300000 bytes, `i * 7 % 251`.
    pub fn signed_data() -> Vec<u8> {
        (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    pub fn check() -> Check {
        Check { key: PublicKey::decode(KEY).unwrap(), signature: Signature::decode(SIGNATURE).unwrap() }
    }

    fn feed(h: &mut Hasher, data: &[u8]) {
        for chunk in data.chunks(1000) {
            let mut buf = h.buffer();
            buf[..chunk.len()].copy_from_slice(chunk);
            h.update(buf, chunk.len());
        }
    }

    #[test]
    fn same_digest_as_sha256_in_one_go() {
        let data = signed_data();
        let mut h = Hasher::new(1000, true, None);
        feed(&mut h, b"junk before a restart");
        h.reset();
        feed(&mut h, &data);
        let expected: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(h.finish(), Some(Digests { sha256: Some(expected), signature: None }));
        feed(&mut h, b"abc");
        let abc = Digests { sha256: Some(Sha256::digest(b"abc").into()), signature: None };
        assert_eq!(h.finish(), Some(abc), "finish starts a new digest");
    }

    #[test]
    fn only_what_is_asked_for() {
        let data = signed_data();
        let mut h = Hasher::new(1000, false, None);
        feed(&mut h, &data);
        assert_eq!(h.finish(), Some(Digests { sha256: None, signature: None }));
        let mut h = Hasher::new(1000, false, Some(check()));
        feed(&mut h, &data);
        assert_eq!(h.finish(), Some(Digests { sha256: None, signature: Some(Ok(())) }));
    }

    #[test]
    fn signatures_verify_while_streaming() {
        let data = signed_data();
        let mut h = Hasher::new(1000, true, Some(check()));
        feed(&mut h, b"junk before a restart");
        h.reset();
        feed(&mut h, &data);
        assert_eq!(h.finish().unwrap().signature, Some(Ok(())));
        let mut tampered = data.clone();
        tampered[123_456] ^= 1;
        feed(&mut h, &tampered);
        let got = h.finish().unwrap().signature.unwrap();
        assert!(got.is_err(), "a flipped bit fails the signature");
        feed(&mut h, &data[..data.len() - 1]);
        assert!(h.finish().unwrap().signature.unwrap().is_err(), "a short file fails it too");
    }
}
