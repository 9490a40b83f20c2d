//! The TLS side of fetching: which certificates are trusted, and which TLS errors are final.
//! Trusted: Mozilla's roots (webpki-root-certs) plus every certificate in the PEM files of
//! `/etc/netinit/ca`, which `cargo xtask cpio --ca FILE` fills.

use std::sync::Arc;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// Where the initramfs carries extra CAs.
pub const CA_DIR: &str = "/etc/netinit/ca";

/// The TLS configuration of every request: Mozilla's roots, plus the initramfs's CAs when there are.
pub fn config() -> TlsConfig {
    let extra = extra_cas();
    let roots = if extra.is_empty() {
        RootCerts::WebPki
    } else {
        let mut certs: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(|c| Certificate::from_der(c).to_owned())
            .collect();
        certs.extend(extra);
        RootCerts::Specific(Arc::new(certs))
    };
    TlsConfig::builder().root_certs(roots).build()
}

/// The certificates of the PEM files in [`CA_DIR`]; unreadable files and blocks are logged and skipped.
fn extra_cas() -> Vec<Certificate<'static>> {
    let Ok(dir) = std::fs::read_dir(CA_DIR) else { return Vec::new() };
    let mut paths: Vec<_> = dir.flatten().map(|e| e.path()).collect();
    paths.sort();
    let mut certs = Vec::new();
    for path in paths {
        match std::fs::read(&path) {
            Ok(pem) => certs.extend(certificates(&pem, &path.display().to_string())),
            Err(e) => log::warn!("reading {}: {e}", path.display()),
        }
    }
    certs
}

/// The certificates in one PEM text.
pub fn certificates(pem: &[u8], name: &str) -> Vec<Certificate<'static>> {
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(c)) => out.push(c),
            Ok(_) => {}
            Err(e) => log::warn!("{name}: {e}"),
        }
    }
    out
}

/// Whether a rustls error will recur on the next attempt: a certificate or a name that does not
/// verify, or a server that speaks no protocol version or cipher in common.
pub fn is_fatal(e: &rustls::Error) -> bool {
    use rustls::Error;
    matches!(e, Error::InvalidCertificate(_) | Error::NoCertificatesPresented | Error::PeerIncompatible(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_files() {
        let pem = b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\nnoise\n-----BEGIN CERTIFICATE-----\nMAMCAQI=\n-----END CERTIFICATE-----\n";
        assert_eq!(certificates(pem, "t").len(), 2);
        assert_eq!(certificates(b"not pem", "t").len(), 0);
    }

    #[test]
    fn certificate_errors_are_fatal_and_resets_are_not() {
        use rustls::{CertificateError, Error};
        assert!(is_fatal(&Error::InvalidCertificate(CertificateError::UnknownIssuer)));
        assert!(is_fatal(&Error::InvalidCertificate(CertificateError::NotValidForName)));
        assert!(!is_fatal(&Error::General("connection reset".into())));
    }
}
