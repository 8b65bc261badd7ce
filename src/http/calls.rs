//! Acting on a call — start or stop recording it, end it — on the node that hosts it,
//! whichever node the request reached (see `media::placement`). With one node, or when
//! this node hosts the call, it is done here at once.

use super::AppState;
use crate::clock::now_ms;
use crate::media::placement::{CallCommand, CallError, RelayAddress};
use crate::recording::FileOutcome;
use crate::store::{NewFile, RecordingState};

/// This node's relay, as placements name it.
fn me(state: &AppState) -> RelayAddress {
    state.relay.address()
}

/// Carries `command` out where the call is hosted.
async fn act(state: &AppState, meeting_id: i64, command: CallCommand) -> Result<(), CallError> {
    match state.placement.elsewhere(meeting_id, &me(state)).await? {
        Some(host) => state.placement.ask(&host, command).await,
        None => carry_out(state, command).await,
    }
}

/// Starts recording the call of `meeting_id` as recording `recording_id`.
pub async fn start_recording(state: &AppState, meeting_id: i64, recording_id: i64) -> Result<(), CallError> {
    act(state, meeting_id, CallCommand::StartRecording { meeting_id, recording_id }).await
}

/// Stops the recording and records its outcome (its files, queued for composition, or
/// why it failed). If the call's host has gone away (its claim expired or passed to
/// another node), the recording is finished here with whatever files this node can see,
/// so that it does not stay "recording" forever; if the host is there but did not
/// answer, the error says so and the stop can be tried again.
pub async fn stop_recording(state: &AppState, meeting_id: i64, recording_id: i64) -> Result<(), CallError> {
    let Some(host) = state.placement.elsewhere(meeting_id, &me(state)).await? else {
        return carry_out(state, CallCommand::StopRecording { meeting_id, recording_id }).await;
    };
    let Err(reason) = state.placement.ask(&host, CallCommand::StopRecording { meeting_id, recording_id }).await else {
        return Ok(());
    };
    if state.placement.elsewhere(meeting_id, &me(state)).await?.is_some_and(|now| now.node == host.node) {
        return Err(reason);
    }
    tracing::warn!(meeting_id, recording_id, %reason, "the call's host has gone; finishing its recording here");
    let files = crate::recording::files_on_disk(&state.recordings_dir.join(recording_id.to_string())).await;
    finish(state, recording_id, &files).await
}

/// The node hosting a meeting's call died: whoever it had marked as in the meeting is
/// not connected anywhere now (those who reconnect are marked again as they join).
pub async fn close_stale_attendance(state: &AppState, meeting_id: i64, team_id: i64) {
    match state.store.close_attendance(meeting_id, now_ms()).await {
        Ok(0) => {}
        Ok(closed) => {
            tracing::info!(meeting_id, closed, "closed the attendance a dead node left open");
            state.bus.publish(crate::bus::Event::TeamChanged { team_id, changed: crate::bus::Changed::MEETINGS });
        }
        Err(e) => tracing::warn!(error = %e, meeting_id, "cannot close the attendance a dead node left open"),
    }
}

/// Every few seconds: the meetings whose call was on a node that has died since (its
/// heartbeat lapsed) and that nobody has rejoined yet lose their stale attendance.
pub async fn sweep_dead_hosts(state: AppState) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        let Ok(meetings) = state.store.meetings_with_open_attendance().await else { continue };
        let hosted = state.relay.hosted_meetings();
        for (meeting_id, team_id) in meetings {
            if !hosted.contains(&meeting_id) && state.placement.forget_dead_host(meeting_id).await {
                close_stale_attendance(&state, meeting_id, team_id).await;
            }
        }
    }
}

/// Disconnects everyone in the call of a meeting that has ended (here, and on the node
/// hosting it if that is another).
pub async fn end(state: &AppState, meeting_id: i64) {
    state.relay.end_meeting(meeting_id);
    if let Err(reason) = act(state, meeting_id, CallCommand::End { meeting_id }).await {
        tracing::warn!(meeting_id, %reason, "the call's host could not be told that the meeting ended");
    }
}

/// Does what `command` asks, on this node (which hosts the call, or nobody does).
pub async fn carry_out(state: &AppState, command: CallCommand) -> Result<(), CallError> {
    match command {
        CallCommand::StartRecording { meeting_id, recording_id } => {
            is_running(state, meeting_id, recording_id).await?;
            let dir = state.recordings_dir.join(recording_id.to_string());
            state.relay.start_recording(meeting_id, dir).await.map_err(CallError::Refused)
        }
        CallCommand::StopRecording { meeting_id, recording_id } => {
            is_running(state, meeting_id, recording_id).await?;
            let outcomes = match state.relay.stop_recording(meeting_id).await {
                Some(outcomes) => outcomes,
                // The call emptied while recording: its files were finished then; find them.
                None => crate::recording::files_on_disk(&state.recordings_dir.join(recording_id.to_string())).await,
            };
            finish(state, recording_id, &outcomes).await
        }
        CallCommand::End { meeting_id } => {
            state.relay.end_meeting(meeting_id);
            Ok(())
        }
    }
}

/// A command about a recording that is no longer the meeting's running one (it failed,
/// was stopped, or the command is stale) is refused.
async fn is_running(state: &AppState, meeting_id: i64, recording_id: i64) -> Result<(), CallError> {
    match state.store.active_recording(meeting_id).await {
        Ok(Some(id)) if id == recording_id => Ok(()),
        Ok(_) => Err(CallError::Refused("this recording is not running any more".into())),
        Err(e) => Err(CallError::Unavailable(format!("the recording's state could not be read ({e})"))),
    }
}

/// Records the outcome: its files, to be composed into the meeting video, or failed with
/// the reason (disk full...).
async fn finish(state: &AppState, id: i64, outcomes: &[FileOutcome]) -> Result<(), CallError> {
    let files: Vec<NewFile> = outcomes.iter().filter(|o| o.bytes > 0).map(FileOutcome::to_new_file).collect();
    let errors: Vec<&str> = outcomes.iter().filter_map(|o| o.error.as_deref()).collect();
    let (status, reason) = match (files.is_empty(), errors.first()) {
        (_, Some(e)) => {
            let why = crate::recording::failure_reason(e);
            (
                RecordingState::Failed,
                Some(format!("The recording stopped: {why}. What was recorded until then is kept.")),
            )
        }
        (true, None) => (RecordingState::Failed, Some("Nothing was recorded: nobody sent audio or video.".to_owned())),
        (false, None) => (RecordingState::Composing, None),
    };
    let finished = state
        .store
        .finish_recording(id, status, reason.as_deref(), false, &files, now_ms())
        .await
        .map_err(|e| CallError::Unavailable(format!("the recording's outcome could not be saved ({e})")))?;
    if finished && status == RecordingState::Composing {
        state.composer.enqueue(id);
    }
    Ok(())
}
