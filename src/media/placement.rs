//! Which node hosts a meeting's call. With one node (no Redis) it is always this one.
//! With several nodes sharing Redis, the first node asked for a meeting's ticket claims
//! the meeting (`SET NX` with a 30 s expiry) and keeps the claim alive while its room
//! lives; tickets minted on any node send the browser to the claiming node's relay (its
//! host, port and certificate hash). A node that dies loses its claims when they expire,
//! and the next ticket places the meeting again. (`SET … NX GET` needs Redis 7.)

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long a claim lasts without being renewed.
const CLAIM_TTL_SECONDS: u64 = 30;
/// How often a node renews the claims of the meetings it hosts.
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// Where a node's relay is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayAddress {
    /// The host browsers connect to; None means the host of the page itself.
    pub host: Option<String>,
    pub port: u16,
    /// SHA-256 of a development certificate (None for a real one).
    pub cert_hash: Option<Vec<u8>>,
}

/// Places meetings on nodes.
#[derive(Clone)]
pub struct Placement {
    redis: Option<redis::aio::ConnectionManager>,
    /// Keeps the meetings of deployments sharing one Redis apart.
    deployment: String,
}

impl Placement {
    fn key(&self, meeting_id: i64) -> String {
        format!("floo:{}:meeting:{meeting_id}:relay", self.deployment)
    }
}

impl Placement {
    /// Every meeting on this node.
    pub fn local() -> Placement {
        Placement { redis: None, deployment: String::new() }
    }

    /// Meetings of `deployment` placed through the Redis at `url`.
    pub async fn redis(url: &str, deployment: String) -> redis::RedisResult<Placement> {
        let client = redis::Client::open(url)?;
        Ok(Placement { redis: Some(redis::aio::ConnectionManager::new(client).await?), deployment })
    }

    /// The relay that hosts `meeting_id`, claiming it for `me` if nobody does. If Redis
    /// cannot be reached, this node hosts it (the call works; it may be split from people
    /// placed elsewhere until Redis is back).
    pub async fn locate(&self, meeting_id: i64, me: &RelayAddress) -> RelayAddress {
        let Some(mut redis) = self.redis.clone() else { return me.clone() };
        let mine = serde_json::to_string(me).unwrap_or_default();
        let claimed: redis::RedisResult<Option<String>> = redis::cmd("SET")
            .arg(self.key(meeting_id))
            .arg(&mine)
            .arg("NX")
            .arg("GET")
            .arg("EX")
            .arg(CLAIM_TTL_SECONDS)
            .query_async(&mut redis)
            .await;
        match claimed {
            // Nobody held it: it is ours now.
            Ok(None) => me.clone(),
            Ok(Some(holder)) => serde_json::from_str(&holder).unwrap_or_else(|_| me.clone()),
            Err(e) => {
                tracing::warn!(error = %e, meeting_id, "cannot place the meeting through Redis; hosting it here");
                me.clone()
            }
        }
    }

    /// Keeps the claims of the meetings `hosted()` returns alive, as `me()`, until the
    /// process ends.
    pub fn renew_forever(
        &self,
        hosted: impl Fn() -> Vec<i64> + Send + 'static,
        me: impl Fn() -> RelayAddress + Send + 'static,
    ) {
        let Some(mut redis) = self.redis.clone() else { return };
        let placement = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                let mine = serde_json::to_string(&me()).unwrap_or_default();
                for meeting_id in hosted() {
                    let renewed: redis::RedisResult<()> = redis::cmd("SET")
                        .arg(placement.key(meeting_id))
                        .arg(&mine)
                        .arg("EX")
                        .arg(CLAIM_TTL_SECONDS)
                        .query_async(&mut redis)
                        .await;
                    if let Err(e) = renewed {
                        tracing::warn!(error = %e, meeting_id, "cannot renew a meeting's placement");
                    }
                }
            }
        });
    }
}
