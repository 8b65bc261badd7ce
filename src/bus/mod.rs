//! Live events: a message stored in a topic, a change on a team's pages, a member
//! removed. One interface, two implementations: in-process (the default) and Redis
//! pub/sub (`--redis-url`), which carries events between Floo nodes.
//!
//! The database is the source of truth: events are published after the data is
//! committed, and a reader that sees a gap, falls behind or is told to [`Bus::resyncs`]
//! re-reads from the database. So a lost event delays a message; it never loses one.

mod redis_link;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tokio::sync::{broadcast, watch};

use crate::store::Message;

/// How many events a slow reader may fall behind before it is told it lagged (and
/// re-reads from the database).
const CHANNEL_CAPACITY: usize = 256;

/// A message as it travels to live readers, encoded once per node.
#[derive(Debug)]
pub struct LiveMessage {
    pub team_id: i64,
    pub message: Message,
    /// The message as readers receive it, encoded by the first reader that sends it;
    /// every other reader on this node sends the same bytes.
    pub encoded: OnceLock<Bytes>,
}

/// A topic's new title and text, as live readers of it receive them.
#[derive(Debug)]
pub struct LiveTopic {
    pub team_id: i64,
    pub topic_id: i64,
    /// Its number in the topic's events (see [`crate::store::Message::event`]).
    pub event: i64,
    pub title: String,
    pub body: String,
    /// Encoded once per node, as messages are.
    pub encoded: OnceLock<Bytes>,
}

/// What changed.
#[derive(Debug, Clone)]
pub enum Event {
    /// A message was stored in a topic, edited or deleted (its `event` says which change).
    Message(Arc<LiveMessage>),
    /// A topic's title or text was edited.
    TopicEdited(Arc<LiveTopic>),
    /// A topic was deleted: its live streams end.
    TopicGone { topic_id: i64 },
    /// Something on a team's pages changed; `changed` says which part, so that a live
    /// page that does not show it is not rendered again.
    TeamChanged { team_id: i64, changed: Changed },
    /// A user is no longer a member of a team: their live streams of it close.
    MemberRemoved { team_id: i64, user_id: i64 },
}

/// Which parts of a team's pages a change touches (a set; combine with `|`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Changed(u8);

impl Changed {
    pub const NOTHING: Changed = Changed(0);
    /// A meeting started or ended, or someone joined or left one.
    pub const MEETINGS: Changed = Changed(1);
    /// The forum's list: a topic was created or got a message (its order and counts).
    pub const TOPICS: Changed = Changed(2);
    /// A recording started, stopped, moved on in its composition or got its video.
    pub const RECORDINGS: Changed = Changed(4);
    pub const EVERYTHING: Changed = Changed(7);

    pub fn touches(self, other: Changed) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for Changed {
    type Output = Changed;
    fn bitor(self, other: Changed) -> Changed {
        Changed(self.0 | other.0)
    }
}

impl std::ops::BitOrAssign for Changed {
    fn bitor_assign(&mut self, other: Changed) {
        self.0 |= other.0;
    }
}

/// Who listens to what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    Topic(i64),
    Team(i64),
    /// One member of one team: told when they are removed, so that only their streams wake.
    Member {
        team_id: i64,
        user_id: i64,
    },
}

impl Event {
    fn key(&self) -> Key {
        match self {
            Event::Message(m) => Key::Topic(m.message.topic_id),
            Event::TopicGone { topic_id } => Key::Topic(*topic_id),
            Event::TopicEdited(t) => Key::Topic(t.topic_id),
            Event::TeamChanged { team_id, .. } => Key::Team(*team_id),
            Event::MemberRemoved { team_id, user_id } => Key::Member { team_id: *team_id, user_id: *user_id },
        }
    }
}

/// Local fan-out: one broadcast channel per topic or team with listeners.
struct Hub {
    channels: Mutex<HashMap<Key, broadcast::Sender<Event>>>,
    /// Bumped when events may have been missed (the Redis link came back).
    resync: watch::Sender<u64>,
}

