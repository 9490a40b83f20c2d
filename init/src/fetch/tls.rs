//! The TLS side of fetching: which certificates are trusted, and which TLS errors are final.
//! Trusted: Mozilla's roots (webpki-root-certs) plus every certificate in the PEM files of
//! `/etc/netinit/ca`, which `cargo xtask cpio --ca FILE` fills.

use std::sync::Arc;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// Where the initramfs carries extra CAs.
pub const CA_DIR: &str = "/etc/netinit/ca";

/// The TLS configuration of every request: Mozilla's roots plus the initramfs's CAs, and ring as
/// rustls's cryptography. ureq is built without its own roots and provider (its `rustls` feature
/// would link a second copy of the roots), so both are always given here: ureq takes the
/// config's provider before any default, and never reaches its "no provider" panic.
pub fn config() -> TlsConfig {
    let mut certs: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|c| Certificate::from_der(c).to_owned())
        .collect();
    certs.extend(extra_cas());
    TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(certs)))
        .unversioned_rustls_crypto_provider(Arc::new(provider()))
        .build()
}

/// ring's provider, without what netinit never uses: ChaCha20-Poly1305 (every server that offers it
/// also offers AES-GCM, which x86-64's AES-NI runs faster) and the private keys of client certificates.
fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::cipher_suite as suite;
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![
        suite::TLS13_AES_256_GCM_SHA384,
        suite::TLS13_AES_128_GCM_SHA256,
        suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ];
    p.key_provider = &NoClientKeys;
    p
}

/// netinit sends no client certificate, so it loads no private key.
#[derive(Debug)]
struct NoClientKeys;

impl rustls::crypto::KeyProvider for NoClientKeys {
    fn load_private_key(
        &self,
        _: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        Err(rustls::Error::General("netinit loads no private keys".into()))
    }
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
