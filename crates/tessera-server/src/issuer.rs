//! Stateless tokens in the service: the token service and signing keys the
//! handlers share, the key-encryption key, key maintenance, and
//! `tessera keys list|rotate`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tessera_core::clients::{ClientAssertions, assertion_alg_names};
use tessera_core::dpop::{BoundedReplayCache, DpopPolicy, DpopVerifier, NonceIssuer, NonceUse};
use tessera_core::keys::{KeyError, KeyInfo};
use tessera_core::{
    Clock, KeyManager, OAuthError, RefreshStore, ReplayStore, Sealer, Sessions, SigningKeyStore, Timestamp,
    TokenService,
};
use tokio::sync::Notify;
use zeroize::Zeroizing;

use crate::config::{Config, LEEWAY_SECS};

/// What the OAuth endpoints, the revocation feed and token issuance share.
pub struct OAuth {
    pub tokens: TokenService,
    pub keys: Arc<KeyManager>,
    /// Notified whenever this process revokes through the OAuth endpoints,
    /// so long-polls of the revocation feed answer at once (they poll the
    /// store as well, for revocations made elsewhere).
    pub revoked: Notify,
    /// `Cache-Control: max-age` of the JWKS.
    pub jwks_max_age_secs: i64,
    /// The RFC 8414 metadata document.
    pub metadata: Value,
    /// The issuer's path (`""` or `/t1`): the metadata is also served at
    /// `/.well-known/oauth-authorization-server<path>` (RFC 8414 §3).
    pub issuer_path: String,
    /// The token endpoint's public URL: a proof's `htu` there.
    pub token_endpoint: String,
    /// DPoP proofs at the token endpoint: `jti`s in the shared store, so a
    /// proof is used once across every process.
    pub dpop_token: DpopVerifier,
    /// DPoP proofs at `/auth/verify`: `jti`s in a bounded in-memory cache
    /// (no store write per request).
    pub dpop_resource: DpopVerifier,
    /// `private_key_jwt` client assertions (RFC 7523): `jti`s in the shared
    /// store, so an assertion is used once across every process.
    pub assertions: ClientAssertions,
    /// The key-encryption key: signing keys at rest, and the stateless
    /// nonces, challenges and bound cookies every process must accept.
    pub sealer: Arc<Sealer>,
}

impl std::fmt::Debug for OAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth")
            .field("issuer", &self.tokens.policy().issuer)
            .finish_non_exhaustive()
    }
}

impl OAuth {
    /// Builds the token service over `sessions` and `families` (the same
    /// store: see [`TokenService::new`]), with signing keys in `keys`.
    /// `config` must have passed [`Config::validate`] (the client registry
    /// and policies are checked there); call [`start`] before issuing
    /// tokens.
    pub fn new(
        config: &Config,
        sessions: Sessions,
        families: Arc<dyn RefreshStore>,
        keys: Arc<dyn SigningKeyStore>,
        replay: Arc<dyn ReplayStore>,
        clock: Arc<dyn Clock>,
        sealer: Sealer,
    ) -> Self {
        let sealer = Arc::new(sealer);
        let sealer_for_state = sealer.clone();
        let keys = Arc::new(KeyManager::new(
            keys,
            clock.clone(),
            sealer.clone(),
            config.key_policy(),
        ));
        let d = &config.dpop;
        let issuer = config.issuer();
        let token_endpoint = format!("{issuer}/oauth2/token");
        let assertions = ClientAssertions::new(
            replay.clone(),
            clock.clone(),
            vec![issuer.clone(), token_endpoint.clone()],
            LEEWAY_SECS,
        );
        let mut dpop_token = DpopVerifier::new(config.dpop_policy(), replay, clock.clone());
        if d.token_nonce {
            dpop_token = dpop_token.with_nonces(NonceIssuer::new(
                sealer.clone(),
                NonceUse::Token,
                d.nonce_lifetime_secs,
            ));
        }
        let mut dpop_resource = DpopVerifier::new(
            config.dpop_policy(),
            Arc::new(BoundedReplayCache::new(d.resource_replay_cache_size)),
            clock,
        );
        if d.resource_nonce {
            dpop_resource = dpop_resource.with_nonces(NonceIssuer::new(
                sealer.clone(),
                NonceUse::Resource,
                d.nonce_lifetime_secs,
            ));
        }
        let clients = config.client_registry().unwrap_or_else(|e| {
            tracing::error!(error = %e, "invalid [[clients]]; only the built-in default client is available");
            tessera_core::ClientRegistry::new(Vec::new()).unwrap_or_else(|_| unreachable_registry())
        });
        let policy = config.token_policy();
        let tokens = TokenService::new(
            sessions,
            families,
            keys.clone(),
            Arc::new(clients),
            sealer,
            policy,
        );
        OAuth {
            tokens,
            keys,
            revoked: Notify::new(),
            jwks_max_age_secs: config.oauth.jwks_max_age_secs,
            metadata: metadata(
                &issuer,
                &config.dpop_policy(),
                config.tls.client_ca_file.is_some(),
            ),
            issuer_path: issuer_path(&issuer).to_owned(),
            token_endpoint,
            dpop_token,
            dpop_resource,
            assertions,
            sealer: sealer_for_state,
        }
    }

