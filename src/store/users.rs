//! Users (keyed by provider and subject), sign-in sessions and pending OAuth logins.

use super::{Result, Store};

/// A person who signed in through a provider (or the dev login).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub provider: String,
    pub subject: String,
    pub display_name: String,
    pub email: Option<String>,
    pub avatar_url: Option<String>,
}

/// A login started at a provider and not yet finished: what the callback needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OAuthLogin {
    pub provider: String,
    pub pkce_verifier: String,
    pub return_to: String,
    pub created_at: i64,
}

pub(super) const USER_COLUMNS: &str =
    "users.id, users.provider, users.subject, users.display_name, users.email, users.avatar_url";

impl Store {
    /// Creates the user for (provider, subject) or refreshes its profile; returns it.
    pub async fn upsert_user(
        &self,
        provider: &str,
        subject: &str,
        display_name: &str,
        email: Option<&str>,
        avatar_url: Option<&str>,
        now: i64,
    ) -> Result<User> {
        let sql = format!(
            "INSERT INTO users (provider, subject, display_name, email, avatar_url, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (provider, subject) DO UPDATE
               SET display_name = excluded.display_name, email = excluded.email, avatar_url = excluded.avatar_url
             RETURNING {USER_COLUMNS}"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(provider)
            .bind(subject)
            .bind(display_name)
            .bind(email)
            .bind(avatar_url)
            .bind(now)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Records a new session for `user_id`, found later by the hash of its token.
    pub async fn create_session(&self, token_hash: &str, user_id: i64, now: i64, expires_at: i64) -> Result<()> {
        sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(token_hash)
            .bind(user_id)
            .bind(now)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The user of an unexpired session.
    pub async fn session_user(&self, token_hash: &str, now: i64) -> Result<Option<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM sessions JOIN users ON users.id = sessions.user_id
             WHERE sessions.token_hash = $1 AND sessions.expires_at > $2"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(token_hash).bind(now).fetch_optional(&self.pool).await?)
    }

    /// Ends a session (sign-out).
    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash).execute(&self.pool).await?;
        Ok(())
    }

    /// Forgets expired sessions and abandoned logins.
    pub async fn delete_expired_sessions(&self, now: i64, login_cutoff: i64) -> Result<u64> {
        let sessions = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM oauth_logins WHERE created_at < $1").bind(login_cutoff).execute(&self.pool).await?;
        Ok(sessions)
    }

    /// Remembers a login sent to a provider under its `state`.
    pub async fn insert_oauth_login(&self, state: &str, login: &OAuthLogin) -> Result<()> {
        sqlx::query(
            "INSERT INTO oauth_logins (state, provider, pkce_verifier, return_to, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(state)
        .bind(&login.provider)
        .bind(&login.pkce_verifier)
        .bind(&login.return_to)
        .bind(login.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes (and deletes, so it serves once) the login started under `state`.
    pub async fn take_oauth_login(&self, state: &str) -> Result<Option<OAuthLogin>> {
        Ok(sqlx::query_as(
            "DELETE FROM oauth_logins WHERE state = $1 RETURNING provider, pkce_verifier, return_to, created_at",
        )
        .bind(state)
        .fetch_optional(&self.pool)
        .await?)
    }
}
