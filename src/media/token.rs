//! Admission tokens: the meeting page asks for one, the relay admits a WebTransport
//! session only with a valid one. A token names the meeting and the user, expires
//! after a minute, and carries an HMAC-SHA-256 over both made with a secret that every
//! node on the same database shares (kept in the database), so that any node's relay
//! admits a token minted by any node's page. Each token carries a random id and admits
//! once per transport ([`UsedTickets`]): the page races WebTransport against the
//! WebSocket with one ticket, and asks for a fresh ticket for every reconnection.

use sha2::{Digest, Sha256};

use super::wire::Transport;

/// How long a token admits (it is used at once by the page that asked for it).
pub const TOKEN_TTL_MS: i64 = 60_000;

/// Who a valid token admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub meeting_id: i64,
    pub user_id: i64,
}

/// A genuine, unexpired token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub admission: Admission,
    /// Random, different for every token minted.
    pub id: u128,
    pub expires_ms: i64,
}

/// The tickets a relay has admitted, until they expire: a ticket admits one session per
/// transport, so a token seen in a log, a proxy or a browser's history admits nobody.
#[derive(Default)]
pub struct UsedTickets(std::sync::Mutex<std::collections::HashMap<(u128, Transport), i64>>);

impl UsedTickets {
    /// Records the ticket's use over `transport`; false if it was used that way already.
    pub fn first_use(&self, ticket: &Ticket, transport: Transport, now_ms: i64) -> bool {
        let mut used = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if used.len() >= 1024 {
            used.retain(|_, expires| *expires >= now_ms);
        }
        used.insert((ticket.id, transport), ticket.expires_ms).is_none()
    }
}

