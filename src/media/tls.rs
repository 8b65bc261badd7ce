//! The relay's TLS identity. In production a configured certificate and key (PEM); for
//! development a certificate Floo makes itself: ECDSA P-256, valid 13 days (browsers
//! accept a certificate by its hash, `serverCertificateHashes`, only if it is ECDSA
//! and valid for at most 14 days), renewed before it expires without a restart.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

/// How long a dev certificate is valid.
pub const DEV_VALIDITY: Duration = Duration::from_secs(13 * 24 * 3600);
/// Renew a dev certificate when less than this is left.
pub const DEV_RENEW_BEFORE: Duration = Duration::from_secs(3 * 24 * 3600);

/// Whether a dev certificate expiring at `expires` should be renewed at `now` (Unix seconds).
pub fn needs_renewal(expires: i64, now: i64) -> bool {
    expires - now <= DEV_RENEW_BEFORE.as_secs() as i64
}

/// A certificate chain with its key.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the leaf certificate, for `serverCertificateHashes`; only for dev
    /// certificates (a real certificate is verified the normal way).
    pub dev_hash: Option<[u8; 32]>,
    /// When a dev certificate stops being valid (Unix seconds).
    pub dev_expires: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot make the development certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Makes a development certificate for localhost, valid from an hour ago for 13 days.
pub fn dev_identity() -> Result<Identity, TlsError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()])?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = params.not_before + time::Duration::seconds(DEV_VALIDITY.as_secs() as i64);
    params.distinguished_name.push(rcgen::DnType::CommonName, "Floo development relay");
    let cert = params.self_signed(&key)?;
    let der = cert.der().clone();
    let hash: [u8; 32] = Sha256::digest(&der).into();
    Ok(Identity {
        chain: vec![der],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        dev_hash: Some(hash),
        dev_expires: Some(params.not_after.unix_timestamp()),
    })
}

/// Reads a PEM certificate chain and private key.
pub fn load_identity(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
    let read_err = |path: &Path, reason: String| TlsError::Read { path: path.display().to_string(), reason };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read_err(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(read_err(cert, "no certificate in the file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| read_err(key, e.to_string()))?;
    Ok(Identity { chain, key: key_der, dev_hash: None, dev_expires: None })
}

/// The QUIC server configuration for WebTransport (HTTP/3 ALPN) with `identity`.
pub fn server_config(identity: &Identity) -> Result<quinn::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    tls.alpn_protocols = vec![web_transport_quinn::ALPN.as_bytes().to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    // Every group is its own stream; allow plenty, bounded.
    transport.max_concurrent_uni_streams(1024u32.into());
    transport.max_concurrent_bidi_streams(4u32.into());
    transport.max_idle_timeout(Some(
        Duration::from_secs(20).try_into().unwrap_or(quinn::IdleTimeout::from(quinn::VarInt::from_u32(20_000))),
    ));
    transport.keep_alive_interval(Some(Duration::from_secs(5)));
    transport.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certificates_are_short_lived_ecdsa_with_a_hash() {
        let identity = dev_identity().unwrap();
        let expires = identity.dev_expires.unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!(expires - now <= 14 * 24 * 3600, "browsers refuse hashes of certificates valid over 14 days");
        assert!(expires - now > 12 * 24 * 3600);
        assert_eq!(identity.dev_hash.unwrap(), <[u8; 32]>::from(Sha256::digest(&identity.chain[0])));
        server_config(&identity).unwrap();
    }

    #[test]
    fn a_dev_certificate_is_renewed_three_days_before_it_expires_and_not_sooner() {
        let identity = dev_identity().unwrap();
        let (made, expires) = (time::OffsetDateTime::now_utc().unix_timestamp(), identity.dev_expires.unwrap());
        let day = 24 * 3600;
        assert!(!needs_renewal(expires, made), "a fresh certificate is kept");
        assert!(!needs_renewal(expires, made + 9 * day), "four days left: kept");
        assert!(needs_renewal(expires, made + 10 * day), "under three days left: renewed");
        assert!(needs_renewal(expires, expires + 1), "expired: renewed");
        // The hourly check leaves a renewed certificate at least 2 days 23 hours before its end.
        assert!(DEV_RENEW_BEFORE.as_secs() > 3600);
    }
}
