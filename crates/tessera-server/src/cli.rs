//! The `tessera` command line.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tessera_core::{ApiKeyScope, Clock, RevokeReason, Sessions, Store, SystemClock};

use crate::auth::ApiKeys;
use crate::config::{Config, LogFormat, Overrides};

#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    about = "Tessera: server-side sessions with revocation that takes effect",
    long_about = "Tessera: server-side sessions with revocation that takes effect.\n\n\
Configuration comes from a TOML file (--config), TESSERA_<SECTION>_<KEY> environment \
variables over it, and the flags below over both. See docs/configuration.md."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand takes.
#[derive(Debug, Clone, Default, Args)]
pub struct CommonArgs {
    /// TOML configuration file.
    #[arg(long, global = true, value_name = "FILE", env = "TESSERA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8080 [default: 127.0.0.1:8080].
    #[arg(long, global = true, value_name = "ADDR", env = "TESSERA_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Store URL: sqlite://PATH or memory:// [default: sqlite://<data-dir>/tessera.db].
    #[arg(long, global = true, value_name = "URL", env = "TESSERA_STORE")]
    pub store: Option<String>,
    /// Directory for the SQLite file and the bootstrap API key [default: ./data].
    #[arg(long, global = true, value_name = "DIR", env = "TESSERA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format [default: text].
    #[arg(long, global = true, value_enum, env = "TESSERA_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
}

impl CommonArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen,
            store: self.store.clone(),
            data_dir: self.data_dir.clone(),
            log_format: self.log_format,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service until SIGTERM or SIGINT.
    Serve,
    /// Manage backend API keys (Authorization: Bearer tsk_…).
    #[command(subcommand)]
    ApiKeys(ApiKeysCommand),
    /// Inspect and revoke sessions directly in the store.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Access-token signing keys in the store.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// OAuth clients registered at run time (beside [[clients]]).
    #[command(subcommand)]
    Clients(clients::ClientsCommand),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the OpenAPI 3.1 document of the HTTP API (what `GET
    /// /openapi.json` serves; committed as docs/openapi.json).
    Openapi,
}

