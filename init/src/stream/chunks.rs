//! Which chunk to fetch next, and which reads can be answered: the block server's bookkeeping,
//! pure (no I/O, no clock, no threads), so that its rules are tested on the host.
//!
//! A read waits until every chunk it touches is in. A chunk a waiting read needs is fetched before
//! any other ("on demand"); otherwise the fetchers take the prefetch order, metadata first: the
//! squashfs superblock's chunk, then the chunks of its tables (inodes, directories, fragments,
//! ids, which mksquashfs writes after the data), then the data from the start. A chunk whose
//! fetch failed every attempt fails the reads waiting for it; it is tried again only when a
//! later read asks for it.

use std::collections::VecDeque;
use std::ops::Range;

/// One read the kernel is waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub handle: [u8; 8],
    pub from: u64,
    pub len: u32,
    chunks: Range<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Missing,
    Fetching,
    Have,
    /// Every attempt failed: not prefetched again, fetched again on demand.
    Failed,
}

#[derive(Debug)]
pub struct Chunks {
    state: Vec<State>,
    sizes: Vec<u64>,
    prefetch: VecDeque<usize>,
    demand: VecDeque<usize>,
    waiting: Vec<Read>,
    have: usize,
    /// Bytes fetched in all, and of them for a waiting read.
    pub fetched: u64,
    pub on_demand: u64,
}

/// A chunk a fetcher took: its index, and whether a read is waiting for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub index: usize,
    pub demand: bool,
}

/// The prefetch order of `count` chunks of `chunk_size` bytes: the first, then those holding
/// `metadata` (a byte range), then the rest in order.
pub fn prefetch_order(count: usize, chunk_size: u64, metadata: Option<Range<u64>>) -> Vec<usize> {
    let mut order = Vec::with_capacity(count);
    let mut seen = vec![false; count];
    let mut take = |i: usize, order: &mut Vec<usize>| {
        if i < count && !seen[i] {
            seen[i] = true;
            order.push(i);
        }
    };
    take(0, &mut order);
    if let Some(m) = metadata.filter(|m| m.start < m.end) {
        let first = (m.start / chunk_size) as usize;
        let last = m.end.div_ceil(chunk_size) as usize;
        (first..last.min(count)).for_each(|i| take(i, &mut order));
    }
    (0..count).for_each(|i| take(i, &mut order));
    order
}

/// The byte range of a squashfs image's tables, from its superblock: from the inode table's start
/// to `bytes_used`. `None` when `superblock` is not one.
pub fn squashfs_metadata(superblock: &[u8]) -> Option<Range<u64>> {
    let u64_at = |at: usize| Some(u64::from_le_bytes(superblock.get(at..at + 8)?.try_into().ok()?));
    if superblock.get(0..4)? != b"hsqs" {
        return None;
    }
    let (used, inodes) = (u64_at(40)?, u64_at(64)?);
    (inodes < used).then_some(inodes..used)
}

impl Chunks {
    /// `sizes[i]` is chunk i's length; `order` the prefetch order (a permutation of the indices).
    pub fn new(sizes: Vec<u64>, order: Vec<usize>) -> Chunks {
        Chunks {
            state: vec![State::Missing; sizes.len()],
            sizes,
            prefetch: order.into(),
            demand: VecDeque::new(),
            waiting: Vec::new(),
            have: 0,
            fetched: 0,
            on_demand: 0,
        }
    }

    /// Sets the prefetch order (a permutation of the indices), replacing the one given to `new`.
    pub fn prefetch_in(&mut self, order: Vec<usize>) {
        self.prefetch = order.into();
    }

    pub fn count(&self) -> usize {
        self.state.len()
    }

    pub fn have(&self) -> usize {
        self.have
    }

    pub fn complete(&self) -> bool {
        self.have == self.state.len()
    }

    /// Marks chunks that are already in (chunk 0, fetched before the device exists).
    pub fn mark_have(&mut self, index: usize) {
        if self.state.get(index).is_some_and(|s| *s != State::Have) {
            self.state[index] = State::Have;
            self.have += 1;
        }
    }

    /// A read of `[from, from + len)` touching `chunks`: `Some` when it can be answered now; else it
    /// waits, and the chunks it lacks are fetched on demand, before any prefetch.
    pub fn read(&mut self, handle: [u8; 8], from: u64, len: u32, chunks: Range<usize>) -> Option<Read> {
        let read = Read { handle, from, len, chunks: chunks.clone() };
        let mut ready = true;
        for i in chunks.filter(|i| *i < self.state.len()) {
            match self.state[i] {
                State::Have => {}
                State::Fetching => ready = false,
                State::Missing | State::Failed => {
                    ready = false;
                    if !self.demand.contains(&i) {
                        self.demand.push_back(i);
                    }
                }
            }
        }
        if ready {
            return Some(read);
        }
        self.waiting.push(read);
        None
    }

