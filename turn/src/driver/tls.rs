//! The TLS listener's certificate: from `turn.tls_cert`/`turn.tls_key`, or self-signed in dev mode.

use crate::SetupError;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// The rustls server config, or `None` when TLS is off or has no certificate outside dev mode.
pub fn server_config(
    cert: Option<&Path>,
    key: Option<&Path>,
    dev: bool,
) -> Result<Option<Arc<ServerConfig>>, SetupError> {
    let (chain, key) = match (cert, key) {
        (Some(c), Some(k)) => load(c, k)?,
        _ if dev => self_signed()?,
        _ => return Ok(None),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SetupError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| SetupError::Tls(e.to_string()))?;
    Ok(Some(Arc::new(config)))
}

fn load(cert: &Path, key: &Path) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), SetupError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| SetupError::Tls(format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(SetupError::Tls(format!("{}: no certificate found", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| SetupError::Tls(format!("{}: {e}", key.display())))?;
    Ok((chain, key))
}

fn self_signed() -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), SetupError> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let cert = rcgen::generate_simple_self_signed(names).map_err(|e| SetupError::Tls(e.to_string()))?;
    let key = PrivateKeyDer::try_from(cert.key_pair.serialize_der()).map_err(|e| SetupError::Tls(e.to_string()))?;
    Ok((vec![cert.cert.der().clone()], key))
}
