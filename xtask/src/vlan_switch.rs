//! The trunk port of the VLAN scenarios: a two-port 802.1Q switch, because the machines that run
//! the tests may have neither the `8021q` module nor VLAN filtering in their bridges (this one has
//! neither). One port is the guest's NIC, as qemu's `-netdev socket,udp=` sends its frames (one UDP
//! datagram per Ethernet frame); the other is a tap on the lab's bridge, where dnsmasq and the HTTP
//! server are. A frame from the guest tagged with the scenario's VLAN id loses its tag and goes to
//! the bridge; untagged frames and other VLANs are dropped, as an access port of another VLAN would.
//! A frame from the bridge gets the tag on its way to the guest. It runs inside the lab's network
//! namespace (`cargo xtask vlan-switch`, hidden), until the lab kills it.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use crate::host::Result;

/// The 802.1Q tag protocol identifier.
const TPID: [u8; 2] = [0x81, 0x00];

/// The frame without its 802.1Q tag, when it carries VLAN `vid`; `None` for untagged frames and
/// other VLANs.
pub fn untag(frame: &[u8], vid: u16) -> Option<Vec<u8>> {
    if frame.len() < 18 || frame[12..14] != TPID {
        return None;
    }
    let tci = u16::from_be_bytes([frame[14], frame[15]]);
    (tci & 0x0fff == vid).then(|| [&frame[..12], &frame[16..]].concat())
}

/// The frame with an 802.1Q tag for VLAN `vid` (priority 0) after its addresses.
pub fn tag(frame: &[u8], vid: u16) -> Option<Vec<u8>> {
    if frame.len() < 14 {
        return None;
    }
    let tci = (vid & 0x0fff).to_be_bytes();
    Some([&frame[..12], &TPID, &tci, &frame[12..]].concat())
}

/// Attaches to the persistent tap `name` (made by the lab with `ip tuntap add`): TUNSETIFF with
/// IFF_TAP | IFF_NO_PI, tun(4).
fn open_tap(name: &str) -> Result<std::fs::File> {
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const IFF_TAP: libc::c_short = 0x0002;
    const IFF_NO_PI: libc::c_short = 0x1000;
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| format!("opening /dev/net/tun: {e}"))?;
    // struct ifreq: the name (16 bytes), then the flags (a short) in the union.
    let mut ifreq = [0u8; 40];
    if name.len() >= 16 {
        return Err(format!("tap name {name:?} is too long"));
    }
    ifreq[..name.len()].copy_from_slice(name.as_bytes());
    ifreq[16..18].copy_from_slice(&(IFF_TAP | IFF_NO_PI).to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which `ifreq` is large enough to hold.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, ifreq.as_mut_ptr()) };
    if rc != 0 {
        return Err(format!("attaching to tap {name}: {}", std::io::Error::last_os_error()));
    }
    Ok(file)
}

/// Switches frames between qemu at `peer` (which sends to `listen`) and the tap, for VLAN `vid`.
pub fn run(vid: u16, tap: &str, listen: SocketAddr, peer: SocketAddr) -> Result<()> {
    use std::io::{Read, Write};
    let mut tap = open_tap(tap)?;
    let socket = UdpSocket::bind(listen).map_err(|e| format!("binding {listen}: {e}"))?;
    let mut buf = vec![0u8; 65536];
    loop {
        let mut fds = [
            libc::pollfd { fd: socket.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: tap.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: `fds` is a valid array of two pollfd structs.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, 1000) };
        if ready < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("poll: {e}"));
        }
        if fds[0].revents & libc::POLLIN != 0 {
            let n = socket.recv(&mut buf).map_err(|e| format!("receiving from qemu: {e}"))?;
            if let Some(frame) = untag(&buf[..n], vid) {
                // A full tap queue drops the frame, as a switch would.
                let _ = tap.write(&frame);
            }
        }
        if fds[1].revents & libc::POLLIN != 0 {
            let n = tap.read(&mut buf).map_err(|e| format!("reading the tap: {e}"))?;
            if let Some(frame) = tag(&buf[..n], vid) {
                let _ = socket.send_to(&frame, peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_on_and_off() {
        let frame: Vec<u8> = (0u8..12).chain([0x08, 0x00]).chain([0xaa; 46]).collect();
        let tagged = tag(&frame, 100).unwrap();
        assert_eq!(&tagged[12..16], &[0x81, 0x00, 0x00, 100]);
        assert_eq!(tagged.len(), frame.len() + 4);
        assert_eq!(untag(&tagged, 100).unwrap(), frame);
        assert_eq!(untag(&tagged, 101), None, "another VLAN is dropped");
        assert_eq!(untag(&frame, 100), None, "an untagged frame is dropped");
        let mut with_priority = tagged.clone();
        with_priority[14] |= 0xe0;
        assert_eq!(untag(&with_priority, 100).unwrap(), frame, "the priority bits do not matter");
        assert_eq!(tag(&frame[..10], 100), None);
    }
}
