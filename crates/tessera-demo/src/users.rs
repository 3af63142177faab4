//! The demo's own user table (SQLite, in the data directory) and argon2id
//! password hashes. Sessions live in Tessera's store, not here.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use rusqlite::{Connection, OptionalExtension, params};

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 1024;
pub const MAX_USERNAME_CHARS: usize = 64;

/// A row of `users`.
#[derive(Debug, Clone)]
pub struct User {
    /// The session subject: random, so it says nothing about the user.
    pub id: String,
    pub username: String,
    pub password_hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("that username is taken")]
    Taken,
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
    #[error("a blocking task failed: {0}")]
    Join(String),
}

/// The user table behind one connection (the demo is small; SQLite
/// serialises writers anyway). Every call runs on `spawn_blocking`.
#[derive(Clone)]
pub struct Users {
    conn: Arc<Mutex<Connection>>,
}

impl Users {
    /// Opens (creating it owner-only, 0600, if missing: it holds password
    /// hashes) the user database.
    pub fn open(path: &Path) -> anyhow::Result<Users> {
        if !path.exists() {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(false);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            opts.open(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
        }
        let conn = Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS users (
                 id            TEXT PRIMARY KEY,
                 username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
                 password_hash TEXT NOT NULL,
                 created_at    INTEGER NOT NULL
             ) STRICT;",
        )?;
        Ok(Users {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, UserError> + Send + 'static,
    ) -> Result<T, UserError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let c = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&c)
        })
        .await
        .map_err(|e| UserError::Join(e.to_string()))?
    }

    pub async fn create(&self, username: &str, password_hash: String) -> Result<User, UserError> {
        let user = User {
            id: tessera_core::secret::new_id("usr_"),
            username: username.to_owned(),
            password_hash,
        };
        let u = user.clone();
        self.with(move |c| {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            match c.execute(
                "INSERT INTO users (id, username, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![u.id, u.username, u.password_hash, now],
            ) {
                Ok(_) => Ok(()),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Err(UserError::Taken)
                }
                Err(e) => Err(e.into()),
            }
        })
        .await?;
        Ok(user)
    }

    pub async fn by_username(&self, username: &str) -> Result<Option<User>, UserError> {
        let name = username.to_owned();
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT id, username, password_hash FROM users WHERE username = ?1",
                params![name],
                row_to_user,
            )
            .optional()?)
        })
        .await
    }

    pub async fn by_id(&self, id: &str) -> Result<Option<User>, UserError> {
        let id = id.to_owned();
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT id, username, password_hash FROM users WHERE id = ?1",
                params![id],
                row_to_user,
            )
            .optional()?)
        })
        .await
    }

    pub async fn set_password_hash(&self, id: &str, hash: String) -> Result<(), UserError> {
        let id = id.to_owned();
        self.with(move |c| {
            c.execute(
                "UPDATE users SET password_hash = ?1 WHERE id = ?2",
                params![hash, id],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn delete(&self, id: &str) -> Result<(), UserError> {
        let id = id.to_owned();
        self.with(move |c| {
            c.execute("DELETE FROM users WHERE id = ?1", params![id])?;
            Ok(())
        })
        .await
    }
}

fn row_to_user(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        password_hash: r.get(2)?,
    })
}

/// Normalises and checks a username: trimmed, 1–64 characters, no control
/// characters.
pub fn check_username(raw: &str) -> Result<String, &'static str> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("Choose a username.");
    }
    if name.chars().count() > MAX_USERNAME_CHARS {
        return Err("Usernames are at most 64 characters.");
    }
    if name.chars().any(char::is_control) {
        return Err("Usernames cannot contain control characters.");
    }
    Ok(name.to_owned())
}

pub fn check_new_password(pw: &str) -> Result<(), &'static str> {
    if pw.chars().count() < MIN_PASSWORD_CHARS {
        return Err("Passwords need at least 8 characters.");
    }
    if pw.len() > MAX_PASSWORD_BYTES {
        return Err("Passwords are at most 1024 bytes.");
    }
    Ok(())
}

/// argon2id hashing, always off the async threads.
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    /// A hash of a random password, verified against when the username is
    /// unknown so that both cases take the same time.
    dummy: Arc<String>,
}

impl Passwords {
    /// OWASP's argon2id parameters (m = 19 MiB, t = 2, p = 1), the crate's
    /// defaults.
    pub fn new() -> anyhow::Result<Passwords> {
        Self::with_params(Params::default())
    }

    pub fn with_params(params: Params) -> anyhow::Result<Passwords> {
        let mut random = [0u8; 32];
        tessera_core::secret::fill_random(&mut random);
        let dummy = argon(&params)
            .hash_password(&random)
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))?
            .to_string();
        Ok(Passwords {
            params,
            dummy: Arc::new(dummy),
        })
    }

    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || {
            argon(&params)
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("argon2: {e}"))
        })
        .await?
    }

    /// Whether `password` matches `hash`; with no hash (unknown user) a
    /// dummy is checked and the answer is false.
    pub async fn verify(&self, password: String, hash: Option<String>) -> bool {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.as_ref().clone());
        let params = self.params.clone();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|h| argon(&params).verify_password(password.as_bytes(), &h).is_ok())
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        ok && known
    }
}

fn argon(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}
