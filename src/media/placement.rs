//! Which node hosts a meeting's call. With one node (no Redis) it is always this one.
//! With several nodes sharing Redis, the first node asked for a meeting's ticket claims
//! the meeting (`SET NX` with a 30 s expiry) and keeps the claim alive while its room
//! lives; tickets minted on any node send the browser to the claiming node's relay (its
//! host, port and certificate hash). A node that dies loses its claims when they expire,
//! and the next ticket places the meeting again. (`SET … NX GET` needs Redis 7.)
//!
//! What acts on a call — start or stop recording it, end it — is carried out by the node
//! hosting it, whichever node the request reached: the asking node pushes a
//! [`CallCommand`] onto the host's inbox (a Redis list) and waits for the answer on a
//! list of its own.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long a claim lasts without being renewed.
const CLAIM_TTL_SECONDS: u64 = 30;

/// Prefixes a placement script with `holder_alive(held, prefix)`: whether the claim
/// `held` (a [`RelayAddress`] as JSON) names a node whose heartbeat (`prefix` NODE
/// `:alive`) has not lapsed. Written once for every script that asks it.
macro_rules! with_holder_alive {
    ($script:literal) => {
        concat!(
            "local function holder_alive(held, prefix) \
               local ok, claim = pcall(cjson.decode, held) \
               return ok and type(claim) == 'table' and type(claim.node) == 'string' \
                 and redis.call('EXISTS', prefix .. claim.node .. ':alive') == 1 \
             end ",
            $script
        )
    };
}
/// How often a node renews the claims of the meetings it hosts.
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How often a node says it is alive, and how long that holds.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
const HEARTBEAT_TTL_SECONDS: u64 = 3;
/// How often it tries again while Redis does not answer.
const RETRY_RENEW_EVERY: Duration = Duration::from_secs(1);
/// How long a node waits for the host of a call to answer a command.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);
/// How long the host waits for a command before asking again.
const INBOX_WAIT: Duration = Duration::from_secs(5);

/// Where a node's relay is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayAddress {
    /// The host browsers connect to; None means the host of the page itself.
    pub host: Option<String>,
    pub port: u16,
    /// SHA-256 of a development certificate (None for a real one).
    pub cert_hash: Option<Vec<u8>>,
    /// The node's own HTTP address, for the WebSocket fallback; None means the page's.
    #[serde(default)]
    pub node_url: Option<String>,
    /// The node's name for commands (new at each start, so a restarted node does not
    /// receive what was meant for its previous run).
    #[serde(default)]
    pub node: String,
}

/// Where a meeting's call is, as [`Placement::locate`] found it.
#[derive(Debug, Clone)]
pub struct Placed {
    pub at: RelayAddress,
    /// This node took the meeting over from a node that died: the attendance that node
    /// left open is stale.
    pub took_over: bool,
}

/// Why a call could not do what it was asked, in the user's terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CallError {
    /// The call cannot (nobody is in it, the recording is not running any more, the
    /// recordings directory refuses files).
    #[error("{0}")]
    Refused(String),
    /// Redis, the database or the call's host did not answer: worth trying again.
    #[error("{0}")]
    Unavailable(String),
}

/// Something only the node hosting a call can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallCommand {
    StartRecording { meeting_id: i64, recording_id: i64 },
    StopRecording { meeting_id: i64, recording_id: i64 },
    End { meeting_id: i64 },
}

/// A command on its way, with the list its answer goes to.
#[derive(Serialize, Deserialize)]
struct Request {
    command: CallCommand,
    answer_to: String,
    /// When the asker stops waiting (ms since the epoch): a command found later is dropped.
    expires_ms: i64,
}

/// What a node tells the others of itself every few seconds, for the ops dashboard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeReport {
    /// The node's name (new at each start) and where it serves HTTP.
    pub node: String,
    pub address: String,
    pub version: String,
    pub started_ms: i64,
    /// When this report was made.
    pub at_ms: i64,
    pub cpu_percent: f64,
    pub memory_bytes: i64,
    pub open_fds: i64,
    pub live_streams: i64,
    pub in_calls: i64,
    pub calls_hosted: i64,
}

/// A node whose report is older than this is shown as silent; one older than
/// [`FORGET_NODE_AFTER_MS`] is forgotten.
pub const NODE_SILENT_AFTER_MS: i64 = 15_000;
const FORGET_NODE_AFTER_MS: i64 = 3_600_000;

