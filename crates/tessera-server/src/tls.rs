//! HTTPS for `tessera serve` (`[tls]`, SPEC §4.3): rustls over the
//! listener's own accept loop, client certificates verified against
//! `client_ca_file`, and the certificate, key and CA re-read on SIGHUP.
//!
//! Each accepted connection completes its handshake (bounded by the
//! header-read timeout, so a silent client holds its slot no longer than
//! a slow plain-HTTP one) and is then served like a plain one. A client
//! certificate's thumbprint ([`ClientCertThumbprint`]) goes into every
//! request's extensions, where token binding (`cnf.x5t#S256`) and the
//! backend API's certificate clients read it.

use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use rustls::ServerConfig;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tessera_http::bearer::ClientCertThumbprint;
use tokio_rustls::TlsAcceptor;

use crate::config::{ClientAuth, TlsConfig};

/// The current TLS configuration; [`Tls::reload`] swaps it.
pub struct Tls {
    config: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the files `[tls]` names; an error says which file and why.
    pub fn load(config: &TlsConfig) -> anyhow::Result<Tls> {
        let server = server_config(config)?;
        Ok(Tls {
            config: config.clone(),
            current: RwLock::new(Arc::new(server)),
        })
    }

    /// Reads the files again and uses them for new connections; on error
    /// the previous configuration stays (and the error is returned).
    pub fn reload(&self) -> anyhow::Result<()> {
        let server = server_config(&self.config)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(server);
        Ok(())
    }

    /// An acceptor over the configuration in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ))
    }
}

fn server_config(t: &TlsConfig) -> anyhow::Result<ServerConfig> {
    let (Some(cert_file), Some(key_file)) = (&t.cert_file, &t.key_file) else {
        anyhow::bail!("[tls] needs cert_file and key_file");
    };
    let certs = read_certs(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("[tls] key_file {}: no PEM private key", key_file.display()))?;
    let provider = Arc::new(aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("[tls] protocol versions")?;
    let builder = match &t.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in read_certs(ca_file)? {
                roots.add(ca).with_context(|| {
                    format!(
                        "[tls] client_ca_file {}: unusable CA certificate",
                        ca_file.display()
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match t.client_auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                ClientAuth::Required => verifier,
            };
            builder.with_client_cert_verifier(verifier.build().context("[tls] client certificate verifier")?)
        }
    };
    let mut server = builder
        .with_single_cert(certs, key)
        .context("[tls] the certificate and key do not form a usable pair")?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(server)
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: malformed PEM", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{}: no PEM certificate", path.display());
    }
    Ok(certs)
}

/// The thumbprint of the leaf certificate the client presented, if any.
pub fn peer_thumbprint(conn: &rustls::ServerConnection) -> Option<ClientCertThumbprint> {
    conn.peer_certificates()
        .and_then(<[CertificateDer<'_>]>::first)
        .map(|leaf| ClientCertThumbprint::from_der(leaf.as_ref()))
}

/// Re-reads the TLS files whenever the process gets SIGHUP.
#[cfg(unix)]
pub async fn reload_on_sighup(tls: Arc<Tls>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; TLS files will not be reloaded");
            return;
        }
    };
    while hup.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => tracing::info!("SIGHUP: reloaded the TLS certificate, key and client CA"),
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                "SIGHUP: TLS reload failed; keeping the previous files"
            ),
        }
    }
}
