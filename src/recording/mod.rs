//! Server-side recording. `file` writes one participant's tracks to a Matroska/WebM file
//! as their frames arrive, without transcoding, so that a killed server leaves a file
//! that plays up to its last packet; `repair` closes such a file properly after a crash.
//! (Subscribing to a meeting like a participant, and composing one video of a whole
//! meeting, build on these.)

pub mod file;

pub use file::{ParticipantFile, RecordingError, TrackKind, repair};