/// Places meetings on nodes.
#[derive(Clone)]
pub struct Placement {
    redis: Option<redis::aio::ConnectionManager>,
    /// For the blocking list reads (each gets a connection of its own).
    client: Option<redis::Client>,
    /// Keeps the meetings of deployments sharing one Redis apart.
    deployment: String,
}

impl Placement {
    fn key(&self, meeting_id: i64) -> String {
        format!("floo:{}:meeting:{meeting_id}:relay", self.deployment)
    }

    fn inbox(&self, node: &RelayAddress) -> String {
        format!("floo:{}:node:{}:inbox", self.deployment, node.node)
    }
}

impl Placement {
    /// Every meeting on this node.
    pub fn local() -> Placement {
        Placement { redis: None, client: None, deployment: String::new() }
    }

    /// Meetings of `deployment` placed through the Redis at `url`.
    pub async fn redis(url: &str, deployment: String) -> redis::RedisResult<Placement> {
        let client = redis::Client::open(url)?;
        let redis = redis::aio::ConnectionManager::new(client.clone()).await?;
        Ok(Placement { redis: Some(redis), client: Some(client), deployment })
    }

    fn alive_prefix(&self) -> String {
        format!("floo:{}:node:", self.deployment)
    }

    /// The relay that hosts `meeting_id`, claiming it for `me` if nobody does or if the
    /// node that held it has died (its heartbeat lapsed: see [`Placement::heartbeat_forever`]).
    /// If Redis cannot be reached, this node hosts it (the call works; it may be split
    /// from people placed elsewhere until Redis is back, when it is merged again).
    pub async fn locate(&self, meeting_id: i64, me: &RelayAddress) -> Placed {
        let here = |took_over| Placed { at: me.clone(), took_over };
        let Some(mut redis) = self.redis.clone() else { return here(false) };
        let mine = serde_json::to_string(me).unwrap_or_default();
        let claimed: redis::RedisResult<(i64, String)> = redis::cmd("EVAL")
            .arg(with_holder_alive!(
                "local held = redis.call('GET', KEYS[1]) \
                 if held and holder_alive(held, ARGV[3]) then return {0, held} end \
                 redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) \
                 if held then return {2, held} end return {1, ''}"
            ))
            .arg(1)
            .arg(self.key(meeting_id))
            .arg(&mine)
            .arg(CLAIM_TTL_SECONDS)
            .arg(self.alive_prefix())
            .query_async(&mut redis)
            .await;
        match claimed {
            Ok((0, holder)) => {
                Placed { at: serde_json::from_str(&holder).unwrap_or_else(|_| me.clone()), took_over: false }
            }
            // Nobody held it, or its holder died: it is ours now.
            Ok((2, dead)) => {
                tracing::warn!(meeting_id, %dead, "the node hosting this meeting died; hosting it here");
                here(true)
            }
            Ok(_) => here(false),
            Err(e) => {
                tracing::warn!(error = %e, meeting_id, "cannot place the meeting through Redis; hosting it here");
                here(false)
            }
        }
    }

    /// Says every second that node `node` is alive, for 3 s: a node killed outright stops,
    /// and the others take over its meetings at once rather than after a claim's 30 s.
    pub fn heartbeat_forever(&self, node: String) {
        let Some(mut redis) = self.redis.clone() else { return };
        let key = format!("{}{node}:alive", self.alive_prefix());
        tokio::spawn(async move {
            loop {
                let beat: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("EX")
                    .arg(HEARTBEAT_TTL_SECONDS)
                    .query_async(&mut redis)
                    .await;
                if let Err(e) = beat {
                    tracing::debug!(error = %e, "cannot send this node's heartbeat");
                }
                tokio::time::sleep(HEARTBEAT_EVERY).await;
            }
        });
    }

    /// Whether nodes share Redis (and so report to each other).
    pub fn is_shared(&self) -> bool {
        self.redis.is_some()
    }

    fn nodes_key(&self) -> String {
        format!("floo:{}:nodes", self.deployment)
    }

    /// Tells the other nodes of this one (a field of one hash per deployment).
    pub async fn report(&self, report: &NodeReport) -> redis::RedisResult<()> {
        let Some(mut redis) = self.redis.clone() else { return Ok(()) };
        let json = serde_json::to_string(report).unwrap_or_default();
        redis::cmd("HSET").arg(self.nodes_key()).arg(&report.node).arg(json).query_async(&mut redis).await
    }

