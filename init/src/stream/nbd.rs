//! The kernel's NBD driver from both sides: its netlink interface (genetlink family `nbd`,
//! <linux/nbd-netlink.h>), which attaches a connected socket to `/dev/nbdN` and detaches it, and the
//! transmission protocol on that socket (<linux/nbd.h>): 28-byte requests in, 16-byte replies
//! (and the data of a read) out, both big-endian.
//!
//! Netlink, not the `NBD_SET_SOCK` + `NBD_DO_IT` ioctls: `NBD_DO_IT` blocks a thread in the kernel
//! for the life of the device and returns when that thread takes a signal, dropping the root's
//! storage. With `NBD_CMD_CONNECT` the kernel holds the socket itself; the server only reads and
//! writes it. No timeout is set: a request the server has not answered yet (a network outage, a
//! paused server) is waited for, never failed, as a local disk's would be.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::net::netlink::rtattr as attr;
use crate::sys;

pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const REPLY_MAGIC: u32 = 0x6744_6698;
pub const REQUEST_LEN: usize = 28;

pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;

/// One request from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub cmd: u16,
    pub handle: [u8; 8],
    pub from: u64,
    pub len: u32,
}

impl Request {
    /// `None` when the magic is wrong: the stream is out of step, and nothing after it can be read.
    pub fn parse(b: &[u8; REQUEST_LEN]) -> Option<Request> {
        let be32 = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        if be32(0) != REQUEST_MAGIC {
            return None;
        }
        let mut handle = [0u8; 8];
        handle.copy_from_slice(&b[8..16]);
        let mut from = [0u8; 8];
        from.copy_from_slice(&b[16..24]);
        Some(Request {
            cmd: (be32(4) & 0xffff) as u16,
            handle,
            from: u64::from_be_bytes(from),
            len: be32(24),
        })
    }
}

/// The 16-byte reply to `handle`, with `error` an errno (0 for success).
pub fn reply(handle: [u8; 8], error: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(&REPLY_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&error.to_be_bytes());
    b[8..16].copy_from_slice(&handle);
    b
}

// genetlink: the controller's family and commands (<linux/genetlink.h>).
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
// <linux/nbd-netlink.h>.
const NBD_GENL_VERSION: u8 = 1;
const NBD_CMD_CONNECT: u8 = 1;
const NBD_CMD_DISCONNECT: u8 = 2;
const NBD_ATTR_INDEX: u16 = 1;
const NBD_ATTR_SIZE_BYTES: u16 = 2;
const NBD_ATTR_BLOCK_SIZE_BYTES: u16 = 3;
const NBD_ATTR_SERVER_FLAGS: u16 = 5;
const NBD_ATTR_SOCKETS: u16 = 7;
const NBD_SOCK_ITEM: u16 = 1;
const NBD_SOCK_FD: u16 = 1;
// <linux/nbd.h>'s transmission flags.
const NBD_FLAG_HAS_FLAGS: u64 = 1 << 0;
const NBD_FLAG_READ_ONLY: u64 = 1 << 1;
const NLA_F_NESTED: u16 = 1 << 15;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLMSG_ERROR: u16 = 2;

/// A genetlink request: `struct nlmsghdr`, `struct genlmsghdr`, then `attrs`.
fn genl_message(family: u16, cmd: u8, version: u8, seq: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&family.to_ne_bytes());
    b.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&[cmd, version, 0, 0]);
    attrs.iter().for_each(|a| b.extend_from_slice(a));
    let len = b.len() as u32;
    b[..4].copy_from_slice(&len.to_ne_bytes());
    b
}

fn get_family(name: &str, seq: u32) -> Vec<u8> {
    let mut n = name.as_bytes().to_vec();
    n.push(0);
    genl_message(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1, seq, &[attr(CTRL_ATTR_FAMILY_NAME, &n)])
}