#[derive(Debug, Subcommand)]
pub enum ApiKeysCommand {
    /// Create an API key and print it once on stdout.
    Create {
        /// A label for the key.
        #[arg(long, default_value = "cli")]
        name: String,
        /// What the key may do (repeatable): `sessions` (every /v1/sessions…
        /// and /v1/subjects… route), `events` (GET /v1/events), `revocations`
        /// (GET /v1/revocations, all a resource server needs) or `admin`
        /// (everything) [default: sessions].
        #[arg(
            long = "scope",
            value_name = "SCOPE",
            value_parser = clap::builder::PossibleValuesParser::new(ApiKeyScope::ALL.map(ApiKeyScope::as_str))
        )]
        scopes: Vec<String>,
    },
    /// List API keys (ids, names and scopes; never the keys).
    List,
    /// Revoke an API key by id (key_…).
    Revoke {
        /// The key's id, as shown by `api-keys list`.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List a subject's active sessions, newest first.
    List {
        /// The subject (user id).
        #[arg(long)]
        subject: String,
        /// Print JSON (the API's session view) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke one session by handle, all of a subject's sessions, or every
    /// active session of every subject (`--all`, e.g. after a breach).
    Revoke {
        /// The session handle (ses_…).
        #[arg(required_unless_present_any = ["subject", "all"], conflicts_with_all = ["subject", "all"])]
        handle: Option<String>,
        /// Revoke every active session of this subject.
        #[arg(long, conflicts_with = "all")]
        subject: Option<String>,
        /// Revoke every active session of every subject.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List signing keys: kid, alg, state, created, activates, retires, published.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a signing key that signs SECS from now (published at once).
    Rotate {
        /// Seconds until the new key signs [default: [keys] prepublish_secs];
        /// 0 = at once (emergency: verifiers must refetch the JWKS).
        #[arg(long = "in", value_name = "SECS", value_parser = clap::value_parser!(i64).range(0..))]
        activate_in: Option<i64>,
    },
    /// Withdraw a compromised signing key at once: it stops signing and
    /// leaves the JWKS, so the tokens it signed are refused; if it was
    /// signing, a fresh key takes over immediately (no pre-publication).
    Revoke {
        /// The key id (as `keys list` shows it).
        kid: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print it, as TOML, with secrets masked.
    Check,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(
        cli.common.config.as_deref(),
        std::env::vars_os(),
        &cli.common.overrides(),
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tessera: {e}");
            return ExitCode::from(2);
        }
    };
    crate::logging::init(config.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tessera: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command, config)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("tessera: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one parsed command.
pub async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => crate::serve::serve(config).await.map(|()| ExitCode::SUCCESS),
        Command::Openapi => {
            print!("{}", crate::openapi::json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check) => {
            print!("{}", config.to_masked_toml());
            Ok(ExitCode::SUCCESS)
        }
        Command::ApiKeys(cmd) => api_keys(cmd, &ApiKeys::new(open(&config)?, Duration::ZERO)).await,
        Command::Keys(KeysCommand::List { json }) => {
            crate::issuer::keys_list(&config, open(&config)?, json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(KeysCommand::Rotate { activate_in }) => {
            crate::issuer::keys_rotate(&config, open(&config)?, activate_in).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(KeysCommand::Revoke { kid }) => {
            crate::issuer::keys_revoke(&config, open(&config)?, &kid).await
        }
        Command::Clients(cmd) => clients::run(cmd, &config, open(&config)?).await,
        Command::Sessions(cmd) => {
            let store = open(&config)?;
            let sessions = Sessions::new(store, Arc::new(SystemClock), config.policy());
            sessions_cmd(cmd, &sessions).await
        }
    }
}

fn open(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let url = crate::config::mask_url_password(&config.store_url());
    if url == "memory://" {
        eprintln!(
            "tessera: note: memory:// is an empty in-process store; this command cannot see a running server's data"
        );
    }
    crate::open_store::open_store(config).with_context(|| format!("cannot open the store {url}"))
}

async fn api_keys(cmd: ApiKeysCommand, keys: &ApiKeys) -> anyhow::Result<ExitCode> {
    let now = SystemClock.now();
    match cmd {
        ApiKeysCommand::Create { name, scopes } => {
            // Least privilege: a key without --scope may only manage sessions.
            let scopes: Vec<ApiKeyScope> = if scopes.is_empty() {
                vec![ApiKeyScope::Sessions]
            } else {
                scopes.iter().filter_map(|s| s.parse().ok()).collect()
            };
            let (rec, secret) = keys
                .create(&name, &scopes, now)
                .await
                .context("cannot store the API key")?;
            println!("{}", secret.expose());
            eprintln!(
                "created API key {} ({:?}, scopes: {}); it is shown only this once",
                rec.id,
                rec.name,
                ApiKeyScope::join(&rec.scopes)
            );
        }
        ApiKeysCommand::List => {
            let listed = keys.list().await.context("cannot list API keys")?;
            println!(
                "{:<26}  {:<24}  {:<24}  {:<32}  STATUS",
                "ID", "NAME", "CREATED", "SCOPES"
            );
            for k in listed {
                let status = match k.revoked_at {
                    Some(t) => format!("revoked {t}"),
                    None => String::from("active"),
                };
                println!(
                    "{:<26}  {:<24}  {:<24}  {:<32}  {status}",
                    k.id,
                    k.name,
                    k.created_at.to_string(),
                    ApiKeyScope::join(&k.scopes)
                );
            }
        }
        ApiKeysCommand::Revoke { id } => {
            if keys.revoke(&id, now).await.context("cannot revoke the API key")? {
                eprintln!(
                    "revoked API key {id} (running servers may accept it for up to [http] api_key_cache_secs)"
                );
            } else {
                eprintln!("tessera: no active API key {id}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn sessions_cmd(cmd: SessionsCommand, sessions: &Sessions) -> anyhow::Result<ExitCode> {
    match cmd {
        SessionsCommand::List { subject, json } => {
            let list = sessions
                .list(&subject)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if json {
                let views: Vec<_> = list
                    .iter()
                    .map(|s| tessera_http::session_view::PublicSession::of(s))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                println!(
                    "{:<26}  {:<24}  {:<24}  {:<5}  DEVICE",
                    "HANDLE", "CREATED", "LAST SEEN", "LEVEL"
                );
                for s in list {
                    println!(
                        "{:<26}  {:<24}  {:<24}  {:<5}  {}",
                        s.handle,
                        s.created_at.to_string(),
                        s.last_seen_at.to_string(),
                        s.auth.level,
                        s.device.label
                    );
                }
            }
        }
        SessionsCommand::Revoke { all: true, .. } => {
            let n = sessions
                .revoke_everyone(RevokeReason::Operator, 500)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("revoked {n} session(s) of every subject");
        }
        SessionsCommand::Revoke { handle, subject, .. } => match (handle, subject) {
            (Some(h), _) => match sessions.revoke(&h, RevokeReason::Operator).await {
                Ok(true) => eprintln!("revoked {h}"),
                Ok(false) => eprintln!("{h} was already revoked"),
                Err(tessera_core::Error::NotFound) => {
                    eprintln!("tessera: no session {h}");
                    return Ok(ExitCode::FAILURE);
                }
                Err(e) => return Err(anyhow::anyhow!("{e}")),
            },
            (None, Some(s)) => {
                let n = sessions
                    .revoke_all(&s, None, RevokeReason::Operator)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                eprintln!("revoked {n} session(s) of {s:?}");
            }
            (None, None) => anyhow::bail!("give a HANDLE or --subject"),
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses arguments as the binary would (for tests).
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    Cli::try_parse_from(args)
}

mod clients;

#[cfg(test)]
mod tests;