    /// Serves the clients registered at run time in `store` too
    /// (`tessera clients create`), beside `[[clients]]`.
    #[must_use]
    pub fn with_client_store(mut self, store: Arc<dyn tessera_core::ClientStore>) -> Self {
        self.tokens = self.tokens.with_client_store(store);
        self
    }

    /// Makes sure there is a key to sign with: normally [`start`] loaded
    /// it; an application built without calling it (a test, an embedder)
    /// creates or loads it on first use.
    pub async fn ensure_signer(&self) -> Result<(), OAuthError> {
        if self.keys.signer().is_ok() {
            return Ok(());
        }
        self.keys
            .ensure_key()
            .await
            .map(|_| ())
            .map_err(|e| OAuthError::Unavailable(e.to_string()))
    }

    pub fn issuer(&self) -> &str {
        &self.tokens.policy().issuer
    }

    /// Access-token TTL + 60 s leeway: how long a revocation matters to
    /// resource servers.
    pub fn revocation_window_secs(&self) -> i64 {
        self.tokens
            .policy()
            .access_token_ttl_secs
            .saturating_add(LEEWAY_SECS)
    }
}

/// `ClientRegistry::new(vec![])` cannot fail; this keeps the type checker
/// happy without a panic path.
fn unreachable_registry() -> tessera_core::ClientRegistry {
    tracing::error!("cannot build even the default client registry");
    std::process::abort()
}

/// The path component of an issuer URL (`""` when it has none).
fn issuer_path(issuer: &str) -> &str {
    let rest = issuer
        .strip_prefix("https://")
        .or_else(|| issuer.strip_prefix("http://"))
        .unwrap_or(issuer);
    rest.find('/').map_or("", |i| &rest[i..])
}

/// RFC 8414 metadata. Endpoint URLs are the issuer followed by the route,
/// so with a path in the issuer the reverse proxy forwards `<issuer>/…` to
/// the service root. There is no authorization endpoint, so neither
/// `response_types_supported` nor PKCE metadata is advertised.
fn metadata(issuer: &str, dpop: &DpopPolicy, mtls: bool) -> Value {
    let auth_methods = json!([
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "none"
    ]);
    let signing_algs = assertion_alg_names();
    json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
        "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
        "grant_types_supported": ["refresh_token", "client_credentials", tessera_core::tokens::TOKEN_EXCHANGE_GRANT],
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        // Introspection also takes a backend API key as a Bearer token.
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        // RFC 8414 §2: the algorithms of `private_key_jwt` assertions.
        "token_endpoint_auth_signing_alg_values_supported": signing_algs,
        "revocation_endpoint_auth_signing_alg_values_supported": signing_algs,
        "introspection_endpoint_auth_signing_alg_values_supported": signing_algs,
        // RFC 9449 §5.1.
        "dpop_signing_alg_values_supported": dpop.algs.iter().map(|a| a.name()).collect::<Vec<_>>(),
        // RFC 8705 §3.3: with client certificates asked for, tokens
        // requested over them are bound.
        "tls_client_certificate_bound_access_tokens": mtls,
    })
}

/// At start: loads the signing keys, creating the first one on a fresh
/// store, and warns about a plain-HTTP issuer.
pub async fn start(oauth: &OAuth) -> anyhow::Result<()> {
    let created = oauth.keys.ensure_key().await.map_err(key_error)?;
    if let Some(kid) = created {
        tracing::info!(%kid, "created the first access-token signing key");
    }
    oauth.keys.reload().await.map_err(key_error)?;
    if !oauth.issuer().starts_with("https://") {
        tracing::warn!(
            issuer = oauth.issuer(),
            "[oauth] issuer is not https: access tokens and metadata name a plain-HTTP issuer; set [oauth] issuer for production"
        );
    }
    Ok(())
}

fn key_error(e: KeyError) -> anyhow::Error {
    match e {
        KeyError::Seal { .. } => anyhow::anyhow!(
            "{e}: the stored signing keys were encrypted with another key-encryption key ([keys] encryption_key or encryption_key_file)"
        ),
        other => anyhow::anyhow!("signing keys: {other}"),
    }
}

