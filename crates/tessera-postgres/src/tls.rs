//! TLS to the database (`sslmode=require`): rustls with the aws-lc-rs
//! provider, as the rest of the workspace, trusting the CA file given
//! (`tls_ca`) or else the system's trust store. The server's certificate
//! and name are always checked (what libpq calls `verify-full`): a TLS
//! connection to a server nobody vouches for protects nothing.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::ClientConfig;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tessera_core::{StoreError, StoreResult};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The connector for a store: with the CA file if given, else the system's
/// roots.
pub(crate) fn connector(tls_ca: Option<&Path>) -> StoreResult<MakeRustlsConnect> {
    let mut roots = RootCertStore::empty();
    match tls_ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    StoreError::Unavailable(format!("cannot read tls_ca {}: {e}", path.display()))
                })?;
            if certs.is_empty() {
                return Err(StoreError::Unavailable(format!(
                    "tls_ca {} holds no certificate",
                    path.display()
                )));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| StoreError::Unavailable(format!("tls_ca {}: {e}", path.display())))?;
            }
        }
        None => {
            // Certificates the system store holds but rustls cannot use are
            // skipped, as every rustls client does.
            let found = rustls_native_certs::load_native_certs();
            let _ = roots.add_parsable_certificates(found.certs);
        }
    }
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Unavailable(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
