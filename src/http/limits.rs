//! Per-user limits, kept in memory on each node: how fast a user may post and create,
//! how many invite codes a user or an address may get wrong, how many live streams a
//! user may hold open; and the end of all streams at shutdown.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A token bucket per key (a user, an address): `burst` at once, then `per_minute`.
pub struct Rate<K> {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

/// How fast one user may post messages and comments.
pub type PostRate = Rate<i64>;

impl<K: Hash + Eq> Rate<K> {
    pub fn new(per_minute: u32, burst: u32) -> Rate<K> {
        Rate {
            burst: f64::from(burst.max(1)),
            per_second: f64::from(per_minute.max(1)) / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one from the key's allowance; Err(seconds to wait) when empty.
    pub fn allow(&self, key: K, now: Instant) -> Result<(), u64> {
        self.check(key, now, true)
    }

    /// Whether the key has any allowance left, taking none (for limits on failures:
    /// check before, [`Rate::allow`] after one).
    pub fn left(&self, key: K, now: Instant) -> Result<(), u64> {
        self.check(key, now, false)
    }

    fn check(&self, key: K, now: Instant, take: bool) -> Result<(), u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 100_000 {
            // Full buckets carry no information: forget them to bound memory.
            let burst = self.burst;
            let per_second = self.per_second;
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * per_second < burst);
        }
        let (tokens, at) = buckets.entry(key).or_insert((self.burst, now));
        let refilled = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        if refilled >= 1.0 {
            if take {
                *tokens = refilled - 1.0;
                *at = now;
            }
            Ok(())
        } else {
            Err(((1.0 - refilled) / self.per_second).ceil() as u64)
        }
    }
}

/// Who guesses invite codes: each signed-in user, and each address (many accounts from
/// one place).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Guesser {
    User(i64),
    Address(std::net::IpAddr),
}

/// Takes one creation (a team, a topic, a meeting) from the user's allowance; Err with
/// what to tell them (shown on the form, which keeps what they wrote).
pub fn allow_creation(state: &super::AppState, user_id: i64) -> Result<(), String> {
    state.create_rate.allow(user_id, Instant::now()).map_err(|wait| {
        format!("You are creating teams, topics and meetings faster than this server allows. Try again in {wait} s.")
    })
}

/// Counts open live streams per user.
pub struct StreamCap {
    max: usize,
    open: Arc<Mutex<HashMap<i64, usize>>>,
}

/// One open stream; dropping it frees the slot.
pub struct StreamSlot {
    user_id: i64,
    open: Arc<Mutex<HashMap<i64, usize>>>,
}

impl StreamCap {
    pub fn new(max: usize) -> StreamCap {
        StreamCap { max, open: Arc::default() }
    }

    /// A slot for one more stream of this user, or None at the cap.
    pub fn acquire(&self, user_id: i64) -> Option<StreamSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(user_id).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(StreamSlot { user_id, open: Arc::clone(&self.open) })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.user_id) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user_id);
            }
        }
    }
}

/// The refusal of one stream too many.
pub fn too_many_streams() -> super::Error {
    super::Error::TooMany("You have too many Floo pages open with live updates. Close some and reload this one.".into())
}

/// Resolves once the server starts shutting down (live streams then end).
pub async fn closed(closing: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = closing.wait_for(|closing| *closing).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn posts_are_allowed_in_a_burst_then_at_the_rate() {
        let rate = PostRate::new(60, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rate.allow(1, t0).is_ok());
        }
        assert_eq!(rate.allow(1, t0), Err(1));
        assert!(rate.allow(2, t0).is_ok(), "other users are not affected");
        assert!(rate.allow(1, t0 + Duration::from_millis(1000)).is_ok());
        assert!(rate.allow(1, t0 + Duration::from_millis(1100)).is_err());
    }

    #[test]
    fn looking_at_an_allowance_takes_none_of_it() {
        let rate = Rate::new(60, 1);
        let t0 = Instant::now();
        assert!(rate.left(Guesser::User(1), t0).is_ok());
        assert!(rate.left(Guesser::User(1), t0).is_ok());
        assert!(rate.allow(Guesser::User(1), t0).is_ok());
        assert_eq!(rate.left(Guesser::User(1), t0), Err(1));
        assert!(rate.left(Guesser::Address([127, 0, 0, 1].into()), t0).is_ok());
    }

    #[test]
    fn streams_are_capped_per_user_and_freed_on_drop() {
        let cap = StreamCap::new(2);
        let a = cap.acquire(1).unwrap();
        let _b = cap.acquire(1).unwrap();
        assert!(cap.acquire(1).is_none());
        assert!(cap.acquire(2).is_some());
        drop(a);
        assert!(cap.acquire(1).is_some());
    }
}
