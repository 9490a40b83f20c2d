//! The customize stage: write into the new root what the booted system needs from this boot, before
//! switch_root. In order, so that the more specific wins: Alpine's `apkovl=` overlay (a tar.gz of
//! saved configuration, `{MAC}` and `{UUID}` filled in), then the network's files (`/etc/resolv.conf`,
//! `/etc/hostname`), then `alpine_repo=` (`/etc/apk/repositories`) and `ssh_key=`
//! (`/root/.ssh/authorized_keys`).
//!
//! Every step is best effort: a missing overlay or key is logged as a warning and the boot goes on,
//! as Alpine's own init does; but when the initramfs checks signatures, a fetched overlay or key that
//! is not signed by a trusted key stops the boot. It never writes outside the new root: every path is
//! resolved inside it and no write follows a final symlink (`write.rs`); the overlay's unpacker is
//! `overlay.rs`.

pub(crate) mod overlay;
pub(crate) mod write;

use std::io;
use std::path::{Path, PathBuf};

use crate::cmdline::{AlpineConfig, SshKey};
use crate::fetch::{self, Extras, FetchError};
use crate::net::{self, Configured};
use crate::sys::{self, Create, InRoot};

/// The most an `apkovl=` overlay or an `ssh_key=` URL may send.
const OVERLAY_LIMIT: u64 = 64 << 20;
const KEY_LIMIT: u64 = 64 << 10;
/// Skipped overlay entries named one by one on the console; the rest are counted.
const SKIPS_SHOWN: usize = 10;

