//! Server-side recording. `file` writes one participant's tracks to a Matroska/WebM file
//! as their frames arrive, without transcoding, so that a killed server leaves a file
//! that plays up to its last packet; `repair` closes such a file properly after a crash.
//! `compose` makes one MP4 of the whole meeting from those files, and `jobs` runs the
//! compositions in the background.

pub mod compose;
pub mod file;
mod glyphs;
pub mod jobs;
pub mod names;
pub mod recorder;
pub mod steer;

pub use compose::{ComposeError, Composed, Settings, Source, compose};
pub use file::{ParticipantFile, RecordingError, TrackKind, repair};
pub use jobs::{COMPOSED_FILE, Composer};
pub use recorder::{FileOutcome, OnFailure, RecordedFrame, Recorder, failure_reason};

use std::path::Path;

use crate::clock::now_ms;
use crate::media::placement::{Placement, RelayAddress};
use crate::store::{FileKind, NewFile, RecordingState, Store};

/// A participant file's name in its recording's directory: `USER-SESSION.webm`, and
/// `USER-SESSION-screen.webm` for a screen share.
pub fn file_name(user_id: i64, session: u64, kind: FileKind) -> String {
    match kind {
        FileKind::Camera => format!("{user_id}-{session}.webm"),
        FileKind::Screen => format!("{user_id}-{session}-screen.webm"),
    }
}

/// Who and what a file found on disk holds: only after a crash, when the names are all
/// there is (the database has the kind of every file a recording finished with).
fn parse_file_name(name: &str) -> Option<(i64, FileKind)> {
    let stem = name.strip_suffix(".webm")?;
    let (stem, kind) = match stem.strip_suffix("-screen") {
        Some(stem) => (stem, FileKind::Screen),
        None => (stem, FileKind::Camera),
    };
    let (user, session) = stem.split_once('-')?;
    session.parse::<u64>().ok()?;
    Some((user.parse().ok()?, kind))
}

/// The participant files found in a recording's directory.
pub async fn files_on_disk(dir: &Path) -> Vec<FileOutcome> {
    let mut out = Vec::new();
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else { return out };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((user_id, kind)) = parse_file_name(&name) else { continue };
        let bytes = entry.metadata().await.map(|m| m.len() as i64).unwrap_or(0);
        out.push(FileOutcome { user_id, file_name: name, kind, bytes, error: None });
    }
    out
}

impl FileOutcome {
    /// The row to keep for a file that holds something.
    pub fn to_new_file(&self) -> NewFile {
        NewFile { user_id: self.user_id, file_name: self.file_name.clone(), kind: self.kind, bytes: self.bytes }
    }
}

/// After a crash: recordings still marked as running are closed properly (each file is
/// rewritten with its index and duration) and marked interrupted, with their files; they
/// are then composed like any other. A recording whose call another node hosts (`me` is
/// this node's relay) is that node's and still running: it is left alone.
pub async fn recover_interrupted(
    store: &Store,
    recordings_dir: &Path,
    placement: &Placement,
    me: &RelayAddress,
) -> Result<usize, crate::store::Error> {
    let mut ids = Vec::new();
    for (id, meeting_id) in store.recordings_in_state(RecordingState::Recording).await? {
        match placement.elsewhere(meeting_id, me).await {
            Ok(None) => ids.push(id),
            Ok(Some(_)) => {}
            // Not knowing, leave it: repairing a file another node is writing would break it.
            Err(reason) => tracing::warn!(recording = id, %reason, "cannot tell whether another node records this"),
        }
    }
    for id in &ids {
        let dir = recordings_dir.join(id.to_string());
        let mut files = Vec::new();
        for found in files_on_disk(&dir).await {
            let broken = dir.join(&found.file_name);
            let fixed = dir.join(format!("{}.repairing", found.file_name));
            let (b, f) = (broken.clone(), fixed.clone());
            let repaired = tokio::task::spawn_blocking(move || repair(&b, &f)).await;
            match repaired {
                Ok(Ok(_)) if tokio::fs::rename(&fixed, &broken).await.is_ok() => {}
                other => {
                    // Keep the file as it is: it still plays up to where it stopped.
                    tracing::warn!(recording = id, file = %found.file_name, result = ?other.map(|r| r.map(|_| ())), "could not repair a recording file");
                    let _ = tokio::fs::remove_file(&fixed).await;
                }
            }
            let bytes = tokio::fs::metadata(&broken).await.map(|m| m.len() as i64).unwrap_or(found.bytes);
            files.push(NewFile { bytes, ..found.to_new_file() });
        }
        let reason = "The server stopped while recording; the files were closed when it started again.";
        let state = if files.is_empty() { RecordingState::Failed } else { RecordingState::Composing };
        store.finish_recording(*id, state, Some(reason), true, &files, now_ms()).await?;
        tracing::info!(recording = id, files = files.len(), "interrupted recording recovered");
    }
    Ok(ids.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_read_back_as_written() {
        for kind in [FileKind::Camera, FileKind::Screen] {
            assert_eq!(parse_file_name(&file_name(12, 345, kind)), Some((12, kind)));
        }
        for name in ["12.webm", "12-x.webm", "x-3.webm", "12-3.mp4", "12-3-screen.webm.repairing", "meeting.mp4"] {
            assert_eq!(parse_file_name(name), None, "{name}");
        }
    }
}
