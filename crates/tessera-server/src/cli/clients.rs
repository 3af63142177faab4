//! `tessera clients create|list|revoke`: OAuth clients registered at run
//! time in the store (core's `ClientStore`), beside `[[clients]]`. Running
//! services read the store on each client authentication, so a new or
//! revoked client counts at once on every node; a revocation is also a
//! `revoked` event named `client:<id>`, which the revocation feed carries to
//! resource servers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use clap::Subcommand;
use tessera_core::clients::{
    ClientJwks, GRANT_CLIENT_CREDENTIALS, KNOWN_GRANT_TYPES, Registration, client_revocation_key,
};
use tessera_core::model::{ClientRecord, EventKind, NewEvent, RevokeReason};
use tessera_core::{Client, ClientKind, Clock, Store, StoreError, SystemClock, TokenHash};

use crate::config::Config;

/// Prefix of generated client secrets (recognizable in a leak scan).
const SECRET_PREFIX: &str = "tcs_";

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a confidential client. With a secret (the default), prints
    /// the secret once on stdout (only its SHA-256 is stored); with
    /// `--jwks FILE`, the client authenticates with private_key_jwt.
    Create {
        /// The client id (1-128 printable characters, not one of [[clients]]).
        client_id: String,
        /// A JWK Set file with the client's public keys: private_key_jwt.
        #[arg(long, value_name = "FILE")]
        jwks: Option<PathBuf>,
        /// A scope the client may ask for (repeatable) [default: none].
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// An audience the client may ask for (repeatable)
        /// [default: [oauth] default_audience].
        #[arg(long = "audience", value_name = "AUD")]
        audiences: Vec<String>,
        /// A grant the client may use (repeatable) [default: client_credentials].
        #[arg(
            long = "grant-type",
            value_name = "GRANT",
            value_parser = clap::builder::PossibleValuesParser::new(KNOWN_GRANT_TYPES)
        )]
        grant_types: Vec<String>,
        /// Every token request of the client must carry a DPoP proof.
        #[arg(long)]
        dpop_bound_access_tokens: bool,
    },
    /// List the clients: those of [[clients]] and those in the store (never
    /// a secret).
    List,
    /// Revoke a stored client: its authentication fails at once on every
    /// node, introspection answers its tokens inactive, and the revocation
    /// feed names it (`client:<id>`), so resource servers refuse its tokens
    /// too.
    Revoke {
        /// The client id.
        client_id: String,
    },
}

fn new_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the OS random generator failed"))?;
    Ok(format!("{SECRET_PREFIX}{}", tessera_core::b64url::encode(&bytes)))
}

pub async fn run(cmd: ClientsCommand, config: &Config, store: Arc<dyn Store>) -> anyhow::Result<ExitCode> {
    let configured = config
        .client_registry()
        .map_err(|e| anyhow::anyhow!("[[clients]] {e}"))?;
    let now = SystemClock.now();
    match cmd {
        ClientsCommand::Create {
            client_id,
            jwks,
            scopes,
            audiences,
            grant_types,
            dpop_bound_access_tokens,
        } => {
            if configured.get(&client_id).is_some() {
                eprintln!(
                    "tessera: {client_id:?} is a client of the configuration ([[clients]] or the built-in default)"
                );
                return Ok(ExitCode::FAILURE);
            }
            let (jwks, secret) = match jwks {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    (Some(ClientJwks::from_json(&text)?), None)
                }
                None => (None, Some(new_secret()?)),
            };
            let client = Client {
                client_id: client_id.clone(),
                kind: ClientKind::Confidential,
                secret_sha256: secret.as_ref().map(|s| TokenHash::of_secret(s.as_bytes()).0),
                scopes,
                audiences: if audiences.is_empty() {
                    vec![config.oauth.default_audience.clone()]
                } else {
                    audiences
                },
                refresh_tokens: false,
                dpop_bound_access_tokens,
                jwks,
                grant_types: if grant_types.is_empty() {
                    vec![GRANT_CLIENT_CREDENTIALS.into()]
                } else {
                    grant_types
                },
            };
            client.validate().map_err(|e| anyhow::anyhow!(e))?;
            let record = ClientRecord {
                client_id: client_id.clone(),
                created_at: now,
                revoked_at: None,
                registration: Registration::of(&client).to_json(),
            };
            match store.insert_client(&record).await {
                Ok(()) => {}
                Err(StoreError::Duplicate) => {
                    eprintln!("tessera: a client {client_id:?} exists already (revoked ids are not reused)");
                    return Ok(ExitCode::FAILURE);
                }
                Err(e) => return Err(e).context("cannot store the client"),
            }
            if let Some(s) = &secret {
                println!("{s}");
            }
            eprintln!(
                "created client {client_id} ({}, grants: {}, scopes: {}, audiences: {}){}",
                client.auth_method().name(),
                client.grant_types.join(" "),
                client.scopes.join(" "),
                client.audiences.join(" "),
                if secret.is_some() {
                    "; the secret is shown only this once"
                } else {
                    ""
                }
            );
        }
        ClientsCommand::List => {
            println!(
                "{:<24}  {:<8}  {:<19}  {:<24}  {:<24}  {:<24}  STATUS",
                "CLIENT_ID", "SOURCE", "AUTH", "GRANTS", "SCOPES", "AUDIENCES"
            );
            let row = |c: &Client, source: &str, status: String| {
                println!(
                    "{:<24}  {:<8}  {:<19}  {:<24}  {:<24}  {:<24}  {status}",
                    c.client_id,
                    source,
                    c.auth_method().name(),
                    c.grant_types.join(" "),
                    c.scopes.join(" "),
                    c.audiences.join(" "),
                );
            };
            let mut ours: Vec<&Client> = configured.iter().collect();
            ours.sort_by(|a, b| a.client_id.cmp(&b.client_id));
            for c in ours {
                row(c, "config", String::from("active"));
            }
            for r in store.list_clients().await.context("cannot list clients")? {
                let status = match (r.revoked_at, configured.get(&r.client_id)) {
                    (_, Some(_)) => String::from("shadowed by [[clients]]"),
                    (Some(t), None) => format!("revoked {t}"),
                    (None, None) => format!("active since {}", r.created_at),
                };
                match Registration::client(&r) {
                    Ok(c) => row(&c, "store", status),
                    Err(e) => println!("{:<24}  store     unusable registration: {e}", r.client_id),
                }
            }
        }
        ClientsCommand::Revoke { client_id } => {
            if configured.get(&client_id).is_some() {
                eprintln!(
                    "tessera: {client_id:?} is configured in [[clients]]: remove it there (and restart or reload)"
                );
                return Ok(ExitCode::FAILURE);
            }
            if store
                .revoke_client(&client_id, now)
                .await
                .context("cannot revoke the client")?
            {
                // The revocation feed carries it too, so resource servers
                // following it refuse the client's tokens within a second.
                let key = client_revocation_key(&client_id);
                let event = NewEvent {
                    at: now,
                    kind: EventKind::Revoked,
                    subject: key.clone(),
                    handle: key,
                    reason: Some(RevokeReason::Operator),
                };
                if let Err(e) = store.append_events(&[event]).await {
                    eprintln!(
                        "tessera: revoked client {client_id}, but could not add it to the revocation feed ({e}): resource servers refuse its tokens only at their expiry"
                    );
                    return Ok(ExitCode::FAILURE);
                }
                eprintln!(
                    "revoked client {client_id}: refused at once on every node, its access tokens inactive at introspection and in the revocation feed"
                );
            } else {
                eprintln!("tessera: no active stored client {client_id}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