    /// Every node's latest report, the longest-running first; reports older than an hour
    /// (nodes long gone) are removed on the way.
    pub async fn nodes(&self, now_ms: i64) -> redis::RedisResult<Vec<NodeReport>> {
        let Some(mut redis) = self.redis.clone() else { return Ok(Vec::new()) };
        let all: std::collections::HashMap<String, String> =
            redis::cmd("HGETALL").arg(self.nodes_key()).query_async(&mut redis).await?;
        let mut reports = Vec::new();
        for (node, json) in all {
            match serde_json::from_str::<NodeReport>(&json) {
                Ok(r) if now_ms - r.at_ms < FORGET_NODE_AFTER_MS => reports.push(r),
                _ => {
                    let _: redis::RedisResult<()> =
                        redis::cmd("HDEL").arg(self.nodes_key()).arg(node).query_async(&mut redis).await;
                }
            }
        }
        reports.sort_by(|a, b| a.started_ms.cmp(&b.started_ms).then_with(|| a.node.cmp(&b.node)));
        Ok(reports)
    }

    /// If the node that claimed `meeting_id` has died: drops its claim and returns true
    /// (for one asker only), so that its stale attendance can be closed.
    pub async fn forget_dead_host(&self, meeting_id: i64) -> bool {
        let Some(mut redis) = self.redis.clone() else { return false };
        let forgotten: redis::RedisResult<i64> = redis::cmd("EVAL")
            .arg(with_holder_alive!(
                "local held = redis.call('GET', KEYS[1]) \
                 if held and not holder_alive(held, ARGV[1]) then return redis.call('DEL', KEYS[1]) end \
                 return 0"
            ))
            .arg(1)
            .arg(self.key(meeting_id))
            .arg(self.alive_prefix())
            .query_async(&mut redis)
            .await;
        forgotten.is_ok_and(|n| n == 1)
    }

