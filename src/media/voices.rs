//! Which voices the relay forwards in a large meeting: the few loudest unmuted speakers
//! (three by default), chosen from the level every audio frame carries (RFC 6464 style,
//! 0 loudest, 127 silence), so that no browser decodes a hundred voices and nobody who
//! speaks goes unheard. Sans-IO like the room: frames and the time go in, the selection
//! comes out.
//!
//! The rules, with their reasons:
//! - A voice is *speaking* in a frame at [`SPEAKING_LEVEL`] or louder; how loud it speaks
//!   is an average over its speaking frames only, so a pause does not make it quieter.
//! - A speaking voice takes a free place at once, on its first loud frame: its first
//!   syllable is heard (the room then sends its current group from the group's start).
//! - When all places are taken, it takes the place of the quietest chosen voice if that
//!   one has not spoken for [`HOLD`] (a pause between sentences keeps one's place), or
//!   if it speaks louder than that one by [`DISPLACE_MARGIN`] (hysteresis: two voices of
//!   about the same loudness do not swap places back and forth).
//! - A voice that leaves or mutes frees its place at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::room::SessionId;

/// How loud counts as speaking (RFC 6464 level, -dBov; 50 is fairly quiet speech).
pub const SPEAKING_LEVEL: u8 = 50;
/// How long a chosen voice keeps its place through a pause however loud others are.
pub const HOLD: Duration = Duration::from_millis(1500);
/// How much louder (127 minus the level) a voice must speak to take the place of a
/// chosen one that is still speaking.
pub const DISPLACE_MARGIN: f32 = 12.0;
/// The weight of one speaking frame in a voice's average loudness.
const SPEECH_WEIGHT: f32 = 0.2;

struct Voice {
    /// How loud it speaks: 127 minus the level, averaged over its speaking frames.
    loudness: f32,
    /// When it last spoke.
    spoke: Instant,
}

/// The voices of one meeting and which of them are forwarded.
pub struct Voices {
    places: usize,
    voices: HashMap<SessionId, Voice>,
    chosen: Vec<SessionId>,
}

impl Voices {
    /// At most `places` voices are forwarded; 0 forwards every voice.
    pub fn new(places: usize) -> Voices {
        Voices { places, voices: HashMap::new(), chosen: Vec::new() }
    }

    /// Whether every voice is forwarded (no selection).
    pub fn all(&self) -> bool {
        self.places == 0
    }

    /// Whether `session`'s voice is forwarded now.
    pub fn is_chosen(&self, session: SessionId) -> bool {
        self.all() || self.chosen.contains(&session)
    }

    /// The forwarded voices, in the order they took their places.
    pub fn chosen(&self) -> &[SessionId] {
        &self.chosen
    }

    /// An audio frame of `session` at `level`; true if the choice changed.
    pub fn heard(&mut self, now: Instant, session: SessionId, level: u8) -> bool {
        if level > SPEAKING_LEVEL || self.all() {
            return false;
        }
        let loud = f32::from(127 - level);
        let voice = self.voices.entry(session).or_insert(Voice { loudness: loud, spoke: now });
        voice.loudness += (loud - voice.loudness) * SPEECH_WEIGHT;
        voice.spoke = now;
        let candidate = voice.loudness;
        if self.chosen.contains(&session) {
            return false;
        }
        if self.chosen.len() < self.places {
            self.chosen.push(session);
            return true;
        }
        // The place of whoever has paused longest past the hold, else of the quietest if
        // the newcomer speaks louder by the margin.
        let places = self.chosen.iter().enumerate().filter_map(|(i, s)| self.voices.get(s).map(|v| (i, v)));
        let paused = places
            .clone()
            .filter(|(_, v)| now.saturating_duration_since(v.spoke) >= HOLD)
            .min_by_key(|(_, v)| v.spoke)
            .map(|(i, _)| i);
        let quietest = places
            .min_by(|a, b| a.1.loudness.total_cmp(&b.1.loudness))
            .filter(|(_, v)| candidate > v.loudness + DISPLACE_MARGIN)
            .map(|(i, _)| i);
        match paused.or(quietest) {
            Some(i) => {
                self.chosen[i] = session;
                true
            }
            None => false,
        }
    }