    /// The next chunk to fetch, marked as being fetched: one a read waits for, else (unless
    /// `demand_only`) the next in the prefetch order. `None`: nothing to do now.
    pub fn take(&mut self, demand_only: bool) -> Option<Taken> {
        while let Some(i) = self.demand.pop_front() {
            if matches!(self.state[i], State::Missing | State::Failed) {
                self.state[i] = State::Fetching;
                return Some(Taken { index: i, demand: true });
            }
        }
        if demand_only {
            return None;
        }
        while let Some(i) = self.prefetch.pop_front() {
            if self.state[i] == State::Missing {
                self.state[i] = State::Fetching;
                return Some(Taken { index: i, demand: false });
            }
        }
        None
    }

    /// Chunk `t` is in: the reads that can now be answered.
    pub fn done(&mut self, t: Taken) -> Vec<Read> {
        if self.state[t.index] != State::Have {
            self.state[t.index] = State::Have;
            self.have += 1;
            self.fetched += self.sizes[t.index];
            if t.demand {
                self.on_demand += self.sizes[t.index];
            }
        }
        let state = &self.state;
        let (ready, wait): (Vec<Read>, Vec<Read>) = self
            .waiting
            .drain(..)
            .partition(|r| r.chunks.clone().all(|i| state.get(i).is_none_or(|s| *s == State::Have)));
        self.waiting = wait;
        ready
    }

    /// Every attempt at chunk `index` failed: the reads waiting for it, which fail.
    pub fn failed(&mut self, index: usize) -> Vec<Read> {
        self.state[index] = State::Failed;
        let (failed, wait): (Vec<Read>, Vec<Read>) =
            self.waiting.drain(..).partition(|r| r.chunks.contains(&index));
        self.waiting = wait;
        failed
    }

    /// Chunks that failed every attempt and no read has asked for since.
    pub fn failed_count(&self) -> usize {
        self.state.iter().filter(|s| **s == State::Failed).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(n: usize) -> Chunks {
        Chunks::new(vec![10; n], (0..n).collect())
    }

    #[test]
    fn metadata_comes_first() {
        assert_eq!(prefetch_order(6, 100, Some(420..590)), vec![0, 4, 5, 1, 2, 3]);
        assert_eq!(prefetch_order(3, 100, None), vec![0, 1, 2]);
        assert_eq!(prefetch_order(3, 100, Some(250..9999)), vec![0, 2, 1], "clipped to the image");
        let mut sb = vec![0u8; 96];
        sb[0..4].copy_from_slice(b"hsqs");
        sb[40..48].copy_from_slice(&5000u64.to_le_bytes());
        sb[64..72].copy_from_slice(&4000u64.to_le_bytes());
        assert_eq!(squashfs_metadata(&sb), Some(4000..5000));
        sb[0] = b'x';
        assert_eq!(squashfs_metadata(&sb), None);
        assert_eq!(squashfs_metadata(&sb[..50]), None);
    }

    #[test]
    fn reads_wait_for_their_chunks_which_jump_the_queue() {
        let mut c = chunks(5);
        c.mark_have(0);
        assert!(c.read(*b"aaaaaaaa", 0, 10, 0..1).is_some(), "chunk 0 is in");
        assert_eq!(c.take(false), Some(Taken { index: 1, demand: false }));
        assert!(c.read(*b"bbbbbbbb", 25, 20, 2..5).is_none());
        assert_eq!(c.take(true), Some(Taken { index: 2, demand: true }));
        assert_eq!(c.take(false), Some(Taken { index: 3, demand: true }));
        assert_eq!(c.take(false), Some(Taken { index: 4, demand: true }));
        assert_eq!(c.take(false), None, "all taken");
        // A read of a chunk being prefetched waits for it without fetching it twice.
        assert!(c.read(*b"cccccccc", 10, 5, 1..2).is_none());
        assert_eq!(c.take(false), None);
        assert!(c.done(Taken { index: 3, demand: true }).is_empty());
        assert_eq!(c.done(Taken { index: 1, demand: false }).len(), 1, "the read of chunk 1");
        assert!(c.done(Taken { index: 2, demand: true }).is_empty());
        let ready = c.done(Taken { index: 4, demand: true });
        assert_eq!(ready.iter().map(|r| r.handle).collect::<Vec<_>>(), vec![*b"bbbbbbbb"]);
        assert!(c.complete());
        assert_eq!((c.fetched, c.on_demand), (40, 30));
    }

    #[test]
    fn a_failed_chunk_fails_its_reads_and_is_fetched_again_on_demand_only() {
        let mut c = chunks(3);
        assert!(c.read(*b"aaaaaaaa", 12, 4, 1..2).is_none());
        let t = c.take(false).unwrap();
        assert_eq!(t, Taken { index: 1, demand: true });
        assert_eq!(c.failed(1).len(), 1);
        assert_eq!(c.failed_count(), 1);
        assert_eq!(c.take(false).map(|t| t.index), Some(0));
        assert_eq!(c.take(false).map(|t| t.index), Some(2), "the failed chunk is not prefetched again");
        assert_eq!(c.take(false), None);
        assert!(c.read(*b"bbbbbbbb", 12, 4, 1..2).is_none());
        assert_eq!(c.take(true), Some(Taken { index: 1, demand: true }), "but a new read asks for it");
        assert_eq!(c.done(Taken { index: 1, demand: true }).len(), 1);
        assert_eq!(c.failed_count(), 0);
    }
}