fn connect_message(family: u16, seq: u32, socket: u32, size: u64, block: u64) -> Vec<u8> {
    let item = attr(NBD_SOCK_ITEM | NLA_F_NESTED, &attr(NBD_SOCK_FD, &socket.to_ne_bytes()));
    let flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY;
    genl_message(
        family,
        NBD_CMD_CONNECT,
        NBD_GENL_VERSION,
        seq,
        &[
            attr(NBD_ATTR_SIZE_BYTES, &size.to_ne_bytes()),
            attr(NBD_ATTR_BLOCK_SIZE_BYTES, &block.to_ne_bytes()),
            attr(NBD_ATTR_SERVER_FLAGS, &flags.to_ne_bytes()),
            attr(NBD_ATTR_SOCKETS | NLA_F_NESTED, &item),
        ],
    )
}

fn disconnect_message(family: u16, seq: u32, index: u32) -> Vec<u8> {
    genl_message(
        family,
        NBD_CMD_DISCONNECT,
        NBD_GENL_VERSION,
        seq,
        &[attr(NBD_ATTR_INDEX, &index.to_ne_bytes())],
    )
}

/// What the kernel answered to request `seq`: the errno of its acknowledgement (0: success), if
/// one is in `buf`, and the attributes of any other message for `seq` (a reply's payload).
fn answers(mut buf: &[u8], seq: u32) -> (Option<i32>, Vec<(u16, Vec<u8>)>) {
    let (mut ack, mut attrs) = (None, Vec::new());
    let u32_at = |b: &[u8], at: usize| Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?));
    while let (Some(len), Some(kind), Some(msg_seq)) = (u32_at(buf, 0), buf.get(4..6), u32_at(buf, 8)) {
        let len = len as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes([kind[0], kind[1]]);
        if msg_seq == seq && kind == NLMSG_ERROR {
            ack = u32_at(buf, 16).map(|e| (e as i32).checked_neg().unwrap_or(i32::MAX));
        } else if msg_seq == seq && len >= 20 {
            let mut a = &buf[20..len];
            while a.len() >= 4 {
                let alen = u16::from_ne_bytes([a[0], a[1]]) as usize;
                if alen < 4 || alen > a.len() {
                    break;
                }
                attrs.push((u16::from_ne_bytes([a[2], a[3]]) & !NLA_F_NESTED, a[4..alen].to_vec()));
                a = a.get(alen.next_multiple_of(4)..).unwrap_or(&[]);
            }
        }
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or(&[]);
    }
    (ack, attrs)
}

/// The kernel's NBD driver, through its genetlink family.
pub struct Driver {
    socket: sys::Netlink,
    family: u16,
    seq: u32,
}

/// Why the driver could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("the kernel has no nbd driver (no genetlink family \"nbd\"; is nbd in modules-list?)")]
    Missing,
    #[error("netlink: {0}")]
    Io(#[from] io::Error),
}