    /// Gives up this node's claim on `meeting_id` (shutting down), so that the next person
    /// to ask places it on a node that stays; a claim another node holds is left alone.
    pub async fn release(&self, meeting_id: i64, me: &RelayAddress) {
        let Some(mut redis) = self.redis.clone() else { return };
        let released: redis::RedisResult<i64> = redis::cmd("EVAL")
            .arg(
                "local held = redis.call('GET', KEYS[1]) \
                 if held and string.find(held, ARGV[1], 1, true) then return redis.call('DEL', KEYS[1]) end return 0",
            )
            .arg(1)
            .arg(self.key(meeting_id))
            .arg(node_marker(&me.node))
            .query_async(&mut redis)
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, meeting_id, "cannot release a meeting's placement; it lapses in 30 s");
        }
    }

    /// Keeps the claims of the meetings `hosted()` returns alive, as `me()`, until the
    /// process ends. A claim that lapsed (Redis restarted, or was out of reach longer than
    /// a claim lives) is taken back as soon as Redis answers again: while renewing fails,
    /// it is tried every second. A meeting another node claimed meanwhile is a split call:
    /// `lost(meeting)` is called, and this node hands its participants over to that one.
    pub fn renew_forever(
        &self,
        hosted: impl Fn() -> Vec<i64> + Send + 'static,
        me: impl Fn() -> RelayAddress + Send + 'static,
        lost: impl Fn(i64) + Send + 'static,
    ) {
        let Some(mut redis) = self.redis.clone() else { return };
        let placement = self.clone();
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(if failing { RETRY_RENEW_EVERY } else { RENEW_EVERY }).await;
                let me = me();
                let mine = serde_json::to_string(&me).unwrap_or_default();
                let was_failing = std::mem::take(&mut failing);
                for meeting_id in hosted() {
                    match hold(&mut redis, &placement.key(meeting_id), &mine, &me.node, &placement.alive_prefix()).await
                    {
                        Ok(None) if was_failing => tracing::info!(meeting_id, "meeting placement taken back"),
                        Ok(None) => {}
                        Ok(Some(holder)) => {
                            tracing::warn!(meeting_id, %holder, "another node hosts this meeting now; handing the call over");
                            lost(meeting_id);
                        }
                        Err(e) => {
                            failing = true;
                            tracing::warn!(error = %e, meeting_id, "cannot renew a meeting's placement");
                        }
                    }
                }
            }
        });
    }
    /// The relay hosting `meeting_id` if it is not `me` (None: here, or nowhere yet); an
    /// error if Redis cannot tell.
    pub async fn elsewhere(&self, meeting_id: i64, me: &RelayAddress) -> Result<Option<RelayAddress>, CallError> {
        let Some(mut redis) = self.redis.clone() else { return Ok(None) };
        // One round trip: the claim, if its holder is alive.
        let holder: Option<String> = redis::cmd("EVAL")
            .arg(with_holder_alive!(
                "local held = redis.call('GET', KEYS[1]) \
                 if held and holder_alive(held, ARGV[1]) then return held end return false"
            ))
            .arg(1)
            .arg(self.key(meeting_id))
            .arg(self.alive_prefix())
            .query_async(&mut redis)
            .await
            .map_err(|e| CallError::Unavailable(format!("the server hosting this call cannot be found ({e})")))?;
        let host = holder.and_then(|h| serde_json::from_str::<RelayAddress>(&h).ok());
        Ok(host.filter(|host| host.node != me.node))
    }

    /// Has the node at `host` carry out `command`, and returns its answer.
    pub async fn ask(&self, host: &RelayAddress, command: CallCommand) -> Result<(), CallError> {
        let unreachable = |e: redis::RedisError| {
            CallError::Unavailable(format!("the server hosting this call cannot be reached ({e})"))
        };
        let client = self.client.as_ref().ok_or_else(|| CallError::Refused("no other server hosts calls".into()))?;
        let mut redis = blocking_connection(client, ANSWER_WITHIN).await.map_err(unreachable)?;
        let answer_to = format!("floo:{}:answer:{}", self.deployment, crate::media::token::TokenKey::random().to_hex());
        let expires_ms = crate::clock::now_ms() + ANSWER_WITHIN.as_millis() as i64;
        let request =
            serde_json::to_string(&Request { command, answer_to: answer_to.clone(), expires_ms }).unwrap_or_default();
        let inbox = self.inbox(host);
        let () = redis::pipe()
            .cmd("RPUSH")
            .arg(&inbox)
            .arg(&request)
            .ignore()
            // An inbox nobody reads (its node died) does not outlive its commands for long.
            .cmd("EXPIRE")
            .arg(&inbox)
            .arg(CLAIM_TTL_SECONDS)
            .ignore()
            .query_async(&mut redis)
            .await
            .map_err(unreachable)?;
        let answer: Option<(String, String)> = redis::cmd("BLPOP")
            .arg(&answer_to)
            .arg(ANSWER_WITHIN.as_secs_f64())
            .query_async(&mut redis)
            .await
            .map_err(unreachable)?;
        match answer {
            Some((_, answer)) => serde_json::from_str::<Result<(), CallError>>(&answer).map_err(|e| {
                CallError::Unavailable(format!("the call's host answered in a way this server cannot read ({e})"))
            })?,
            None => Err(CallError::Unavailable("the server hosting this call did not answer".into())),
        }
    }

    /// Carries out the commands other nodes send to `me`, with `act`, until the process
    /// ends. Each runs in a task of its own; its answer waits a minute to be collected.
    pub fn serve<F, Fut>(&self, me: RelayAddress, act: F)
    where
        F: Fn(CallCommand) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), CallError>> + Send + 'static,
    {
        let (Some(client), Some(replies)) = (self.client.clone(), self.redis.clone()) else { return };
        let inbox = self.inbox(&me);
        let act = std::sync::Arc::new(act);
        tokio::spawn(async move {
            loop {
                let mut redis = match blocking_connection(&client, INBOX_WAIT).await {
                    Ok(redis) => redis,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot reach Redis for call commands; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                loop {
                    let next: redis::RedisResult<Option<(String, String)>> =
                        redis::cmd("BLPOP").arg(&inbox).arg(INBOX_WAIT.as_secs()).query_async(&mut redis).await;
                    let request = match next {
                        Ok(Some((_, request))) => request,
                        Ok(None) => continue,
                        Err(e) => {
                            tracing::warn!(error = %e, "lost Redis while waiting for call commands; reconnecting");
                            break;
                        }
                    };
                    let Ok(request) = serde_json::from_str::<Request>(&request) else {
                        tracing::warn!("ignoring a malformed call command");
                        continue;
                    };
                    if request.expires_ms < crate::clock::now_ms() {
                        tracing::info!(command = ?request.command, "ignoring a call command nobody waits for any more");
                        continue;
                    }
                    let (act, mut replies) = (act.clone(), replies.clone());
                    tokio::spawn(async move {
                        let answer = serde_json::to_string(&act(request.command).await).unwrap_or_default();
                        let sent: redis::RedisResult<()> = redis::pipe()
                            .cmd("RPUSH")
                            .arg(&request.answer_to)
                            .arg(answer)
                            .ignore()
                            .cmd("EXPIRE")
                            .arg(&request.answer_to)
                            .arg(60)
                            .ignore()
                            .query_async(&mut replies)
                            .await;
                        if let Err(e) = sent {
                            tracing::warn!(error = %e, "cannot answer a call command");
                        }
                    });
                }
            }
        });
    }
}