/// Every `[keys] reload_interval_secs`: under the `keys` lease (one process
/// of those sharing the store), adds the next signing key when due and
/// deletes keys no longer published; in every process, reloads the
/// snapshot, so keys another process added are picked up. (The insert of
/// a rotation is a compare-and-set as well: the lease saves the others
/// generating a key only to see their insert refused.)
pub async fn key_maintenance(keys: Arc<KeyManager>, every: Duration, lease: Arc<tessera_core::DutyLease>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let ours = match lease.hold().await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the signing-key lease; only reloading the keys");
                false
            }
        };
        if !ours {
            if let Err(e) = keys.reload().await {
                tracing::warn!(error = %e, "reloading the signing keys failed");
            }
            continue;
        }
        if let Err(e) = keys.rotate_if_due().await {
            tracing::warn!(error = %e, "signing-key rotation check failed");
        }
        if let Err(e) = keys.prune().await {
            tracing::warn!(error = %e, "pruning retired signing keys failed");
        }
    }
}

/// The at-rest key for an application built without [`load_sealer`]:
/// `[keys] encryption_key`, else a random key that lives only in memory
/// (fine for `memory://`; a persistent store needs [`load_sealer`]).
pub fn config_sealer(config: &Config) -> Sealer {
    if let Some(k) = &config.keys.encryption_key
        && let Ok(s) = Sealer::from_base64url(k)
    {
        return s;
    }
    let key = Zeroizing::new(Sealer::generate_key());
    Sealer::new(&key)
}