    /// `session` left or muted: its place is free; true if it had one.
    pub fn silence(&mut self, session: SessionId) -> bool {
        self.voices.remove(&session);
        let before = self.chosen.len();
        self.chosen.retain(|s| *s != session);
        before != self.chosen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: u8 = 127;
    const SPEECH: u8 = 30;
    const SHOUT: u8 = 5;

    /// Sends `frames` 20 ms frames of each (session, level), interleaved, from `at`.
    fn talk(v: &mut Voices, at: &mut Instant, frames: usize, who: &[(SessionId, u8)]) -> Vec<Vec<SessionId>> {
        let mut changes = Vec::new();
        for _ in 0..frames {
            *at += Duration::from_millis(20);
            for (s, level) in who {
                if v.heard(*at, *s, *level) {
                    changes.push(v.chosen().to_vec());
                }
            }
        }
        changes
    }

    #[test]
    fn a_voice_that_starts_speaking_is_chosen_on_its_first_loud_frame() {
        let mut v = Voices::new(3);
        let mut at = Instant::now();
        talk(&mut v, &mut at, 50, &[(1, QUIET), (2, QUIET)]);
        assert!(v.chosen().is_empty(), "silence is not chosen");
        at += Duration::from_millis(20);
        assert!(v.heard(at, 2, SPEECH), "the first loud frame is enough");
        assert_eq!(v.chosen(), &[2]);
        assert!(!v.is_chosen(1));
    }

    #[test]
    fn at_most_the_places_are_taken_and_a_pause_gives_a_place_up_only_after_the_hold() {
        let mut v = Voices::new(2);
        let mut at = Instant::now();
        talk(&mut v, &mut at, 10, &[(1, SPEECH), (2, SPEECH), (3, QUIET)]);
        assert_eq!(v.chosen(), &[1, 2]);
        // 3 starts while both still speak, as loudly: no place.
        talk(&mut v, &mut at, 10, &[(1, SPEECH), (2, SPEECH), (3, SPEECH)]);
        assert_eq!(v.chosen(), &[1, 2], "hysteresis: as loud is not louder");
        // 2 pauses: within the hold it keeps its place, after it 3 takes it.
        talk(&mut v, &mut at, 30, &[(1, SPEECH), (2, QUIET), (3, SPEECH)]);
        assert_eq!(v.chosen(), &[1, 2], "a pause of 600 ms keeps one's place");
        talk(&mut v, &mut at, 60, &[(1, SPEECH), (2, QUIET), (3, SPEECH)]);
        assert_eq!(v.chosen(), &[1, 3]);
    }

    #[test]
    fn a_much_louder_voice_takes_the_place_of_the_quietest_speaking_one() {
        let mut v = Voices::new(2);
        let mut at = Instant::now();
        talk(&mut v, &mut at, 25, &[(1, 20), (2, 45)]);
        assert_eq!(v.chosen(), &[1, 2]);
        let changes = talk(&mut v, &mut at, 25, &[(1, 20), (2, 45), (3, SHOUT)]);
        assert_eq!(v.chosen(), &[1, 3], "3 is much louder than 2");
        assert_eq!(changes.len(), 1, "and it happened once, not back and forth");
    }

    #[test]
    fn leaving_or_muting_frees_a_place_at_once_and_zero_places_means_everyone() {
        let mut v = Voices::new(1);
        let mut at = Instant::now();
        talk(&mut v, &mut at, 5, &[(1, SPEECH)]);
        assert!(v.silence(1));
        assert!(v.chosen().is_empty());
        assert!(!v.silence(1));
        let mut all = Voices::new(0);
        assert!(all.all() && all.is_chosen(42));
        assert!(!all.heard(at, 42, SPEECH), "nothing to choose");
    }
}