impl Hub {
    fn deliver(&self, event: Event) {
        let key = event.key();
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = channels.get(&key)
            && sender.send(event).is_err()
        {
            // Nobody listens any more: forget the channel.
            channels.remove(&key);
        }
    }

    fn subscribe(&self, key: Key) -> broadcast::Receiver<Event> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels.entry(key).or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0).subscribe()
    }

    fn resync(&self) {
        self.resync.send_modify(|generation| *generation += 1);
    }
}

/// The event bus; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    hub: Arc<Hub>,
    link: Option<redis_link::Link>,
}

/// The Redis link could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot use Redis at {url}: {source}")]
pub struct Error {
    url: String,
    source: redis::RedisError,
}

impl Bus {
    /// Events stay inside this process.
    pub fn in_process() -> Bus {
        Bus { hub: new_hub(), link: None }
    }

    /// Events also travel through Redis pub/sub to every node of `deployment` sharing it.
    pub async fn redis(url: &str, deployment: &str) -> Result<Bus, Error> {
        let hub = new_hub();
        let link = redis_link::Link::start(url, deployment, Arc::clone(&hub))
            .await
            .map_err(|source| Error { url: url.to_owned(), source })?;
        Ok(Bus { hub, link: Some(link) })
    }

    /// Delivers an event to this node's listeners at once and to other nodes through
    /// Redis. Never blocks; call it after the data is committed.
    pub fn publish(&self, event: Event) {
        if let Some(link) = &self.link {
            link.publish(&event);
        }
        self.hub.deliver(event);
    }

    pub fn subscribe(&self, key: Key) -> broadcast::Receiver<Event> {
        self.hub.subscribe(key)
    }

    /// Changes whenever events may have been missed; readers then re-read the database.
    pub fn resyncs(&self) -> watch::Receiver<u64> {
        self.hub.resync.subscribe()
    }

    /// Whether events reach other nodes (Redis is configured and connected).
    pub fn is_connected(&self) -> Option<bool> {
        self.link.as_ref().map(redis_link::Link::is_connected)
    }
}

fn new_hub() -> Arc<Hub> {
    Arc::new(Hub { channels: Mutex::new(HashMap::new()), resync: watch::channel(0).0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic_id: i64, seq: i64) -> Event {
        Event::Message(Arc::new(LiveMessage {
            team_id: 1,
            message: Message {
                id: seq,
                topic_id,
                seq,
                author_id: 1,
                author_name: "A".into(),
                body: "hi".into(),
                created_at: 0,
                event: seq,
                edited_at: None,
                deleted_at: None,
            },
            encoded: OnceLock::new(),
        }))
    }

    #[tokio::test]
    async fn listeners_get_only_their_topic() {
        let bus = Bus::in_process();
        let mut one = bus.subscribe(Key::Topic(1));
        let mut two = bus.subscribe(Key::Topic(2));
        bus.publish(message(1, 1));
        bus.publish(message(2, 1));
        let Ok(Event::Message(m)) = one.recv().await else { panic!("topic 1 gets its message") };
        assert_eq!(m.message.topic_id, 1);
        let Ok(Event::Message(m)) = two.recv().await else { panic!("topic 2 gets its message") };
        assert_eq!(m.message.topic_id, 2);
        assert!(one.try_recv().is_err());
    }

    #[tokio::test]
    async fn channels_without_listeners_are_forgotten() {
        let bus = Bus::in_process();
        drop(bus.subscribe(Key::Team(7)));
        bus.publish(Event::TeamChanged { team_id: 7, changed: Changed::MEETINGS });
        assert!(bus.hub.channels.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_slow_listener_is_told_it_lagged() {
        let bus = Bus::in_process();
        let mut slow = bus.subscribe(Key::Topic(1));
        for seq in 0..(CHANNEL_CAPACITY as i64 + 10) {
            bus.publish(message(1, seq));
        }
        assert!(matches!(slow.recv().await, Err(broadcast::error::RecvError::Lagged(_))));
    }
}
