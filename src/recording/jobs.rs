//! The composition queue: recordings whose capture ended are composed one after another
//! (or `jobs` at a time) on blocking threads, with their progress in the store. A
//! composition interrupted by a restart starts again when the server does; a deleted
//! recording's composition stops.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};

use super::compose::{ComposeError, Settings, Source, compose};
use crate::bus::{Bus, Changed, Event};
use crate::media::placement::Placement;
use crate::store::{FileKind, RecordingState, Store};

/// The composed video's name in a recording's directory.
pub const COMPOSED_FILE: &str = "meeting.mp4";

/// Hands finished recordings to the composer. Cheap to clone.
#[derive(Clone)]
pub struct Composer {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// Team pages list recordings with their state: they hear of changes.
    bus: Bus,
    dir: PathBuf,
    settings: Settings,
    permits: Semaphore,
    cancelled: Mutex<HashSet<i64>>,
    /// With several nodes sharing the recordings, one composes each recording.
    placement: Placement,
}

impl Composer {
    pub fn new(
        store: Store,
        bus: Bus,
        placement: Placement,
        recordings_dir: PathBuf,
        jobs: usize,
        settings: Settings,
    ) -> Composer {
        Composer {
            inner: Arc::new(Inner {
                store,
                bus,
                dir: recordings_dir,
                settings,
                permits: Semaphore::new(jobs.max(1)),
                cancelled: Mutex::new(HashSet::new()),
                placement,
            }),
        }
    }

    /// Queues every recording left `composing` (by a restart, or by a migration).
    pub async fn resume(&self) -> Result<usize, crate::store::Error> {
        let recordings = self.inner.store.recordings_in_state(RecordingState::Composing).await?;
        for (id, _) in &recordings {
            self.enqueue(*id);
        }
        Ok(recordings.len())
    }

    /// Composes recording `id` when a job slot is free. The recording must be `composing`.
    pub fn enqueue(&self, id: i64) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let Ok(_permit) = inner.permits.acquire().await else { return };
            if inner.take_cancelled(id) {
                return;
            }
            // Another node may be composing it (it was queued again when this node started),
            // or may have finished it meanwhile.
            let Some(_lease) = inner.placement.lease(&format!("recording:{id}:composition")).await else {
                return tracing::info!(recording = id, "another node is composing this recording");
            };
            match inner.store.is_composing(id).await {
                Ok(false) => return,
                Ok(true) => {}
                Err(e) => return tracing::error!(recording = id, error = %e, "cannot read the recording's state"),
            }
            if let Err(e) = inner.run(id).await {
                tracing::error!(recording = id, error = %e, "composition could not be recorded in the store");
            }
        });
    }

    /// Stops the composition of `id` if it is queued or running (the recording is being
    /// deleted); its output is discarded.
    pub async fn cancel_if_composing(&self, store: &Store, id: i64) -> Result<(), crate::store::Error> {
        if store.is_composing(id).await?
            && let Ok(mut cancelled) = self.inner.cancelled.lock()
        {
            cancelled.insert(id);
        }
        Ok(())
    }
}

impl Inner {
    fn is_cancelled(&self, id: i64) -> bool {
        self.cancelled.lock().map(|c| c.contains(&id)).unwrap_or(false)
    }

    fn take_cancelled(&self, id: i64) -> bool {
        self.cancelled.lock().map(|mut c| c.remove(&id)).unwrap_or(false)
    }

    async fn run(self: &Arc<Self>, id: i64) -> Result<(), crate::store::Error> {
        let dir = self.dir.join(id.to_string());
        let sources: Vec<Source> = self
            .store
            .composition_sources(id)
            .await?
            .into_iter()
            .map(|f| Source { screen: f.kind == FileKind::Screen, path: dir.join(&f.file_name), name: f.user_name })
            .collect();
        let started = Instant::now();
        tracing::info!(recording = id, sources = sources.len(), "composition started");
        let team = self.store.recording_team(id).await?;
        let (progress_tx, mut progress_rx) = watch::channel(0i64);
        let (store, bus) = (self.store.clone(), self.bus.clone());
        let reporter = tokio::spawn(async move {
            let mut told = 0;
            while progress_rx.changed().await.is_ok() {
                let percent = *progress_rx.borrow_and_update();
                if let Err(e) = store.set_composition_progress(id, percent).await {
                    tracing::warn!(recording = id, error = %e, "cannot record composition progress");
                }
                // Team pages show the progress in steps of ten (the meeting page follows it closely).
                if let Some(team_id) = team
                    && percent / 10 != told / 10
                {
                    told = percent;
                    bus.publish(Event::TeamChanged { team_id, changed: Changed::RECORDINGS });
                }
                // At most one write a second, whatever the pace of the composition.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let part = dir.join(format!("{COMPOSED_FILE}.part"));
        let inner = self.clone();
        let mut job_settings = self.settings.clone();
        // Never longer than the recording ran, with a little room for the last frames.
        job_settings.max_duration_ms = self.store.recording_length(id).await?.map(|ms| ms + 10_000);
        let job_part = part.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut last = 0;
            let mut on_progress = |fraction: f64| {
                let percent = (fraction * 100.0).clamp(0.0, 99.0) as i64;
                if percent != last {
                    last = percent;
                    let _ = progress_tx.send(percent);
                }
                !inner.is_cancelled(id)
            };
            compose(&sources, &job_part, &job_settings, &mut on_progress)
        })
        .await;
        reporter.abort();
        let outcome = match result {
            Ok(Ok(composed)) => {
                let target = dir.join(COMPOSED_FILE);
                match tokio::fs::rename(&part, &target).await {
                    Ok(()) => {
                        let bytes = tokio::fs::metadata(&target).await.map(|m| m.len() as i64).unwrap_or(0);
                        Ok((bytes, composed.duration_ms))
                    }
                    Err(e) => Err(format!("Saving the composed video failed: {e}")),
                }
            }
            Ok(Err(ComposeError::Cancelled)) => {
                let _ = tokio::fs::remove_file(&part).await;
                self.take_cancelled(id);
                tracing::info!(recording = id, "composition cancelled");
                return Ok(());
            }
            Ok(Err(e)) => {
                Err(format!("Composing the meeting's video failed: {e}. Each participant's tracks are still here."))
            }
            Err(e) => Err(format!("Composing the meeting's video stopped unexpectedly ({e}).")),
        };
        if outcome.is_err() {
            let _ = tokio::fs::remove_file(&part).await;
        }
        match &outcome {
            Ok((bytes, ms)) => {
                let took_ms = started.elapsed().as_millis() as i64;
                crate::metrics::composed(crate::metrics::Composed {
                    recording_id: id,
                    at_ms: crate::clock::now_ms(),
                    media_ms: *ms,
                    took_ms,
                });
                tracing::info!(recording = id, bytes, seconds = ms / 1000, took_ms, "composition finished")
            }
            Err(reason) => tracing::warn!(recording = id, reason, "composition failed"),
        }
        self.store.finish_composition(id, outcome.as_ref().map(|o| *o).map_err(String::as_str)).await?;
        if let Some(team_id) = team {
            self.bus.publish(Event::TeamChanged { team_id, changed: Changed::RECORDINGS });
        }
        Ok(())
    }
}