/// Signs and checks tokens with one secret.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl TokenKey {
    /// The deployment's key, kept in its database (made on first use); every node of the
    /// deployment has the same one.
    pub async fn of_deployment(store: &crate::store::Store) -> anyhow::Result<TokenKey> {
        use anyhow::Context;
        let fresh = TokenKey::random().to_hex();
        let kept = store.media_secret(&fresh).await.context("reading the media token secret")?;
        TokenKey::from_hex(&kept).context("the media token secret in the database is damaged")
    }

    pub fn random() -> TokenKey {
        let mut key = [0u8; 32];
        // The OS generator failing leaves no secure way to admit anyone.
        getrandom::fill(&mut key).unwrap_or_else(|e| panic!("the operating system's random generator failed: {e}"));
        TokenKey(key)
    }

    /// A short public name of the key (a digest, not the key): nodes sharing the key are
    /// one deployment.
    pub fn fingerprint(&self) -> String {
        hex(&Sha256::digest(self.0)[..8])
    }

    /// The key as hex, to keep it (see [`TokenKey::from_hex`]).
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// A key kept with [`TokenKey::to_hex`]; None unless it is 64 hex digits.
    pub fn from_hex(text: &str) -> Option<TokenKey> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut key = [0u8; 32];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let digits = std::str::from_utf8(pair).ok()?;
            key[i] = u8::from_str_radix(digits, 16).ok()?;
        }
        Some(TokenKey(key))
    }

    /// `meeting.user.expires.id.mac`
    pub fn mint(&self, admission: Admission, now_ms: i64) -> String {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).unwrap_or_else(|e| panic!("the operating system's random generator failed: {e}"));
        let id = u128::from_be_bytes(id);
        let body = format!("{}.{}.{}.{id:032x}", admission.meeting_id, admission.user_id, now_ms + TOKEN_TTL_MS);
        let mac = self.mac(body.as_bytes());
        format!("{body}.{}", hex(&mac))
    }

    /// The ticket a token is, if it is genuine and unexpired.
    pub fn verify(&self, token: &str, now_ms: i64) -> Option<Ticket> {
        if token.len() > 200 {
            return None;
        }
        let (body, mac) = token.rsplit_once('.')?;
        let expected = hex(&self.mac(body.as_bytes()));
        if !crate::auth::constant_time_eq(&expected, mac) {
            return None;
        }
        let mut parts = body.split('.');
        let meeting_id = parts.next()?.parse().ok()?;
        let user_id = parts.next()?.parse().ok()?;
        let expires_ms: i64 = parts.next()?.parse().ok()?;
        let id = u128::from_str_radix(parts.next()?, 16).ok()?;
        let admission = Admission { meeting_id, user_id };
        (parts.next().is_none() && now_ms <= expires_ms).then_some(Ticket { admission, id, expires_ms })
    }

    /// A MAC of `message` for another use than media tokens, as hex; `purpose` keeps the
    /// uses apart (media tokens start with a digit, purposes do not).
    pub fn sign(&self, purpose: &str, message: &[u8]) -> String {
        let mut framed = Vec::with_capacity(purpose.len() + 1 + message.len());
        framed.extend_from_slice(purpose.as_bytes());
        framed.push(0);
        framed.extend_from_slice(message);
        hex(&self.mac(&framed))
    }

    /// HMAC-SHA-256 (RFC 2104).
    fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut inner = Sha256::new();
        let mut outer = Sha256::new();
        let mut ipad = [0x36u8; 64];
        let mut opad = [0x5cu8; 64];
        for (i, k) in self.0.iter().enumerate() {
            ipad[i] ^= k;
            opad[i] ^= k;
        }
        inner.update(ipad);
        inner.update(message);
        outer.update(opad);
        outer.update(inner.finalize());
        outer.finalize().into()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_the_rfc_4231_vector() {
        // RFC 4231 test case 2 uses a 4-byte key; ours are 32 bytes, zero-padded the same way.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = TokenKey(key).mac(b"what do ya want for nothing?");
        assert_eq!(hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn tokens_admit_once_minted_and_not_when_forged_or_expired() {
        let key = TokenKey::random();
        let admission = Admission { meeting_id: 4, user_id: 9 };
        let token = key.mint(admission, 1_000);
        assert_eq!(key.verify(&token, 1_000).map(|t| t.admission), Some(admission));
        assert_ne!(
            key.verify(&key.mint(admission, 1_000), 1_000).map(|t| t.id),
            key.verify(&token, 1_000).map(|t| t.id)
        );
        assert_eq!(key.verify(&token, 1_000 + TOKEN_TTL_MS + 1), None, "expired");
        assert_eq!(key.verify(&token.replacen("4.", "5.", 1), 1_000), None, "another meeting");
        assert_eq!(TokenKey::random().verify(&token, 1_000), None, "another key");
        assert_eq!(key.verify("garbage", 1_000), None);
    }

    #[test]
    fn a_kept_key_admits_what_the_original_minted() {
        let key = TokenKey::random();
        let kept = TokenKey::from_hex(&key.to_hex()).expect("round trip");
        let token = key.mint(Admission { meeting_id: 1, user_id: 2 }, 0);
        assert_eq!(kept.verify(&token, 0).map(|t| t.admission), Some(Admission { meeting_id: 1, user_id: 2 }));
        assert!(TokenKey::from_hex("abc").is_none());
        assert!(TokenKey::from_hex(&"zz".repeat(32)).is_none());
    }

    #[test]
    fn a_ticket_admits_once_per_transport() {
        let key = TokenKey::random();
        let used = UsedTickets::default();
        let ticket = key.verify(&key.mint(Admission { meeting_id: 1, user_id: 2 }, 0), 0).expect("genuine");
        assert!(used.first_use(&ticket, Transport::WebTransport, 0));
        assert!(!used.first_use(&ticket, Transport::WebTransport, 1), "replayed");
        assert!(used.first_use(&ticket, Transport::WebSocket, 1), "the race's other transport");
        assert!(!used.first_use(&ticket, Transport::WebSocket, 2));
        let other = key.verify(&key.mint(Admission { meeting_id: 1, user_id: 2 }, 0), 0).expect("genuine");
        assert!(used.first_use(&other, Transport::WebTransport, 2), "a fresh ticket");
    }
}
