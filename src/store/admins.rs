//! Instance admins: who may open the ops dashboard. Not a team role.

use super::users::{USER_COLUMNS, User};
use super::{Result, Store};

/// Whom an admin command is about.
#[derive(Debug, Clone)]
pub enum Who {
    /// A provider's subject (`google` and the account's `sub`, `dev` and the name...).
    Identity { provider: String, subject: String },
    /// The e-mail of an existing user.
    Email(String),
}

/// A user's columns, then when they were made an admin.
type AdminRow = (i64, String, String, String, Option<String>, Option<String>, i64);

impl Store {
    /// The users `who` names (more than one if an e-mail is shared across providers).
    pub async fn find_users(&self, who: &Who) -> Result<Vec<User>> {
        let users = match who {
            Who::Identity { provider, subject } => {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE provider = $1 AND subject = $2");
                sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(provider).bind(subject).fetch_all(&self.pool).await?
            }
            Who::Email(email) => {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower($1) ORDER BY id");
                sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(email).fetch_all(&self.pool).await?
            }
        };
        Ok(users)
    }

    /// Makes `user_id` an instance admin; false if they were one already.
    pub async fn grant_admin(&self, user_id: i64, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO instance_admins (user_id, granted_at) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Takes instance admin away from `user_id`; false if they were not one.
    pub async fn revoke_admin(&self, user_id: i64) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM instance_admins WHERE user_id = $1").bind(user_id).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every instance admin, with when they were made one.
    pub async fn admins(&self) -> Result<Vec<(User, i64)>> {
        let sql = format!(
            "SELECT {USER_COLUMNS}, a.granted_at FROM instance_admins a JOIN users ON users.id = a.user_id ORDER BY a.granted_at, users.id"
        );
        let rows: Vec<AdminRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(|(id, provider, subject, display_name, email, avatar_url, at)| {
                (User { id, provider, subject, display_name, email, avatar_url }, at)
            })
            .collect())
    }

    pub async fn is_admin(&self, user_id: i64) -> Result<bool> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT user_id FROM instance_admins WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}
