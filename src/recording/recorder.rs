//! The recorder of one meeting: it receives every participant's frames from the relay
//! (as an in-process subscriber, no network) and writes one WebM file per participant
//! session on its own thread, since ffmpeg blocks. Frames are stamped with their arrival
//! time on the relay, counted from the recording's first frame: one clock for everyone,
//! so the files line up with each other.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;

use super::file::{ParticipantFile, TrackKind};

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

/// One participant file written, or why it could not be.
#[derive(Debug, Clone)]
pub struct FileOutcome {
    pub user_id: i64,
    pub file_name: String,
    pub bytes: i64,
    pub error: Option<String>,
}

/// A running recorder; [`Recorder::stop`] finishes the files.
pub struct Recorder {
    frames: mpsc::Sender<RecordedFrame>,
    thread: JoinHandle<Vec<FileOutcome>>,
}

struct Participant {
    user_id: i64,
    file_name: String,
    file: Option<ParticipantFile>,
    /// Video starts at a keyframe; until one comes, video frames are skipped.
    have_keyframe: bool,
    error: Option<String>,
}

impl Recorder {
    /// Starts recording into `dir` (created if needed).
    pub fn start(dir: PathBuf) -> std::io::Result<Recorder> {
        crate::files::private_dir(&dir)?;
        let (frames, inbox) = mpsc::channel::<RecordedFrame>();
        let thread = std::thread::Builder::new().name("floo-recorder".into()).spawn(move || record(dir, inbox))?;
        Ok(Recorder { frames, thread })
    }

    /// Hands a frame to the recorder thread (never blocks).
    pub fn frame(&self, frame: RecordedFrame) {
        let _ = self.frames.send(frame);
    }

    /// Finishes every file and returns what was written. Blocks: call it off the async threads.
    pub fn stop(self) -> Vec<FileOutcome> {
        drop(self.frames);
        self.thread.join().unwrap_or_default()
    }
}

fn record(dir: PathBuf, inbox: mpsc::Receiver<RecordedFrame>) -> Vec<FileOutcome> {
    // Time counts from the first frame of the whole recording: every file shares it.
    let mut origin: Option<Instant> = None;
    let mut participants: HashMap<(u64, bool), Participant> = HashMap::new();
    while let Ok(frame) = inbox.recv() {
        let started = *origin.get_or_insert_with(Instant::now);
        let at_us = i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX);
        let p = participants.entry((frame.session, frame.screen)).or_insert_with(|| Participant {
            user_id: frame.user_id,
            file_name: if frame.screen {
                format!("{}-{}-screen.webm", frame.user_id, frame.session)
            } else {
                format!("{}-{}.webm", frame.user_id, frame.session)
            },
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
            outcomes.push(FileOutcome { user_id: p.user_id, file_name: p.file_name, bytes, error });
        }
    }
    outcomes
}
