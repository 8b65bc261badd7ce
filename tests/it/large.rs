//! A meeting of a hundred on one relay (issue "Meetings of a hundred and more"): each
//! participant is sent its page of tiles, its pinned tile and the latest speaker, and
//! exactly the three loudest voices; a voice that comes in is heard from its first group;
//! a publisher is told to stop the layers nobody watches (and video nobody shows at all);
//! the 101st is refused; a host removes someone (who cannot come back) and lets someone
//! in from the lobby (who receives nothing before).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bytes::Bytes;
use floo::media::close;
use floo::media::wire::{
    CallSettings, ClientMessage, FrameInfo, GroupHeader, Moderation, ServerMessage, TrackAnnounce, TrackKind, Watch,
    encode_frame,
};

use crate::media::{Peer, connect, join, meeting, ticket};
use crate::support::{Backend, TestApp, WHOLE_MACHINE};

const PEOPLE: usize = 100;
/// Tiles on a page, as the browser shows them.
const PAGE: usize = 25;
/// Everyone pins this person.
const PINNED: usize = 5;
/// These speak, loudest first (the loudest is on nobody's page); `LATE` starts later.
const SPEAKERS: [(usize, u8); 3] = [(40, 10), (20, 20), (30, 30)];
const LATE: usize = 60;
/// Nobody shows these at all (they are on no page, pinned by nobody, never speak).
const UNSEEN: std::ops::Range<usize> = 90..99;

/// A frame whose payload says whose track it is, at `level`.
fn frame(owner: usize, local: u64, level: u8, keyframe: bool) -> Bytes {
    let info = FrameInfo { keyframe, timestamp_us: 1, level };
    let mut payload = vec![owner as u8, local as u8];
    payload.resize(200, 0);
    encode_frame(&info, &payload)
}

/// Everything `peer` is sent until nothing more comes for `quiet`: the tracks of the
/// groups, with their frames.
async fn groups_until_quiet(peer: &Peer, quiet: Duration) -> Vec<(GroupHeader, Vec<Bytes>)> {
    let mut groups = Vec::new();
    while let Some(group) = peer.try_receive_group(quiet).await {
        groups.push(group);
    }
    groups
}

/// What each peer is sent, all at once (while they receive, everyone else does too).
async fn everyone_receives(peers: &[Peer], quiet: Duration) -> Vec<Vec<(GroupHeader, Vec<Bytes>)>> {
    futures_util::future::join_all(peers.iter().map(|p| groups_until_quiet(p, quiet))).await
}

