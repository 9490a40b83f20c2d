//! Device-mapper through its control device, `/dev/mapper/control` (<linux/dm-ioctl.h>): create a
//! device, load a one-target `linear` table, suspend, resume, remove. Only what the streamed root
//! needs: a read-only linear device whose backing can be swapped under a mounted file system (NBD
//! while the image arrives, a loop device over the RAM copy once it is in). dmsetup(8) and
//! libdevmapper are a shell and a C library away; five ioctls over one struct are not.

use std::fs::File;
use std::io;

/// `struct dm_ioctl`: 312 bytes, then the payload (the target specs of a table load).
const HEADER: usize = 312;
/// `struct dm_target_spec`, before its parameter string.
const SPEC: usize = 40;

const DM_VERSION_MAJOR: u32 = 4;
/// `DM_*` of the ioctl numbers' `nr` field.
const DM_DEV_CREATE: u8 = 3;
const DM_DEV_REMOVE: u8 = 4;
const DM_DEV_SUSPEND: u8 = 6;
const DM_TABLE_LOAD: u8 = 9;

const DM_READONLY_FLAG: u32 = 1 << 0;
const DM_SUSPEND_FLAG: u32 = 1 << 1;
/// Do not freeze the file system on suspend: the root is a read-only squashfs.
const DM_SKIP_LOCKFS_FLAG: u32 = 1 << 10;

/// A block device number, as `stat`'s `st_rdev` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevNum {
    pub major: u32,
    pub minor: u32,
}

impl DevNum {
    pub fn from_rdev(rdev: u64) -> DevNum {
        DevNum { major: libc::major(rdev), minor: libc::minor(rdev) }
    }

    /// The kernel's "huge" encoding in `dm_ioctl.dev`.
    fn from_huge(dev: u64) -> DevNum {
        let major = ((dev >> 8) & 0xfff) as u32;
        let minor = ((dev & 0xff) | ((dev >> 12) & 0xfff_ff00)) as u32;
        DevNum { major, minor }
    }
}

impl std::fmt::Display for DevNum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// `_IOWR(0xfd, nr, struct dm_ioctl)`.
const fn request(nr: u8) -> u32 {
    (3 << 30) | ((HEADER as u32) << 16) | (0xfd << 8) | nr as u32
}

/// One `struct dm_ioctl` for the device `name`, with `flags`, followed by `payload`.
fn message(name: &str, flags: u32, targets: u32, payload: &[u8]) -> io::Result<Vec<u8>> {
    if name.is_empty() || name.len() > 127 || name.contains('/') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad device-mapper name"));
    }
    // Room for the kernel's answer too (DEV_CREATE writes the header back).
    let mut b = vec![0u8; HEADER + payload.len().max(1024)];
    let total = b.len() as u32;
    b[0..4].copy_from_slice(&DM_VERSION_MAJOR.to_ne_bytes());
    b[12..16].copy_from_slice(&total.to_ne_bytes()); // data_size
    b[16..20].copy_from_slice(&(HEADER as u32).to_ne_bytes()); // data_start
    b[20..24].copy_from_slice(&targets.to_ne_bytes()); // target_count
    b[28..32].copy_from_slice(&flags.to_ne_bytes());
    b[48..48 + name.len()].copy_from_slice(name.as_bytes());
    b[HEADER..HEADER + payload.len()].copy_from_slice(payload);
    Ok(b)
}

/// One `linear` target over `backing` from its sector 0, `sectors` long, as a table load's payload.
fn linear_spec(sectors: u64, backing: DevNum) -> Vec<u8> {
    let params = format!("{backing} 0\0");
    let len = (SPEC + params.len()).next_multiple_of(8);
    let mut b = vec![0u8; len];
    b[8..16].copy_from_slice(&sectors.to_ne_bytes()); // length; sector_start is 0
    b[20..24].copy_from_slice(&(len as u32).to_ne_bytes()); // next
    b[24..30].copy_from_slice(b"linear");
    b[SPEC..SPEC + params.len()].copy_from_slice(params.as_bytes());
    b
}

/// The control device, `/dev/mapper/control`, opened once (the stream server keeps it across
/// switch_root, after which the path is no longer in its view).
pub struct Control {
    file: File,
}

impl Control {
    pub fn open() -> io::Result<Control> {
        Ok(Control { file: File::options().read(true).write(true).open("/dev/mapper/control")? })
    }