/// What stops the boot here: only an extra that must be signed and is not. Everything else is a
/// warning.
#[derive(Debug, thiserror::Error)]
pub enum CustomizeError {
    #[error("opening the new root {path}")]
    Root { path: PathBuf, source: io::Error },
    #[error("apkovl: {0}")]
    Apkovl(#[source] FetchError),
    #[error("ssh_key: {0}")]
    SshKey(#[source] FetchError),
}

impl CustomizeError {
    pub fn hint(&self) -> &'static str {
        match self {
            CustomizeError::Root { .. } => "this is unexpected; the error above names the system's answer",
            CustomizeError::Apkovl(e) | CustomizeError::SshKey(e) => e.hint(),
        }
    }
}

/// Whether a failed fetch of an extra stops the boot: a signature that is missing, unknown or
/// wrong does; a file that is not there, or a transfer that fails, does not (as Alpine's init).
fn must_stop(e: &FetchError) -> bool {
    matches!(e, FetchError::Unsigned { .. } | FetchError::UnknownKey { .. } | FetchError::BadSignature { .. })
}

/// Writes into the root at `root` what `alpine` asks for and what the network stage configured
/// (`network`, the boot NIC first: its MAC fills `{MAC}`), fetching extras as `extras` says.
pub fn apply(
    root: &Path,
    alpine: &AlpineConfig,
    network: &[Configured],
    extras: &Extras,
) -> Result<(), CustomizeError> {
    let in_root =
        InRoot::open(root).map_err(|source| CustomizeError::Root { path: root.to_owned(), source })?;
    if let Some(template) = &alpine.apkovl {
        let mac = network.first().map(|c| c.nic.mac.to_string()).unwrap_or_default();
        let uuid = std::fs::read_to_string("/sys/class/dmi/id/product_uuid")
            .map(|u| u.trim().to_lowercase())
            .unwrap_or_default();
        match template.fill(&mac, &uuid) {
            Ok(url) => match extras.get(&url, OVERLAY_LIMIT) {
                Ok(extra) => apply_overlay(&in_root, &url, &extra),
                Err(e) if must_stop(&e) => return Err(CustomizeError::Apkovl(e)),
                Err(e) => log::warn!("apkovl: {e}; booting without it"),
            },
            Err(e) => log::warn!("apkovl: {e}; booting without it"),
        }
    }
    write_network_files(&in_root, network);
    if !alpine.repositories.is_empty() {
        let text: String = alpine.repositories.iter().map(|r| format!("{r}\n")).collect();
        match write::write_file(&in_root, "etc/apk/repositories", text.as_bytes(), 0o644, Create::Truncate) {
            Ok(()) => {
                log::info!("wrote /etc/apk/repositories ({} repositories)", alpine.repositories.len())
            }
            Err(e) => log::warn!("writing /etc/apk/repositories: {e}"),
        }
    }
    if let Some(key) = &alpine.ssh_key {
        let text = match key {
            // As trusted as the cmdline it came on.
            SshKey::Inline(k) => Ok(k.clone()),
            SshKey::Fetch(url) => match extras.get(url, KEY_LIMIT) {
                Ok(extra) => String::from_utf8(extra.bytes)
                    .map_err(|_| format!("{url} sent something that is not text"))
                    .and_then(|text| key_lines(url, &text)),
                Err(e) if must_stop(&e) => return Err(CustomizeError::SshKey(e)),
                Err(e) => Err(e.to_string()),
            },
        };
        match text.and_then(|t| add_authorized_key(&in_root, &t).map_err(|e| e.to_string())) {
            Ok(()) => log::info!("added the ssh_key to /root/.ssh/authorized_keys"),
            Err(e) => log::warn!("ssh_key: {e}; not added"),
        }
    }
    Ok(())
}

/// Unpacks a fetched overlay and says what it did and what it skipped.
fn apply_overlay(root: &InRoot, url: &crate::cmdline::Url, extra: &fetch::Extra) {
    let signed = extra.signed_by.is_some();
    match overlay::unpack(&extra.bytes, root, signed, &overlay::LIMITS) {
        Ok(done) => {
            log::info!("apkovl: unpacked {} entries from {url}", done.entries);
            for (name, why) in done.skipped.iter().take(SKIPS_SHOWN) {
                log::warn!("apkovl: skipped {name}: {why}");
            }
            if done.skipped.len() > SKIPS_SHOWN {
                log::warn!("apkovl: skipped {} more entries", done.skipped.len() - SKIPS_SHOWN);
            }
            if done.cleared > 0 {
                log::warn!(
                    "apkovl: cleared the setuid/setgid bits of {} entries: the overlay is not signed",
                    done.cleared
                );
            }
        }
        Err(e) => log::warn!("apkovl: {url} could not be unpacked: {e}; booting with what was unpacked"),
    }
}

/// Writes the network's `/etc/resolv.conf` (unless the image links it elsewhere, as
/// systemd-resolved does) and `/etc/hostname`.
fn write_network_files(root: &InRoot, network: &[Configured]) {
    if root.kind("etc/resolv.conf").is_ok_and(|k| k == Some(sys::Kind::Symlink)) {
        log::info!("leaving the image's /etc/resolv.conf symlink in place");
    } else if let Err(e) =
        write::write_file(root, "etc/resolv.conf", net::resolver(network).as_bytes(), 0o644, Create::Truncate)
    {
        log::warn!("writing /etc/resolv.conf into the new root: {e}");
    }
    if let Some(name) = net::hostname(network) {
        let text = format!("{name}\n");
        if let Err(e) = write::write_file(root, "etc/hostname", text.as_bytes(), 0o644, Create::Truncate) {
            log::warn!("writing /etc/hostname into the new root: {e}");
        }
    }
}

/// The public keys of a fetched key file, one per line; blank lines and `#` comments are dropped,
/// and any other line (a web server's error page, `command=` options) refuses the whole file.
fn key_lines(url: &crate::cmdline::Url, text: &str) -> Result<String, String> {
    let lines: Vec<&str> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    if let Some(bad) = lines.iter().find(|l| !SshKey::is_key_line(l)) {
        let shown: String = bad.chars().take(40).collect();
        return Err(format!("{url} holds a line that is not a public key: {shown:?}"));
    }
    match lines.is_empty() {
        true => Err(format!("{url} holds no public key")),
        false => Ok(lines.join("\n")),
    }
}

/// Appends one key line to `/root/.ssh/authorized_keys`, with the modes sshd insists on.
fn add_authorized_key(root: &InRoot, key: &str) -> io::Result<()> {
    write::create_dirs(root, "root/.ssh", 0o700)?;
    sys::set_mode(root.dir("root/.ssh")?, 0o700)?;
    let line = format!("{}\n", key.trim_end());
    write::write_file(root, "root/.ssh/authorized_keys", line.as_bytes(), 0o600, Create::Append)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::write::tests::Hostile;
    use super::*;

    #[test]
    fn keys_are_appended_with_sshd_modes() {
        let h = Hostile::new("key");
        add_authorized_key(&h.in_root(), "ssh-ed25519 AAAA one").unwrap();
        add_authorized_key(&h.in_root(), "ssh-ed25519 BBBB two\n").unwrap();
        let file = h.root.join("root/.ssh/authorized_keys");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "ssh-ed25519 AAAA one\nssh-ed25519 BBBB two\n");
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(h.root.join("root/.ssh")).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn fetched_key_files_hold_keys_and_nothing_else() {
        let url = crate::cmdline::Url::parse("http://10.0.2.2/key").unwrap();
        let check = |text: &str, expected: Result<&str, &str>| {
            let got = key_lines(&url, text);
            match expected {
                Ok(keys) => assert_eq!(got.as_deref(), Ok(keys), "{text:?}"),
                Err(m) => assert!(got.as_ref().is_err_and(|e| e.contains(m)), "{text:?}: {got:?}"),
            }
        };
        check("ssh-ed25519 AAAA me@h\n", Ok("ssh-ed25519 AAAA me@h"));
        check(
            "# ops\nssh-ed25519 AAAA a\n\necdsa-sha2-nistp256 BBB= b\n",
            Ok("ssh-ed25519 AAAA a\necdsa-sha2-nistp256 BBB= b"),
        );
        check("<html>404</html>", Err("a line that is not a public key: \"<html>404</html>\""));
        check("command=\"rm -rf /\" ssh-ed25519 AAAA x", Err("not a public key"));
        check("ssh-ed25519 AA$A x", Err("not a public key"));
        check("\n# nothing\n", Err("holds no public key"));
    }

    #[test]
    fn only_signature_failures_stop_the_boot() {
        let url = crate::cmdline::Url::parse("http://10.0.2.2/ovl.tar.gz").unwrap();
        let why = String::from("x");
        assert!(must_stop(&FetchError::Unsigned { url: url.clone(), why: why.clone() }));
        assert!(must_stop(&FetchError::UnknownKey { url: url.clone(), why: why.clone() }));
        assert!(must_stop(&FetchError::BadSignature { url: url.clone(), why }));
        assert!(!must_stop(&FetchError::Status { url, status: 404, reason: None, via: None }));
    }
}