impl Driver {
    pub fn open() -> Result<Driver, DriverError> {
        let socket = sys::Netlink::open_generic(Duration::from_secs(5))?;
        let mut d = Driver { socket, family: 0, seq: 0 };
        let attrs = d.request(|seq| get_family("nbd", seq)).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => DriverError::Missing,
            _ => DriverError::Io(e),
        })?;
        let id = attrs.iter().find(|(k, v)| *k == CTRL_ATTR_FAMILY_ID && v.len() >= 2);
        d.family = id.map(|(_, v)| u16::from_ne_bytes([v[0], v[1]])).ok_or(DriverError::Missing)?;
        Ok(d)
    }

    fn request(&mut self, build: impl FnOnce(u32) -> Vec<u8>) -> io::Result<Vec<(u16, Vec<u8>)>> {
        self.seq = self.seq.wrapping_add(1);
        self.socket.send(&build(self.seq))?;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 16384];
        for _ in 0..16 {
            let n = self.socket.recv(&mut buf)?;
            let (ack, attrs) = answers(&buf[..n], self.seq);
            got.extend(attrs);
            match ack {
                Some(0) => return Ok(got),
                Some(errno) => return Err(io::Error::from_raw_os_error(errno)),
                None => {}
            }
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, "no acknowledgement from the kernel"))
    }

    /// Attaches `socket` (one end of a connected stream socket; the server holds the other) to a
    /// free `/dev/nbdN` of `size` bytes in blocks of `block`, read-only. Returns N.
    pub fn connect(&mut self, socket: &impl AsRawFd, size: u64, block: u64) -> io::Result<u32> {
        let (family, fd) = (self.family, socket.as_raw_fd() as u32);
        let attrs = self.request(|seq| connect_message(family, seq, fd, size, block))?;
        let index = attrs.iter().find(|(k, v)| *k == NBD_ATTR_INDEX && v.len() >= 4);
        index
            .map(|(_, v)| u32::from_ne_bytes([v[0], v[1], v[2], v[3]]))
            .ok_or_else(|| io::Error::other("the kernel did not say which nbd device it attached"))
    }

    /// Detaches `/dev/nbd<index>`: the kernel sends the server `NBD_CMD_DISC` and closes its socket.
    pub fn disconnect(&mut self, index: u32) -> io::Result<()> {
        let family = self.family;
        self.request(|seq| disconnect_message(family, seq, index)).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_replies_encode() {
        let mut b = [0u8; REQUEST_LEN];
        b[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..8].copy_from_slice(&(0x0001_0000u32 | u32::from(CMD_READ)).to_be_bytes()); // a flag set
        b[8..16].copy_from_slice(b"handle01");
        b[16..24].copy_from_slice(&(5u64 << 30).to_be_bytes());
        b[24..28].copy_from_slice(&131072u32.to_be_bytes());
        let r = Request::parse(&b).unwrap();
        assert_eq!(r, Request { cmd: CMD_READ, handle: *b"handle01", from: 5 << 30, len: 131072 });
        b[0] ^= 1;
        assert_eq!(Request::parse(&b), None);
        let reply = reply(*b"handle01", 5);
        assert_eq!(&reply[0..4], &[0x67, 0x44, 0x66, 0x98]);
        assert_eq!(&reply[4..8], &[0, 0, 0, 5]);
        assert_eq!(&reply[8..], b"handle01");
    }

    #[test]
    fn connect_nests_the_socket_and_sets_read_only() {
        let m = connect_message(0x22, 7, 9, 1 << 30, 4096);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize, m.len());
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 0x22);
        assert_eq!(&m[16..18], &[NBD_CMD_CONNECT, NBD_GENL_VERSION]);
        // The last attribute: SOCKETS > ITEM > FD = 9, each nested.
        let tail = &m[m.len() - 16..];
        assert_eq!(u16::from_ne_bytes([tail[2], tail[3]]), NBD_ATTR_SOCKETS | NLA_F_NESTED);
        assert_eq!(u16::from_ne_bytes([tail[6], tail[7]]), NBD_SOCK_ITEM | NLA_F_NESTED);
        assert_eq!(u16::from_ne_bytes([tail[10], tail[11]]), NBD_SOCK_FD);
        assert_eq!(u32::from_ne_bytes(tail[12..16].try_into().unwrap()), 9);
        let flags = attr(NBD_ATTR_SERVER_FLAGS, &3u64.to_ne_bytes());
        assert!(m.windows(flags.len()).any(|w| w == flags), "HAS_FLAGS | READ_ONLY");
    }

    #[test]
    fn answers_give_the_reply_and_the_ack() {
        // A reply with INDEX = 3, then the acknowledgement, as the kernel sends them for seq 4.
        let mut reply =
            genl_message(0x22, NBD_CMD_CONNECT, 1, 4, &[attr(NBD_ATTR_INDEX, &3u32.to_ne_bytes())]);
        let mut ack = vec![0u8; 36];
        ack[0..4].copy_from_slice(&36u32.to_ne_bytes());
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        ack[8..12].copy_from_slice(&4u32.to_ne_bytes());
        reply.extend_from_slice(&ack);
        let (got, attrs) = answers(&reply, 4);
        assert_eq!(got, Some(0));
        assert_eq!(attrs, vec![(NBD_ATTR_INDEX, 3u32.to_ne_bytes().to_vec())]);
        assert_eq!(answers(&reply, 5), (None, vec![]), "another request's answers are not this one's");
        ack[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        assert_eq!(answers(&ack, 4).0, Some(libc::ENOENT));
        assert_eq!(answers(&reply[..reply.len() - 3], 4).0, None, "a cut message is not read");
    }
}