    fn call(&self, nr: u8, mut msg: Vec<u8>) -> io::Result<Vec<u8>> {
        use std::os::fd::AsRawFd;
        // SAFETY: every dm ioctl takes one `struct dm_ioctl` of `data_size` bytes, which `msg` is
        // (message() writes data_size as its length); the kernel writes no further than that.
        let r = unsafe { libc::ioctl(self.file.as_raw_fd(), request(nr) as _, msg.as_mut_ptr()) };
        match r {
            0 => Ok(msg),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// DM_DEV_CREATE, DM_TABLE_LOAD (read-only, one linear target over `backing`) and a resume:
    /// the device `/dev/dm-N` is then live. Returns its number.
    pub fn create_linear(&self, name: &str, sectors: u64, backing: DevNum) -> io::Result<DevNum> {
        let answer = self.call(DM_DEV_CREATE, message(name, DM_READONLY_FLAG, 0, &[])?)?;
        let dev = u64::from_ne_bytes(answer[40..48].try_into().unwrap_or([0; 8]));
        let made = self.load_linear(name, sectors, backing).and_then(|()| self.resume(name));
        if let Err(e) = made {
            let _ = self.remove(name);
            return Err(e);
        }
        Ok(DevNum::from_huge(dev))
    }

    /// Loads a read-only linear table over `backing` as the inactive table: the next resume swaps it in.
    pub fn load_linear(&self, name: &str, sectors: u64, backing: DevNum) -> io::Result<()> {
        self.call(DM_TABLE_LOAD, message(name, DM_READONLY_FLAG, 1, &linear_spec(sectors, backing))?)?;
        Ok(())
    }

    /// Suspends the device: waits for its I/O in flight to complete, holds new I/O.
    pub fn suspend(&self, name: &str) -> io::Result<()> {
        self.call(DM_DEV_SUSPEND, message(name, DM_SUSPEND_FLAG | DM_SKIP_LOCKFS_FLAG, 0, &[])?)?;
        Ok(())
    }

    /// Resumes the device, swapping in the table loaded last, if any.
    pub fn resume(&self, name: &str) -> io::Result<()> {
        self.call(DM_DEV_SUSPEND, message(name, DM_SKIP_LOCKFS_FLAG, 0, &[])?)?;
        Ok(())
    }

    pub fn remove(&self, name: &str) -> io::Result<()> {
        self.call(DM_DEV_REMOVE, message(name, 0, 0, &[])?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_are_the_kernels() {
        // DM_DEV_CREATE and DM_TABLE_LOAD as strace prints them for dmsetup.
        assert_eq!(request(DM_DEV_CREATE), 0xc138_fd03);
        assert_eq!(request(DM_TABLE_LOAD), 0xc138_fd09);
        assert_eq!(request(DM_DEV_SUSPEND), 0xc138_fd06);
    }

    #[test]
    fn a_table_load_holds_one_linear_target() {
        let spec = linear_spec(2048, DevNum { major: 43, minor: 0 });
        assert_eq!(spec.len() % 8, 0);
        assert_eq!(u64::from_ne_bytes(spec[8..16].try_into().unwrap()), 2048);
        assert_eq!(&spec[24..31], b"linear\0");
        assert_eq!(&spec[SPEC..SPEC + 7], b"43:0 0\0");
        let m = message("netinit-root", DM_READONLY_FLAG, 1, &spec).unwrap();
        assert_eq!(u32::from_ne_bytes(m[12..16].try_into().unwrap()) as usize, m.len());
        assert_eq!(u32::from_ne_bytes(m[16..20].try_into().unwrap()), 312);
        assert_eq!(&m[48..60], b"netinit-root");
        assert_eq!(m[60], 0);
        assert_eq!(&m[HEADER..HEADER + spec.len()], &spec[..]);
        assert!(message("a/b", 0, 0, &[]).is_err());
        assert!(message(&"x".repeat(128), 0, 0, &[]).is_err());
    }

    #[test]
    fn device_numbers_decode() {
        // 253:0 and a minor past 255 (253:300), in the kernel's huge_encode_dev form.
        assert_eq!(DevNum::from_huge(253 << 8), DevNum { major: 253, minor: 0 });
        let huge = (300 & 0xff) | (253 << 8) | ((300 & !0xff) << 12);
        assert_eq!(DevNum::from_huge(huge), DevNum { major: 253, minor: 300 });
    }
}
