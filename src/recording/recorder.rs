//! The recorder of one meeting: it receives every participant's frames from the relay
//! (as an in-process subscriber, no network) and writes one WebM file per participant
//! session on its own thread, since ffmpeg blocks. Frames are stamped with their arrival
//! time on the relay, counted from the recording's first frame: one clock for everyone,
//! so the files line up with each other.

use std::collections::HashMap;
use std::path::PathBuf;
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
    pub payload: Bytes,
}

/// Frames waiting for the recorder thread: a few seconds of a full call. If the disk or
/// ffmpeg falls this far behind, frames are dropped (and video resumes at the next
/// keyframe) rather than held in memory without end.
const QUEUE: usize = 4096;

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
    error: Option<String>,
}

impl Recorder {
    /// Starts recording into `dir` (created if needed).
    pub fn start(dir: PathBuf) -> std::io::Result<Recorder> {
        crate::files::private_dir(&dir)?;
        let (frames, inbox) = mpsc::sync_channel::<Queued>(QUEUE);
        let thread = std::thread::Builder::new().name("floo-recorder".into()).spawn(move || record(dir, inbox))?;
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

fn record(dir: PathBuf, inbox: mpsc::Receiver<Queued>) -> Vec<FileOutcome> {
    // Time counts from the first frame of the whole recording: every file shares it.
    let mut origin: Option<Instant> = None;
    let mut participants: HashMap<(u64, bool), Participant> = HashMap::new();
    while let Ok(Queued { frame, after_gap }) = inbox.recv() {
        if after_gap {
            // Pictures after a gap cannot be decoded before the next keyframe.
            participants.values_mut().for_each(|p| p.have_keyframe = false);
        }
        let started = *origin.get_or_insert_with(Instant::now);
        let at_us = i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX);
        let kind = if frame.screen { FileKind::Screen } else { FileKind::Camera };
        let p = participants.entry((frame.session, frame.screen)).or_insert_with(|| Participant {
            user_id: frame.user_id,
            file_name: super::file_name(frame.user_id, frame.session, kind),
            kind,
            file: None,
            have_keyframe: false,
            error: None,
        });
        if p.error.is_some() {
            continue;
        }
        if frame.kind == TrackKind::Video {
            if !p.have_keyframe && !frame.keyframe {
                continue;
            }
            p.have_keyframe = true;
        }
        if p.file.is_none() {
            // Audio may come before the first keyframe; the file waits for the video size.
            if frame.kind == TrackKind::Audio && !p.have_keyframe && at_us < 2_000_000 {
                continue;
            }
            match ParticipantFile::create(&dir.join(&p.file_name), Some(frame.size), !frame.screen) {
                Ok(file) => p.file = Some(file),
                Err(e) => {
                    p.error = Some(e.to_string());
                    continue;
                }
            }
        }
        if let Some(file) = p.file.as_mut()
            && let Err(e) = file.write(frame.kind, at_us, frame.keyframe, &frame.payload)
        {
            tracing::warn!(error = %e, file = %p.file_name, "recording write failed");
            p.error = Some(e.to_string());
            p.file = None;
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