/// The key-encryption key: `[keys] encryption_key`, else the key file
/// (`encryption_key_file`, default `<data_dir>/key-encryption-key`). With
/// `create`, a missing file is generated (base64url and a newline, mode
/// 0600); its path is logged, the key never.
pub fn load_sealer(config: &Config, create: bool) -> anyhow::Result<Sealer> {
    if let Some(k) = &config.keys.encryption_key {
        return Sealer::from_base64url(k).context("[keys] encryption_key");
    }
    let path = config.encryption_key_path();
    // `create` is the service starting: say it once there, not in every CLI call.
    if create && let Some(dir) = key_file_beside_data(config) {
        tracing::warn!(
            key_file = %path.display(),
            dir = %dir.display(),
            "the key-encryption key file is inside the data directory, beside the database: a copy of that directory \
             decrypts the signing keys and the refresh tokens kept sealed for the grace window; keep it elsewhere \
             ([keys] encryption_key_file) or pass it in [keys] encryption_key / TESSERA_KEYS_ENCRYPTION_KEY"
        );
    }
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            Sealer::from_base64url(&text)
                .with_context(|| format!("key-encryption key file {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let key = Zeroizing::new(Sealer::generate_key());
            let text = Zeroizing::new(URL_SAFE_NO_PAD.encode(*key));
            match write_new_secret_file(&path, &text) {
                Ok(()) => {
                    tracing::info!(
                        path = %path.display(),
                        "generated the key-encryption key for signing keys; it is in this file (mode 0600) — back it up with the store"
                    );
                    Ok(Sealer::new(&key))
                }
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_sealer(config, false),
                Err(e) => Err(e).with_context(|| format!("cannot write {}", path.display())),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "no key-encryption key: {} does not exist (start `tessera serve` once, or set [keys] encryption_key)",
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The directory that holds both the key-encryption key file and the data
/// (the data directory, or the SQLite database's directory), if the key is
/// read from a file there; `None` when the key comes from the configuration
/// or lives elsewhere. Paths are compared as given when they cannot be
/// resolved (a missing directory), which is the cautious answer.
pub fn key_file_beside_data(config: &Config) -> Option<std::path::PathBuf> {
    if config.keys.encryption_key.is_some() {
        return None;
    }
    let resolve = |p: &Path| {
        std::path::absolute(p)
            .map(|a| a.canonicalize().unwrap_or(a))
            .unwrap_or_else(|_| p.to_owned())
    };
    let key_dir = resolve(config.encryption_key_path().parent().unwrap_or(Path::new(".")));
    let mut data_dirs = vec![resolve(&config.data_dir)];
    if let Ok(tessera_core::store_url::StoreUrl::Sqlite(db)) = crate::open_store::parse(&config.store_url())
        && let Some(dir) = db.parent()
    {
        data_dirs.push(resolve(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        }));
    }
    data_dirs.into_iter().find(|d| key_dir.starts_with(d))
}

/// Creates `path` (not overwriting anything) with `text` and a newline,
/// mode 0600.
fn write_new_secret_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    writeln!(f, "{text}")?;
    f.sync_all()
}

// ------------------------------------------------------------------ CLI

/// `tessera keys list [--json]`.
pub async fn keys_list(config: &Config, store: Arc<dyn SigningKeyStore>, json: bool) -> anyhow::Result<()> {
    let keys = cli_key_manager(config, store)?;
    keys.reload().await.map_err(key_error)?;
    print_keys(&keys.list(), json)
}

/// `tessera keys rotate [--in SECS]`: adds a key that signs `SECS` from now
/// (default `[keys] prepublish_secs`; 0 = at once, an emergency).
pub async fn keys_rotate(
    config: &Config,
    store: Arc<dyn SigningKeyStore>,
    activate_in: Option<i64>,
) -> anyhow::Result<()> {
    let keys = cli_key_manager(config, store)?;
    keys.reload().await.map_err(key_error)?;
    let secs = activate_in.unwrap_or(config.keys.prepublish_secs);
    let kid = keys.rotate(secs).await.map_err(key_error)?;
    let info = keys.list().into_iter().find(|k| k.kid == kid);
    println!("{kid}");
    match info {
        Some(k) => eprintln!(
            "added signing key {kid} ({}), published now, signing from {}; running servers pick it up within {} s",
            k.alg.as_str(),
            k.activates_at,
            config.keys.reload_interval_secs
        ),
        None => eprintln!("added signing key {kid}"),
    }
    if secs < config.oauth.jwks_max_age_secs {
        eprintln!(
            "warning: the key signs before verifiers' cached JWKS ([oauth] jwks_max_age_secs = {}) expire; they must refetch on the unknown kid",
            config.oauth.jwks_max_age_secs
        );
    }
    Ok(())
}

/// `tessera keys revoke KID`: the emergency withdrawal (see
/// [`KeyManager::revoke`]). An unknown or already revoked key is exit
/// status 1.
pub async fn keys_revoke(
    config: &Config,
    store: Arc<dyn SigningKeyStore>,
    kid: &str,
) -> anyhow::Result<std::process::ExitCode> {
    let keys = cli_key_manager(config, store)?;
    match keys.revoke(kid).await {
        Ok(replacement) => {
            eprintln!(
                "revoked signing key {kid}: it no longer signs and is no longer published; \
                 tokens it signed are refused by this store's /auth/verify and introspection at once, \
                 by running servers within {} s (their key reload), and by resource servers once their \
                 JWKS cache refreshes ([keys] reload_interval_secs)",
                config.keys.reload_interval_secs
            );
            if let Some(fresh) = replacement {
                println!("{fresh}");
                eprintln!("it was signing: fresh key {fresh} signs from now on (not pre-published)");
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Err(e @ (KeyError::UnknownKey(_) | KeyError::AlreadyRevoked(_))) => {
            eprintln!("tessera: {e}");
            Ok(std::process::ExitCode::FAILURE)
        }
        Err(e) => Err(key_error(e)),
    }
}

fn cli_key_manager(config: &Config, store: Arc<dyn SigningKeyStore>) -> anyhow::Result<KeyManager> {
    let sealer = load_sealer(config, false)?;
    Ok(KeyManager::new(
        store,
        Arc::new(tessera_core::SystemClock),
        Arc::new(sealer),
        config.key_policy(),
    ))
}

fn print_keys(keys: &[KeyInfo], json: bool) -> anyhow::Result<()> {
    if json {
        let rows: Vec<Value> = keys
            .iter()
            .map(|k| {
                json!({
                    "kid": k.kid,
                    "alg": k.alg.as_str(),
                    "state": k.state,
                    "created_at": k.created_at.to_rfc3339(),
                    "activates_at": k.activates_at.to_rfc3339(),
                    "retires_at": k.retires_at.map(Timestamp::to_rfc3339),
                    "published": k.published,
                    "revoked_at": k.revoked_at.map(Timestamp::to_rfc3339),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<43}  {:<5}  {:<7}  {:<24}  {:<24}  {:<24}  PUBLISHED",
        "KID", "ALG", "STATE", "CREATED", "ACTIVATES", "RETIRES/REVOKED"
    );
    for k in keys {
        let state = serde_json::to_value(k.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        println!(
            "{:<43}  {:<5}  {:<7}  {:<24}  {:<24}  {:<24}  {}",
            k.kid,
            k.alg.as_str(),
            state,
            k.created_at.to_string(),
            k.activates_at.to_string(),
            k.revoked_at
                .or(k.retires_at)
                .map_or_else(|| String::from("-"), |t| t.to_string()),
            if k.published { "yes" } else { "no" }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
