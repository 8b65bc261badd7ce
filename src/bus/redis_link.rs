//! The bus across nodes: every event is published as JSON on its deployment's Redis
//! pub/sub channel and delivered by every other node to its local listeners. When the
//! link to Redis comes back after a loss, the node tells its readers to resync from the database
//! (they may have missed events) and tells the other nodes the same.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Changed, Event, Hub, LiveMessage, LiveTopic};
use crate::store::Message;

/// The pub/sub channel of one deployment (nodes sharing a database): deployments sharing
/// a Redis must not hear each other's events (their team and topic ids overlap).
fn channel(deployment: &str) -> String {
    format!("floo:{deployment}:events")
}
/// Events waiting for Redis beyond this are dropped (readers recover them on resync).
const QUEUE: usize = 4096;
/// Nothing a node publishes is this large; anything larger is refused.
const MAX_PAYLOAD: usize = 64 * 1024;

#[derive(Serialize, Deserialize)]
struct Envelope {
    /// The publishing node, which already delivered the event locally.
    node: String,
    #[serde(flatten)]
    event: Wire,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Wire {
    Message {
        team_id: i64,
        id: i64,
        topic_id: i64,
        seq: i64,
        author_id: i64,
        author_name: String,
        body: String,
        created_at: i64,
        /// Absent from an older node's events: a new message's event is its seq.
        #[serde(default)]
        event: Option<i64>,
        #[serde(default)]
        edited_at: Option<i64>,
        #[serde(default)]
        deleted_at: Option<i64>,
    },
    TopicEdited {
        team_id: i64,
        topic_id: i64,
        event: i64,
        title: String,
        body: String,
    },
    /// A topic was deleted: its readers' streams close.
    TopicGone {
        topic_id: i64,
    },
    TeamChanged {
        team_id: i64,
        /// Absent from an older node's events: everything, then.
        #[serde(default = "everything")]
        changed: Changed,
    },
    MemberRemoved {
        team_id: i64,
        user_id: i64,
    },
    /// A node's link came back: everyone re-reads what they may have missed.
    Resync,
}

impl Wire {
    fn from_event(event: &Event) -> Wire {
        match event {
            Event::Message(m) => {
                let msg = &m.message;
                Wire::Message {
                    team_id: m.team_id,
                    id: msg.id,
                    topic_id: msg.topic_id,
                    seq: msg.seq,
                    author_id: msg.author_id,
                    author_name: msg.author_name.clone(),
                    body: msg.body.clone(),
                    created_at: msg.created_at,
                    event: Some(msg.event),
                    edited_at: msg.edited_at,
                    deleted_at: msg.deleted_at,
                }
            }
            Event::TopicGone { topic_id } => Wire::TopicGone { topic_id: *topic_id },
            Event::TopicEdited(t) => Wire::TopicEdited {
                team_id: t.team_id,
                topic_id: t.topic_id,
                event: t.event,
                title: t.title.clone(),
                body: t.body.clone(),
            },
            Event::TeamChanged { team_id, changed } => Wire::TeamChanged { team_id: *team_id, changed: *changed },
            Event::MemberRemoved { team_id, user_id } => Wire::MemberRemoved { team_id: *team_id, user_id: *user_id },
        }
    }

