//! Teams, their members with roles, and invite codes.

use std::fmt;

use super::{Result, Store, is_unique_violation};

/// A member's standing in a team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }

    /// Admins and the owner manage members, invites and meetings.
    pub fn is_admin(self) -> bool {
        self >= Role::Admin
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A team.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Team {
    pub id: i64,
    pub name: String,
    pub invite_code: String,
    pub created_at: i64,
}

/// A team as one of its members sees it in a list.
#[derive(Debug, Clone)]
pub struct TeamOfUser {
    pub team: Team,
    pub role: Role,
    pub member_count: i64,
}

/// A member of a team.
#[derive(Debug, Clone)]
pub struct Member {
    pub user_id: i64,
    pub display_name: String,
    pub email: Option<String>,
    pub role: Role,
    pub joined_at: i64,
}

fn role_of(s: &str) -> Result<Role> {
    Role::parse(s).ok_or_else(|| sqlx::Error::Decode(format!("unknown role {s:?}").into()).into())
}

impl Store {
    /// Creates a team owned by `owner_id`. `new_code` makes invite codes until one is unused.
    pub async fn create_team(
        &self,
        name: &str,
        owner_id: i64,
        now: i64,
        new_code: impl Fn() -> String,
    ) -> Result<Team> {
        loop {
            let mut tx = self.pool.begin().await?;
            let inserted = sqlx::query_as::<_, Team>(
                "INSERT INTO teams (name, invite_code, created_by, created_at) VALUES ($1, $2, $3, $4)
                 RETURNING id, name, invite_code, created_at",
            )
            .bind(name)
            .bind(new_code())
            .bind(owner_id)
            .bind(now)
            .fetch_one(&mut *tx)
            .await;
            let team = match inserted {
                Ok(team) => team,
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            };
            sqlx::query("INSERT INTO memberships (team_id, user_id, role, joined_at) VALUES ($1, $2, 'owner', $3)")
                .bind(team.id)
                .bind(owner_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(team);
        }
    }

    /// The team and the user's role in it, if they are a member.
    pub async fn team_membership(&self, team_id: i64, user_id: i64) -> Result<Option<(Team, Role)>> {
        let row: Option<(i64, String, String, i64, String)> = sqlx::query_as(
            "SELECT teams.id, teams.name, teams.invite_code, teams.created_at, memberships.role
             FROM teams JOIN memberships ON memberships.team_id = teams.id
             WHERE teams.id = $1 AND memberships.user_id = $2",
        )
        .bind(team_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(id, name, invite_code, created_at, role)| {
            Ok((Team { id, name, invite_code, created_at }, role_of(&role)?))
        })
        .transpose()
    }

    /// The teams a user belongs to, by name.
    pub async fn teams_of_user(&self, user_id: i64) -> Result<Vec<TeamOfUser>> {
        let rows: Vec<(i64, String, String, i64, String, i64)> = sqlx::query_as(
            "SELECT teams.id, teams.name, teams.invite_code, teams.created_at, m.role,
                    (SELECT COUNT(*) FROM memberships c WHERE c.team_id = teams.id)
             FROM teams JOIN memberships m ON m.team_id = teams.id
             WHERE m.user_id = $1 ORDER BY LOWER(teams.name), teams.id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, name, invite_code, created_at, role, member_count)| {
                Ok(TeamOfUser { team: Team { id, name, invite_code, created_at }, role: role_of(&role)?, member_count })
            })
            .collect()
    }

    /// Members of a team: owner first, then admins, then members, each by name.
    pub async fn team_members(&self, team_id: i64) -> Result<Vec<Member>> {
        let rows: Vec<(i64, String, Option<String>, String, i64)> = sqlx::query_as(
            "SELECT users.id, users.display_name, users.email, m.role, m.joined_at
             FROM memberships m JOIN users ON users.id = m.user_id
             WHERE m.team_id = $1
             ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END, LOWER(users.display_name), users.id",
        )
        .bind(team_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(user_id, display_name, email, role, joined_at)| {
                Ok(Member { user_id, display_name, email, role: role_of(&role)?, joined_at })
            })
            .collect()
    }

    /// One member of a team.
    pub async fn team_member(&self, team_id: i64, user_id: i64) -> Result<Option<Member>> {
        let row: Option<(i64, String, Option<String>, String, i64)> = sqlx::query_as(
            "SELECT users.id, users.display_name, users.email, m.role, m.joined_at
             FROM memberships m JOIN users ON users.id = m.user_id
             WHERE m.team_id = $1 AND m.user_id = $2",
        )
        .bind(team_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(user_id, display_name, email, role, joined_at)| {
            Ok(Member { user_id, display_name, email, role: role_of(&role)?, joined_at })
        })
        .transpose()
    }

    /// The team an invite code currently opens.
    pub async fn team_by_invite(&self, code: &str) -> Result<Option<Team>> {
        Ok(sqlx::query_as("SELECT id, name, invite_code, created_at FROM teams WHERE invite_code = $1")
            .bind(code)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Replaces a team's invite code; the old one stops working.
    pub async fn regenerate_invite(&self, team_id: i64, new_code: impl Fn() -> String) -> Result<String> {
        loop {
            let code = new_code();
            match sqlx::query("UPDATE teams SET invite_code = $1 WHERE id = $2")
                .bind(&code)
                .bind(team_id)
                .execute(&self.pool)
                .await
            {
                Ok(_) => return Ok(code),
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Adds a user to a team as a member; false if they already were one.
    pub async fn add_member(&self, team_id: i64, user_id: i64, now: i64) -> Result<bool> {
        let result = sqlx::query(
            "INSERT INTO memberships (team_id, user_id, role, joined_at) VALUES ($1, $2, 'member', $3)
             ON CONFLICT (team_id, user_id) DO NOTHING",
        )
        .bind(team_id)
        .bind(user_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Sets a member's role (never used to make or unmake the owner).
    pub async fn set_role(&self, team_id: i64, user_id: i64, role: Role) -> Result<()> {
        sqlx::query("UPDATE memberships SET role = $1 WHERE team_id = $2 AND user_id = $3 AND role <> 'owner'")
            .bind(role.as_str())
            .bind(team_id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes a member (never the owner).
    pub async fn remove_member(&self, team_id: i64, user_id: i64) -> Result<()> {
        sqlx::query("DELETE FROM memberships WHERE team_id = $1 AND user_id = $2 AND role <> 'owner'")
            .bind(team_id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn rename_team(&self, team_id: i64, name: &str) -> Result<()> {
        sqlx::query("UPDATE teams SET name = $1 WHERE id = $2").bind(name).bind(team_id).execute(&self.pool).await?;
        Ok(())
    }

    /// Deletes a team with its forum, meetings and memberships.
    pub async fn delete_team(&self, team_id: i64) -> Result<()> {
        // Explicit deletes, child first, so both backends behave the same whatever their
        // cascade settings.
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM recording_files WHERE recording_id IN (SELECT r.id FROM recordings r JOIN meetings m ON m.id = r.meeting_id WHERE m.team_id = $1)",
            "DELETE FROM recordings WHERE meeting_id IN (SELECT id FROM meetings WHERE team_id = $1)",
            "DELETE FROM attendance WHERE meeting_id IN (SELECT id FROM meetings WHERE team_id = $1)",
            "DELETE FROM meetings WHERE team_id = $1",
            "DELETE FROM messages WHERE topic_id IN (SELECT id FROM topics WHERE team_id = $1)",
            "DELETE FROM topics WHERE team_id = $1",
            "DELETE FROM memberships WHERE team_id = $1",
            "DELETE FROM teams WHERE id = $1",
        ] {
            sqlx::query(sql).bind(team_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