/// Waits for the first message of `peer` that `pick` maps to something.
async fn first<T>(peer: &mut Peer, pick: impl Fn(&ServerMessage) -> Option<T>) -> T {
    let message = peer.wait_for(|m| pick(m).is_some()).await;
    pick(&message).expect("matched")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_meeting_of_a_hundred_each_is_sent_its_page_pinned_tile_speaker_and_the_three_loudest_voices() {
    let _turn = WHOLE_MACHINE.lock().await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let names: Vec<String> = (0..=PEOPLE).map(|i| format!("Person {i:03}")).collect();
    let (clients, path) = meeting(&app, &names.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let mut peers = Vec::new();
    for client in &clients[..PEOPLE] {
        peers.push(join(&app, client, &path).await);
    }
    // The 101st is told the meeting is full; the hundred carry on.
    let token = ticket(&clients[PEOPLE], &path).await["token"].as_str().expect("token").to_owned();
    assert_eq!(
        refusal(connect(&app, &token).await).await,
        (close::ROOM_FULL, "this meeting is full (100 people)".to_owned())
    );

    // Everyone publishes a small and a large camera layer (1, 2) and a microphone (3).
    for peer in &mut peers {
        for (local, kind, layer) in [(1, TrackKind::Camera, 0), (2, TrackKind::Camera, 1), (3, TrackKind::Audio, 0)] {
            let config = serde_json::json!({ "codec": if kind == TrackKind::Audio { "opus" } else { "vp8" } });
            peer.send(&ClientMessage::Announce { track: TrackAnnounce { id: local, kind, layer, config } }).await;
        }
    }
    // The relay's ids of everyone's tracks, as the first participant hears of them.
    let session: Vec<u64> = peers.iter().map(|p| p.you).collect();
    let index_of: HashMap<u64, usize> = session.iter().enumerate().map(|(i, s)| (*s, i)).collect();
    let mut track_of: HashMap<(usize, u64), u64> = HashMap::new(); // (person, local id) -> relay id
    while track_of.len() < PEOPLE * 3 {
        let track = first(&mut peers[0], |m| match m {
            ServerMessage::Track { track } => Some(track.clone()),
            _ => None,
        })
        .await;
        let local = match (track.kind, track.layer) {
            (TrackKind::Camera, 0) => 1,
            (TrackKind::Camera, _) => 2,
            _ => 3,
        };
        track_of.insert((index_of[&track.participant], local), track.id);
    }

    // Each shows a page of 25 (the first 25 people of the first 90, but themselves), pins
    // person 5 and wants the latest speaker beside them, large.
    let page_of = |i: usize| -> Vec<usize> { (0..UNSEEN.start).filter(|j| *j != i).take(PAGE).collect() };
    for (i, peer) in peers.iter_mut().enumerate() {
        let mut tiles: Vec<Watch> = page_of(i)
            .into_iter()
            .map(|j| Watch { participant: session[j], kind: TrackKind::Camera, layer: 0 })
            .collect();
        if i != PINNED {
            tiles.push(Watch { participant: session[PINNED], kind: TrackKind::Camera, layer: 1 });
        }
        peer.send(&ClientMessage::View { tiles, speakers: 1, speaker_layer: 1 }).await;
        peer.send(&ClientMessage::Ping { nonce: 1 }).await;
    }
    for peer in &mut peers {
        peer.wait_for(|m| matches!(m, ServerMessage::Pong { nonce: 1 })).await;
    }

    // Everyone publishes a group of each track; three of them speak, the others are silent.
    let loudness: HashMap<usize, u8> = SPEAKERS.into_iter().collect();
    for (i, peer) in peers.iter().enumerate() {
        peer.publish_group(1, 1, &[frame(i, 1, 127, true)]).await;
        peer.publish_group(2, 1, &[frame(i, 2, 127, true)]).await;
    }
    for (i, peer) in peers.iter().enumerate() {
        let level = loudness.get(&i).copied().unwrap_or(127);
        peer.publish_group(3, 1, &[frame(i, 3, level, true), frame(i, 3, level, false)]).await;
    }
    let received = everyone_receives(&peers, Duration::from_secs(2)).await;
    let loudest = SPEAKERS[0].0;
    for (i, groups) in received.iter().enumerate() {
        let got: BTreeSet<u64> = groups.iter().map(|(h, _)| h.track).collect();
        let mut want: BTreeSet<u64> = page_of(i).into_iter().map(|j| track_of[&(j, 1)]).collect();
        if i != PINNED {
            want.insert(track_of[&(PINNED, 2)]);
        }
        // The latest speaker beside the page, large, unless already a tile.
        if i != loudest && !page_of(i).contains(&loudest) {
            want.insert(track_of[&(loudest, 2)]);
        }
        want.extend(SPEAKERS.iter().filter(|(s, _)| *s != i).map(|(s, _)| track_of[&(*s, 3)]));
        assert_eq!(
            got, want,
            "person {i} is sent its page, the pinned tile, the speaker and three voices, nothing else"
        );
        for (header, frames) in groups {
            let (owner, local) = track_of.iter().find(|(_, id)| **id == header.track).map(|(k, _)| *k).expect("known");
            assert_eq!(
                frames[0][..],
                frame(owner, local, if local == 3 { loudness.get(&owner).copied().unwrap_or(127) } else { 127 }, true)
                    [..],
                "the publisher's own bytes"
            );
        }
    }

    // Nobody shows 90–98 at all, nor anyone's large layer but the pinned one's and the
    // speaker's: their publishers are told to stop encoding what nobody watches (person 15
    // is on every page, small).
    // (Layers are paused one by one, two seconds after each was announced: wait for all.)
    let unseen = UNSEEN.start;
    first(&mut peers[unseen], |m| matches!(m, ServerMessage::Layers { active } if active.is_empty()).then_some(()))
        .await;
    first(&mut peers[15], |m| matches!(m, ServerMessage::Layers { active } if active == &[1]).then_some(())).await;
    // A paused track sends no bytes: a new group of an unseen camera goes nowhere.
    peers[unseen].publish_group(1, 2, &[frame(unseen, 1, 127, true)]).await;
    // A fourth voice, as loud as the others, does not displace a speaking one; once the
    // second speaker has been quiet past the hold, a new voice takes its place and is heard
    // from the first frame of its group by everyone.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    for (s, level) in [SPEAKERS[0], SPEAKERS[2]] {
        peers[s].publish_group(3, 2, &[frame(s, 3, level, true)]).await;
    }
    peers[LATE].publish_group(3, 2, &[frame(LATE, 3, 20, true), frame(LATE, 3, 20, false)]).await;
    let received = everyone_receives(&peers, Duration::from_secs(2)).await;
    for (i, groups) in received.iter().enumerate() {
        assert!(groups.iter().all(|(h, _)| h.track != track_of[&(unseen, 1)]), "person {i} was sent a paused track");
        if i == LATE {
            continue;
        }
        let late: Vec<&Vec<Bytes>> =
            groups.iter().filter(|(h, _)| h.track == track_of[&(LATE, 3)]).map(|(_, frames)| frames).collect();
        assert_eq!(late.len(), 1, "person {i} hears the new voice");
        assert_eq!(late[0].len(), 2, "from the first frame of its group");
        assert_eq!(late[0][0], frame(LATE, 3, 20, true));
        let voices: BTreeSet<u64> = groups
            .iter()
            .filter(|(h, _)| (0..PEOPLE).any(|j| track_of[&(j, 3)] == h.track))
            .map(|(h, _)| h.track)
            .collect();
        assert!(voices.len() <= 3, "person {i} hears at most three voices: {voices:?}");
        assert!(!voices.contains(&track_of[&(SPEAKERS[1].0, 3)]), "the paused voice gave its place up");
    }

    // The host (the meeting's creator) removes person 99: closed with the reason, its
    // tickets refused by the page and the relay alike.
    let removed = 99;
    peers[0].send(&ClientMessage::Moderate { action: Moderation::Remove, participant: Some(session[removed]) }).await;
    let (code, reason) = peers[removed].close_code().await;
    assert_eq!(code, close::REMOVED);
    assert!(reason.contains("Person 000 removed you"), "{reason}");
    let page = clients[removed].post_form(&format!("{path}/media"), &[]).await;
    assert_eq!(page.status, reqwest::StatusCode::FORBIDDEN, "{}", page.body);
    let meeting_id: i64 = path.rsplit('/').next().and_then(|id| id.parse().ok()).expect("meeting id");
    let user_id = app_user_id(&app, &names[removed]).await;
    let token = app.relay.mint_token(meeting_id, user_id);
    let session_of_removed = connect(&app, &token).await;
    let (_control, _incoming) = web_transport_trait::Session::open_bi(&session_of_removed).await.expect("control");
    let error =
        tokio::time::timeout(Duration::from_secs(10), web_transport_trait::Session::closed(&session_of_removed))
            .await
            .expect("refused in time");
    assert_eq!(crate::media::close_of(error).0, close::REMOVED);

    // "Ask to join": the 101st, for whom there is room now, waits in the lobby, receives no
    // media and nobody's news; the host is told, lets them in, and they are welcomed.
    peers[0].send(&ClientMessage::Settings { settings: CallSettings { ask_to_join: true, quiet_above: 10 } }).await;
    peers[0].send(&ClientMessage::Ping { nonce: 2 }).await;
    peers[0].wait_for(|m| matches!(m, ServerMessage::Pong { nonce: 2 })).await;
    let token = ticket(&clients[PEOPLE], &path).await["token"].as_str().expect("token").to_owned();
    let waiting_session = connect(&app, &token).await;
    let mut waiting = open_waiting(waiting_session).await;
    let waiter = first(&mut peers[0], |m| match m {
        ServerMessage::Lobby { waiting } => waiting.first().map(|w| (w.id, w.name.clone())),
        _ => None,
    })
    .await;
    assert_eq!(waiter.1, names[PEOPLE]);
    peers[1].publish_group(1, 3, &[frame(1, 1, 127, true)]).await;
    assert!(waiting.try_receive_group(Duration::from_millis(800)).await.is_none(), "no media in the lobby");
    peers[0].send(&ClientMessage::Moderate { action: Moderation::Admit, participant: Some(waiter.0) }).await;
    let total = first(&mut waiting, |m| match m {
        ServerMessage::Welcome { total, quiet, .. } => Some((*total, *quiet)),
        _ => None,
    })
    .await;
    assert_eq!(total, (PEOPLE, true), "a hundred again, and the newcomer is told to join quietly");
    app.finish().await;
}

/// The close code and reason of a session the relay refuses, once it opened its control
/// stream as a browser does.
async fn refusal(session: web_transport_quinn::Session) -> (u32, String) {
    let (mut control, _incoming) = web_transport_trait::Session::open_bi(&session).await.expect("control stream");
    let ping = floo::media::wire::encode_control(&ClientMessage::Ping { nonce: 1 });
    let _ = web_transport_trait::SendStream::write_all(&mut control, &ping).await;
    let error = tokio::time::timeout(Duration::from_secs(10), web_transport_trait::Session::closed(&session))
        .await
        .expect("refused in time");
    crate::media::close_of(error)
}

/// Opens a session that is told to wait in the lobby.
async fn open_waiting(session: web_transport_quinn::Session) -> Peer {
    let (mut control, incoming) = web_transport_trait::Session::open_bi(&session).await.expect("control stream");
    web_transport_trait::SendStream::write_all(
        &mut control,
        &floo::media::wire::encode_control(&ClientMessage::Ping { nonce: 9 }),
    )
    .await
    .expect("ping");
    let mut peer = crate::media::peer_from_parts(session, control, incoming);
    peer.wait_for(|m| matches!(m, ServerMessage::Waiting {})).await;
    peer
}

async fn app_user_id(app: &TestApp, name: &str) -> i64 {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&app.db_url()).await.expect("the app's database");
    let (id,): (i64,) = sqlx::query_as("SELECT id FROM users WHERE display_name = $1")
        .bind(name)
        .fetch_one(&mut db)
        .await
        .expect("user");
    id
}