/// Work that one node of a deployment does at a time (composing a recording): held while
/// this value lives, renewed every 10 s; left to expire when dropped or when its node dies.
pub struct Lease {
    renewing: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(task) = self.renewing.take() {
            task.abort();
        }
    }
}

impl Placement {
    /// Takes the lease on `what`, unless another node holds it (None). With one node, or
    /// when Redis cannot be reached, it is always this node's.
    pub async fn lease(&self, what: &str) -> Option<Lease> {
        let Some(mut redis) = self.redis.clone() else { return Some(Lease { renewing: None }) };
        let key = format!("floo:{}:lease:{what}", self.deployment);
        let mine = crate::media::token::TokenKey::random().to_hex();
        let taken: redis::RedisResult<Option<String>> = redis::cmd("SET")
            .arg(&key)
            .arg(&mine)
            .arg("NX")
            .arg("EX")
            .arg(CLAIM_TTL_SECONDS)
            .query_async(&mut redis)
            .await;
        match taken {
            Ok(Some(_)) => {}
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, what, "cannot take a lease through Redis; going ahead here");
                return Some(Lease { renewing: None });
            }
        }
        let renewing = tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                // Renewed only while it is still ours (or lapsed with nobody taking it).
                let renewed: redis::RedisResult<i64> = redis::cmd("EVAL")
                    .arg(RENEW_IF_MINE)
                    .arg(1)
                    .arg(&key)
                    .arg(&mine)
                    .arg(CLAIM_TTL_SECONDS)
                    .query_async(&mut redis)
                    .await;
                match renewed {
                    Ok(1) => {}
                    Ok(_) => tracing::warn!(key, "a lease passed to another node"),
                    Err(e) => tracing::warn!(error = %e, key, "cannot renew a lease"),
                }
            }
        });
        Some(Lease { renewing: Some(renewing) })
    }
}

/// Sets KEYS[1] to ARGV[1] for ARGV[2] seconds if it holds ARGV[1] or nothing; 1 if so.
const RENEW_IF_MINE: &str = "local held = redis.call('GET', KEYS[1]) \
    if held == false or held == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) return 1 end \
    return 0";

/// Sets a meeting's claim `key` to `value` for another claim period.
/// Renews (or takes back) this node's claim unless another node holds it: None if the
/// claim is this node's now, else the holder's address.
async fn hold(
    redis: &mut redis::aio::ConnectionManager,
    key: &str,
    value: &str,
    node: &str,
    alive_prefix: &str,
) -> redis::RedisResult<Option<String>> {
    // The node id decides whose a claim is (the rest of the address changes with a new
    // development certificate).
    redis::cmd("EVAL")
        .arg(with_holder_alive!(
            "local held = redis.call('GET', KEYS[1]) \
             if held and not string.find(held, ARGV[3], 1, true) and holder_alive(held, ARGV[4]) then \
               return held end \
             redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) return false"
        ))
        .arg(1)
        .arg(key)
        .arg(value)
        .arg(CLAIM_TTL_SECONDS)
        .arg(node_marker(node))
        .arg(alive_prefix)
        .query_async(redis)
        .await
}

/// How a node's id appears in a claim (the JSON of its [`RelayAddress`]).
fn node_marker(node: &str) -> String {
    format!("\"node\":{}", serde_json::Value::String(node.to_owned()))
}

/// A connection of its own for `BLPOP`, which waits longer than the default response
/// timeout allows: `wait` plus a margin, so that a connection that went dead is noticed.
async fn blocking_connection(
    client: &redis::Client,
    wait: Duration,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(wait + Duration::from_secs(5)));
    client.get_multiplexed_async_connection_with_config(&config).await
}
