//! What each member has read: per topic, the `seq` of the last message they saw. A topic
//! is new for them when it has messages after that — or, never opened, when it had
//! messages after they joined the team (what came before is not news to a newcomer).

use std::collections::HashMap;

use super::{Result, Store};

impl Store {
    /// `user_id` has seen `topic_id` up to message `seq` (never moves back).
    pub async fn mark_read(&self, user_id: i64, topic_id: i64, seq: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO topic_reads (user_id, topic_id, last_seq) VALUES ($1, $2, $3)
             ON CONFLICT (user_id, topic_id) DO UPDATE SET last_seq =
                 CASE WHEN excluded.last_seq > topic_reads.last_seq THEN excluded.last_seq ELSE topic_reads.last_seq END",
        )
        .bind(user_id)
        .bind(topic_id)
        .bind(seq)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// How far `user_id` has read each topic of `team_id` they opened, and when they
    /// joined the team (Unix ms).
    pub async fn reads_in_team(&self, user_id: i64, team_id: i64) -> Result<(HashMap<i64, i64>, i64)> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT r.topic_id, r.last_seq FROM topic_reads r JOIN topics t ON t.id = r.topic_id
             WHERE r.user_id = $1 AND t.team_id = $2",
        )
        .bind(user_id)
        .bind(team_id)
        .fetch_all(&self.pool)
        .await?;
        let joined: Option<(i64,)> =
            sqlx::query_as("SELECT joined_at FROM memberships WHERE user_id = $1 AND team_id = $2")
                .bind(user_id)
                .bind(team_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok((rows.into_iter().collect(), joined.map_or(0, |j| j.0)))
    }

    /// For each of the user's teams, how many topics have messages new to them.
    pub async fn unread_topics(&self, user_id: i64) -> Result<HashMap<i64, i64>> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT t.team_id, COUNT(*) FROM topics t
             JOIN memberships ms ON ms.team_id = t.team_id AND ms.user_id = $1
             LEFT JOIN topic_reads r ON r.topic_id = t.id AND r.user_id = $1
             WHERE t.last_seq > COALESCE(r.last_seq, 0) AND (r.topic_id IS NOT NULL OR t.last_activity_at > ms.joined_at)
             GROUP BY t.team_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }
}
