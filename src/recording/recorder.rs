//! The recorder of one meeting: it receives every participant's frames from the relay
//! (as an in-process subscriber, no network) and writes one WebM file per participant
//! session on its own thread, since ffmpeg blocks.
//!
//! **Which clock rules.** A frame is written at its capture time (the timestamp its sender
//! put on it, on the sender's wall clock), moved onto the recording's clock (time since the
//! recording's first frame reached the relay) by one offset per participant session, taken
//! when their first frame arrives. One offset for all of a session's tracks keeps their
//! voice with their lips whatever the network did to each frame on the way, and the offset
//! puts people who joined late where they joined. Arrival times, which jitter and which a
//! microphone's sample clock pulls along, decide nothing else. A session whose timestamps
//! go back more than five seconds (a sender whose clock was set back) is anchored again.
//! Frames are held for a moment ([`REORDER_US`]) and written in timestamp order; one later
//! still than that is dropped: a file's timestamps never go backwards.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;

use super::file::{ParticipantFile, TrackKind};
use crate::store::FileKind;

/// A frame for the recorder.
pub struct RecordedFrame {
    pub session: u64,
    pub user_id: i64,
    pub kind: TrackKind,
    /// A screen share (video only, a file of its own) rather than the camera.
    pub screen: bool,
    /// The picture's size, for a file's first video frame.
    pub size: (u32, u32),
    pub keyframe: bool,
    /// The capture time its sender stamped it with (µs on the sender's wall clock).
    pub captured_us: u64,
    pub payload: Bytes,
}

/// Frames waiting for the recorder thread: a few seconds of a full call. If the disk or
/// ffmpeg falls this far behind, frames are dropped (and video resumes at the next
/// keyframe) rather than held in memory without end.
const QUEUE: usize = 4096;

/// How long (recording µs, by the frames' own times) a frame is held so that one arriving
/// a little late still goes into its file in order: a group retransmitted after the next
/// one started is a few tens of milliseconds late.
const REORDER_US: i64 = 300_000;

/// At most this many frames wait per file (a few seconds of a camera and a microphone).
const MAX_HELD: usize = 512;

/// A session's timestamps going back this far (µs) mean its clock was set back: anchored
/// again. (A browser's clock does not step within a page; a frame delayed this long on its
/// way would have been given up by the relay long before.)
const CLOCK_STEP_BACK_US: i64 = 5_000_000;

/// A frame on its way to the recorder thread.
struct Queued {
    frame: RecordedFrame,
    /// Frames were dropped just before this one.
    after_gap: bool,
}

/// One participant file written, or why it could not be.
#[derive(Debug, Clone)]
pub struct FileOutcome {
    pub user_id: i64,
    pub file_name: String,
    pub kind: FileKind,
    pub bytes: i64,
    pub error: Option<String>,
}

/// A running recorder; [`Recorder::stop`] finishes the files.
pub struct Recorder {
    frames: mpsc::SyncSender<Queued>,
    /// Frames have been dropped since the last one queued.
    dropping: AtomicBool,
    thread: JoinHandle<Vec<FileOutcome>>,
}

struct Participant {
    user_id: i64,
    file_name: String,
    kind: FileKind,
    file: Option<ParticipantFile>,
    /// Video starts at a keyframe; until one comes, video frames are skipped.
    have_keyframe: bool,
    /// The last timestamp written (recording µs) per stream: video, audio.
    last_us: [i64; 2],
    /// Frames waiting to be written in timestamp order, by (recording µs, arrival count).
    held: BTreeMap<(i64, u64), Held>,
    received: u64,
    /// The latest time of any frame received.
    newest_us: i64,
    error: Option<String>,
}

/// Told once, from the recorder's thread, when a file cannot be written (a full disk):
/// the recording should stop. The reason is for people.
pub type OnFailure = Box<dyn FnOnce(String) + Send>;

impl Recorder {
    /// Starts recording into `dir` (created if needed); `on_failure` is called if writing
    /// fails.
    pub fn start(dir: PathBuf, on_failure: OnFailure) -> std::io::Result<Recorder> {
        crate::files::private_dir(&dir)?;
        let (frames, inbox) = mpsc::sync_channel::<Queued>(QUEUE);
        let thread =
            std::thread::Builder::new().name("floo-recorder".into()).spawn(move || record(dir, inbox, on_failure))?;
        Ok(Recorder { frames, dropping: AtomicBool::new(false), thread })
    }

    /// Hands a frame to the recorder thread; never blocks (a frame that finds the queue
    /// full is dropped, see [`QUEUE`]).
    pub fn frame(&self, frame: RecordedFrame) {
        let after_gap = self.dropping.load(Ordering::Relaxed);
        match self.frames.try_send(Queued { frame, after_gap }) {
            Ok(()) => self.dropping.store(false, Ordering::Relaxed),
            Err(mpsc::TrySendError::Full(_)) => {
                if !self.dropping.swap(true, Ordering::Relaxed) {
                    tracing::warn!("the recording cannot keep up: frames dropped until it does");
                }
            }
            Err(mpsc::TrySendError::Disconnected(_)) => {}
        }
    }

    /// Finishes every file and returns what was written. Blocks: call it off the async threads.
    pub fn stop(self) -> Vec<FileOutcome> {
        drop(self.frames);
        self.thread.join().unwrap_or_default()
    }
}

/// A frame held back until its time comes: groups travel on separate streams, so a frame
/// may arrive after later ones; a file's timestamps must not go back.
struct Held {
    arrived_us: i64,
    frame: RecordedFrame,
}

