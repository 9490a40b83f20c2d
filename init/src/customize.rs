//! The customize stage: write into the new root what the booted system needs from this boot, before
//! switch_root. In order, so that the more specific wins: Alpine's `apkovl=` overlay (a tar.gz of
//! saved configuration, `{MAC}` and `{UUID}` filled in), then the network's files (`/etc/resolv.conf`,
//! `/etc/hostname`), then `alpine_repo=` (`/etc/apk/repositories`) and `ssh_key=`
//! (`/root/.ssh/authorized_keys`).
//!
//! Every step is best effort: a missing overlay or key is logged as a warning and the boot goes on,
//! as Alpine's own init does. It never writes outside the new root.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::cmdline::{AlpineConfig, SshKey};
use crate::fetch;
use crate::net::{self, Configured};

/// The most an `apkovl=` overlay or an `ssh_key=` URL may send.
const OVERLAY_LIMIT: u64 = 64 << 20;
const KEY_LIMIT: u64 = 64 << 10;

/// Writes into the root at `root` what `alpine` asks for and what the network stage configured
/// (`network`, the boot NIC first: its MAC fills `{MAC}`).
pub fn apply(root: &Path, alpine: &AlpineConfig, network: &[Configured]) {
    if let Some(template) = &alpine.apkovl {
        let mac = network.first().map(|c| c.nic.mac.to_string()).unwrap_or_default();
        let uuid = std::fs::read_to_string("/sys/class/dmi/id/product_uuid")
            .map(|u| u.trim().to_lowercase())
            .unwrap_or_default();
        match template.fill(&mac, &uuid) {
            Ok(url) => match fetch::get_small(&url, OVERLAY_LIMIT) {
                Ok(bytes) => match unpack_overlay(&bytes, root) {
                    Ok((files, skipped)) => {
                        log::info!("apkovl: unpacked {files} entries from {url}");
                        if skipped > 0 {
                            log::warn!("apkovl: skipped {skipped} entries whose paths lead outside the root");
                        }
                    }
                    Err(e) => log::warn!("apkovl: {url} is not a readable tar.gz: {e}; booting without it"),
                },
                Err(e) => log::warn!("apkovl: {e}; booting without it"),
            },
            Err(e) => log::warn!("apkovl: {e}; booting without it"),
        }
    }
    write_network_files(root, network);
    if !alpine.repositories.is_empty() {
        let text: String = alpine.repositories.iter().map(|r| format!("{r}\n")).collect();
        match write(root, "etc/apk/repositories", &text, 0o644) {
            Ok(()) => {
                log::info!("wrote /etc/apk/repositories ({} repositories)", alpine.repositories.len())
            }
            Err(e) => log::warn!("writing /etc/apk/repositories: {e}"),
        }
    }
    if let Some(key) = &alpine.ssh_key {
        let text = match key {
            SshKey::Inline(k) => Ok(k.clone()),
            SshKey::Fetch(url) => fetch::get_small(url, KEY_LIMIT).map_err(|e| e.to_string()).and_then(|b| {
                String::from_utf8(b).map_err(|_| format!("{url} sent something that is not text"))
            }),
        };
        match text.and_then(|t| add_authorized_key(root, &t).map_err(|e| e.to_string())) {
            Ok(()) => log::info!("added the ssh_key to /root/.ssh/authorized_keys"),
            Err(e) => log::warn!("ssh_key: {e}; not added"),
        }
    }
}

/// Writes the network's `/etc/resolv.conf` (unless the image links it elsewhere, as
/// systemd-resolved does) and `/etc/hostname`.
fn write_network_files(root: &Path, network: &[Configured]) {
    let resolv = root.join("etc/resolv.conf");
    if std::fs::symlink_metadata(&resolv).is_ok_and(|m| m.file_type().is_symlink()) {
        log::info!("leaving the image's /etc/resolv.conf symlink in place");
    } else if let Err(e) = write(root, "etc/resolv.conf", &net::resolver(network), 0o644) {
        log::warn!("writing /etc/resolv.conf into the new root: {e}");
    }
    if let Some(name) = net::hostname(network) {
        if let Err(e) = write(root, "etc/hostname", &format!("{name}\n"), 0o644) {
            log::warn!("writing /etc/hostname into the new root: {e}");
        }
    }
}

fn write(root: &Path, rel: &str, text: &str, mode: u32) -> std::io::Result<()> {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, text)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
}

/// Appends one key line to `/root/.ssh/authorized_keys`, with the modes sshd insists on.
fn add_authorized_key(root: &Path, key: &str) -> std::io::Result<()> {
    let dir = root.join("root/.ssh");
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let mut file =
        std::fs::File::options().create(true).append(true).mode(0o600).open(dir.join("authorized_keys"))?;
    file.write_all(format!("{}\n", key.trim_end()).as_bytes())
}

/// Unpacks a tar.gz into `root`; returns (entries unpacked, entries refused). The tar crate's
/// `unpack_in` refuses any entry whose path would land outside `root`.
pub fn unpack_overlay(bytes: &[u8], root: &Path) -> std::io::Result<(usize, usize)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    let (mut files, mut skipped) = (0, 0);
    for entry in archive.entries()? {
        if entry?.unpack_in(root)? {
            files += 1;
        } else {
            skipped += 1;
        }
    }
    Ok((files, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("netinit-customize-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder =
            tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (path, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o640);
            // set_path refuses "..", so write the raw name as a hostile archive would.
            let name = header.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn overlays_unpack_inside_the_root_only() {
        let root = tempdir("ovl");
        let bytes =
            tar_gz(&[("etc/motd", b"hello\n"), ("../escaped", b"x"), ("etc/apk/world", b"openssh\n")]);
        assert_eq!(unpack_overlay(&bytes, &root).unwrap(), (2, 1));
        assert_eq!(std::fs::read_to_string(root.join("etc/motd")).unwrap(), "hello\n");
        assert!(!root.parent().unwrap().join("escaped").exists());
        assert!(unpack_overlay(b"not gzip", &root).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn keys_are_appended_with_sshd_modes() {
        let root = tempdir("key");
        add_authorized_key(&root, "ssh-ed25519 AAAA one").unwrap();
        add_authorized_key(&root, "ssh-ed25519 BBBB two\n").unwrap();
        let file = root.join("root/.ssh/authorized_keys");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "ssh-ed25519 AAAA one\nssh-ed25519 BBBB two\n");
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(root.join("root/.ssh")).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