    /// The event to deliver locally, or None for a resync request.
    fn into_event(self) -> Option<Event> {
        Some(match self {
            Wire::Message {
                team_id,
                id,
                topic_id,
                seq,
                author_id,
                author_name,
                body,
                created_at,
                event,
                edited_at,
                deleted_at,
            } => Event::Message(Arc::new(LiveMessage {
                team_id,
                message: Message {
                    id,
                    topic_id,
                    seq,
                    author_id,
                    author_name,
                    body,
                    created_at,
                    event: event.unwrap_or(seq),
                    edited_at,
                    deleted_at,
                },
                encoded: Default::default(),
            })),
            Wire::TopicGone { topic_id } => Event::TopicGone { topic_id },
            Wire::TopicEdited { team_id, topic_id, event, title, body } => Event::TopicEdited(Arc::new(LiveTopic {
                team_id,
                topic_id,
                event,
                title,
                body,
                encoded: Default::default(),
            })),
            Wire::TeamChanged { team_id, changed } => Event::TeamChanged { team_id, changed },
            Wire::MemberRemoved { team_id, user_id } => Event::MemberRemoved { team_id, user_id },
            Wire::Resync => return None,
        })
    }
}

fn everything() -> Changed {
    Changed::EVERYTHING
}

/// This node's link to Redis.
#[derive(Clone)]
pub struct Link {
    node: Arc<str>,
    /// The deployment's channel.
    channel: Arc<str>,
    outbox: mpsc::Sender<String>,
    connected: Arc<AtomicBool>,
}

impl Link {
    /// Connects (failing fast on a wrong URL or an unreachable server), then keeps the
    /// subscription and the publisher alive in background tasks.
    pub async fn start(url: &str, deployment: &str, hub: Arc<Hub>) -> redis::RedisResult<Link> {
        let client = redis::Client::open(url)?;
        let publisher = redis::aio::ConnectionManager::new(client.clone()).await?;
        let (outbox, inbox) = mpsc::channel(QUEUE);
        let link = Link {
            node: crate::auth::random_token()[..16].into(),
            channel: channel(deployment).into(),
            outbox,
            connected: Arc::new(AtomicBool::new(false)),
        };
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(subscribe_forever(client, hub, subscribed_tx, link.clone()));
        tokio::spawn(publish_forever(publisher, inbox, link.clone()));
        // Serve only once subscribed, so nothing published after start-up is missed.
        let _ = tokio::time::timeout(Duration::from_secs(10), subscribed_rx).await;
        Ok(link)
    }

    pub fn publish(&self, event: &Event) {
        self.send(Wire::from_event(event));
    }

    fn send(&self, event: Wire) {
        let envelope = Envelope { node: self.node.to_string(), event };
        match serde_json::to_string(&envelope) {
            Ok(payload) => {
                if self.outbox.try_send(payload).is_err() {
                    tracing::warn!("Redis outbox full; event dropped (readers on other nodes resync later)");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode bus event"),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

/// Publishes queued events in order. A failed publish is retried until Redis is back
/// (newer events wait in the queue meanwhile), then every node is asked to resync, for
/// whatever the outage may have cost them.
async fn publish_forever(mut conn: redis::aio::ConnectionManager, mut inbox: mpsc::Receiver<String>, link: Link) {
    while let Some(payload) = inbox.recv().await {
        let mut backoff = Duration::from_millis(100);
        let mut failed = false;
        loop {
            let result: redis::RedisResult<i64> =
                redis::cmd("PUBLISH").arg(&*link.channel).arg(&payload).query_async(&mut conn).await;
            match result {
                Ok(_) => break,
                Err(e) => {
                    if !failed {
                        tracing::warn!(error = %e, "cannot publish to Redis; retrying until it is back");
                    }
                    failed = true;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        if failed {
            tracing::info!("publishing to Redis again; asking every node to resync");
            link.send(Wire::Resync);
        }
    }
}

/// `subscribed` hears of the first subscription.
async fn subscribe_forever(
    client: redis::Client,
    hub: Arc<Hub>,
    subscribed: tokio::sync::oneshot::Sender<()>,
    link: Link,
) {
    let mut subscribed = Some(subscribed);
    let mut backoff = Duration::from_millis(100);
    let mut lost = false;
    loop {
        let attempt = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&*link.channel).await?;
            redis::RedisResult::Ok(pubsub)
        };
        match attempt.await {
            Ok(mut pubsub) => {
                link.connected.store(true, Ordering::Relaxed);
                backoff = Duration::from_millis(100);
                if let Some(tx) = subscribed.take() {
                    let _ = tx.send(());
                }
                if lost {
                    tracing::info!("Redis subscription restored; resyncing live readers");
                    hub.resync();
                    link.send(Wire::Resync);
                }
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    let Ok(payload) = msg.get_payload::<Vec<u8>>() else { continue };
                    if payload.len() > MAX_PAYLOAD {
                        tracing::warn!(bytes = payload.len(), "oversized bus event ignored");
                        continue;
                    }
                    match serde_json::from_slice::<Envelope>(&payload) {
                        Ok(envelope) if *envelope.node == *link.node => {}
                        Ok(envelope) => match envelope.event.into_event() {
                            Some(event) => hub.deliver(event),
                            None => hub.resync(),
                        },
                        Err(e) => tracing::warn!(error = %e, "undecodable bus event ignored"),
                    }
                }
                tracing::warn!("Redis subscription lost; reconnecting");
            }
            Err(e) => {
                if !lost {
                    tracing::warn!(error = %e, "cannot subscribe to Redis; retrying");
                }
            }
        }
        link.connected.store(false, Ordering::Relaxed);
        lost = true;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