impl Participant {
    /// Writes a frame that has waited its turn.
    fn write(&mut self, dir: &Path, at_us: i64, Held { arrived_us, frame }: Held) {
        if self.error.is_some() {
            return;
        }
        if frame.kind == TrackKind::Video {
            if !self.have_keyframe && !frame.keyframe {
                return;
            }
            self.have_keyframe = true;
        }
        if self.file.is_none() {
            // Audio may come before the first keyframe; the file waits for the video size.
            if frame.kind == TrackKind::Audio && !self.have_keyframe && arrived_us < 2_000_000 {
                return;
            }
            match ParticipantFile::create(&dir.join(&self.file_name), Some(frame.size), !frame.screen) {
                Ok(file) => self.file = Some(file),
                Err(e) => {
                    self.error = Some(e.to_string());
                    return;
                }
            }
        }
        let last = &mut self.last_us[usize::from(frame.kind == TrackKind::Audio)];
        if at_us < *last {
            // Later than even the reordering waits for: the file has moved on.
            if frame.kind == TrackKind::Video {
                self.have_keyframe = false;
            }
            return;
        }
        *last = at_us;
        if let Some(file) = self.file.as_mut()
            && let Err(e) = file.write(frame.kind, at_us, frame.keyframe, &frame.payload)
        {
            tracing::warn!(error = %e, file = %self.file_name, "recording write failed");
            self.error = Some(e.to_string());
            self.file = None;
        }
    }
}

/// What people are told when a recording file cannot be written.
pub fn failure_reason(error: &str) -> String {
    if error.contains("No space left") || error.contains("Disk quota") {
        "the disk for recordings is full".to_owned()
    } else {
        format!("a file could not be written ({error})")
    }
}

/// How one sender's capture clock maps onto the recording's.
struct SenderClock {
    /// Recording µs minus capture µs.
    offset_us: i64,
    /// The latest placed time.
    latest_us: i64,
}

impl SenderClock {
    fn anchored(arrived_us: i64, captured_us: i64) -> SenderClock {
        SenderClock { offset_us: arrived_us.saturating_sub(captured_us), latest_us: arrived_us }
    }

    /// Where a frame captured at `captured_us` goes on the recording's clock.
    fn place(&mut self, arrived_us: i64, captured_us: i64) -> i64 {
        let mut at = captured_us.saturating_add(self.offset_us);
        if at < self.latest_us.saturating_sub(CLOCK_STEP_BACK_US) {
            *self = SenderClock::anchored(arrived_us, captured_us);
            at = arrived_us;
        }
        self.latest_us = self.latest_us.max(at);
        at.max(0)
    }
}

fn record(dir: PathBuf, inbox: mpsc::Receiver<Queued>, on_failure: OnFailure) -> Vec<FileOutcome> {
    let mut on_failure = Some(on_failure);
    // Time counts from the first frame of the whole recording: every file shares it.
    let mut origin: Option<Instant> = None;
    let mut participants: HashMap<(u64, bool), Participant> = HashMap::new();
    let mut clocks: HashMap<u64, SenderClock> = HashMap::new();
    while let Ok(Queued { frame, after_gap }) = inbox.recv() {
        if after_gap {
            // Pictures after a gap cannot be decoded before the next keyframe.
            participants.values_mut().for_each(|p| p.have_keyframe = false);
        }
        let started = *origin.get_or_insert_with(Instant::now);
        let arrived_us = i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX);
        let captured_us = i64::try_from(frame.captured_us).unwrap_or(i64::MAX);
        let at_us = clocks
            .entry(frame.session)
            .or_insert_with(|| SenderClock::anchored(arrived_us, captured_us))
            .place(arrived_us, captured_us);
        let kind = if frame.screen { FileKind::Screen } else { FileKind::Camera };
        let p = participants.entry((frame.session, frame.screen)).or_insert_with(|| Participant {
            user_id: frame.user_id,
            file_name: super::file_name(frame.user_id, frame.session, kind),
            kind,
            file: None,
            have_keyframe: false,
            last_us: [i64::MIN; 2],
            held: BTreeMap::new(),
            received: 0,
            newest_us: i64::MIN,
            error: None,
        });
        if p.error.is_some() {
            continue;
        }
        p.received += 1;
        p.newest_us = p.newest_us.max(at_us);
        p.held.insert((at_us, p.received), Held { arrived_us, frame });
        // Out once they are old enough against the newest frame, or when too many wait
        // (a sender whose timestamps creep backwards holds nothing up for long).
        loop {
            let too_many = p.held.len() > MAX_HELD;
            let Some(entry) = p.held.first_entry() else { break };
            if entry.key().0 > p.newest_us.saturating_sub(REORDER_US) && !too_many {
                break;
            }
            let ((at_us, _), held) = entry.remove_entry();
            p.write(&dir, at_us, held);
        }
        if let Some(error) = &p.error
            && let Some(tell) = on_failure.take()
        {
            tell(failure_reason(error));
        }
    }
    for p in participants.values_mut() {
        while let Some(((at_us, _), held)) = p.held.pop_first() {
            p.write(&dir, at_us, held);
        }
    }
    let mut outcomes = Vec::new();
    for p in participants.into_values() {
        let mut error = p.error;
        if let Some(file) = p.file
            && let Err(e) = file.finish()
        {
            error = Some(e.to_string());
        }
        let bytes = std::fs::metadata(dir.join(&p.file_name)).map(|m| m.len() as i64).unwrap_or(0);
        if bytes > 0 || error.is_some() {
            outcomes.push(FileOutcome { user_id: p.user_id, file_name: p.file_name, kind: p.kind, bytes, error });
        }
    }
    outcomes
}
