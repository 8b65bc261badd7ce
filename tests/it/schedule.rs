//! Scheduled meetings on both backends: planned in a time zone, listed as upcoming (live),
//! in the team's calendar feed as an independent parser (Python's `icalendar`) reads it —
//! right across a change to summer time, a new SEQUENCE after an edit, CANCELLED after
//! cancelling, 404 for a wrong or replaced secret — and started into a live meeting.

use reqwest::StatusCode;

use crate::on_both_backends;
use crate::support::{Backend, Client, SseStream, TestApp};

on_both_backends!(a_scheduled_meeting_is_in_everyones_calendar_until_it_is_started_or_cancelled);

/// What Python's `icalendar` (Debian's python3-icalendar, installed by ops/lib.sh) reads
/// in a calendar: its events as JSON.
fn parse_ics(ics: &str) -> serde_json::Value {
    use std::io::Write;
    const SCRIPT: &str = r#"
import json, sys
from icalendar import Calendar
cal = Calendar.from_ical(sys.stdin.read())
out = []
for e in cal.walk('VEVENT'):
    out.append({
        'uid': str(e.get('UID')),
        'summary': str(e.get('SUMMARY')),
        'description': str(e.get('DESCRIPTION', '')),
        'start': e.get('DTSTART').dt.isoformat(),
        'end': e.get('DTEND').dt.isoformat(),
        'sequence': int(e.get('SEQUENCE', 0)),
        'status': str(e.get('STATUS', '')),
    })
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("Debian's python3 with python3-icalendar (ops/lib.sh installs it)");
    child.stdin.take().expect("stdin").write_all(ics.as_bytes()).expect("write");
    let output = child.wait_with_output().expect("python runs");
    assert!(output.status.success(), "icalendar parses the feed: {}\n{ics}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("json")
}

fn event<'a>(events: &'a serde_json::Value, summary: &str) -> &'a serde_json::Value {
    events.as_array().expect("events").iter().find(|e| e["summary"] == summary).unwrap_or_else(|| {
        panic!("{summary} in {events}");
    })
}

/// The feed as a calendar application fetches it: no cookies.
async fn feed(url: &str) -> (StatusCode, String) {
    let response = reqwest::get(url).await.expect("feed");
    let status = response.status();
    let kind = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(status != StatusCode::OK || kind.starts_with("text/calendar"), "{kind}");
    (status, response.text().await.expect("body"))
}

async fn schedule(client: &Client, team: &str, fields: &[(&str, &str)]) -> crate::support::Page {
    client.post_form(&format!("/teams/{team}/schedule"), fields).await
}

async fn a_scheduled_meeting_is_in_everyones_calendar_until_it_is_started_or_cancelled(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("Alice").await;
    let bob = app.signed_in("Bob").await;
    let team = alice.post_form("/teams", &[("name", "Planners")]).await.url;
    let t = team.split("/teams/").nth(1).expect("team id").to_owned();
    let code = alice.get(&format!("/teams/{t}/invite")).await.between("id=\"invite-code\">", "<");
    bob.post_form("/join", &[("code", &code)]).await.expect_ok_with("Planners");
    let mut live = SseStream::open(&bob, &format!("/teams/{t}/events?view=meetings"), None).await;
    assert!(live.next_named("upcoming").await.data.contains("Nothing scheduled."));

    // What a form gets wrong, it says, and keeps what was written.
    let wrong = schedule(
        &alice,
        &t,
        &[
            ("title", "Planning"),
            ("date", "2027-03-20"),
            ("time", "10:00"),
            ("time_zone", "Mars/Olympus"),
            ("duration", "60"),
        ],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.body.contains("is not a time zone Floo knows") && wrong.body.contains("Planning"), "{}", wrong.body);
    let short = schedule(
        &alice,
        &t,
        &[("title", "Planning"), ("date", "2027-03-20"), ("time", "10:00"), ("time_zone", "UTC"), ("duration", "0")],
    )
    .await;
    assert!(short.body.contains("A meeting lasts from 5 to 1440 minutes."));

    // 10:00 in Paris is 09:00 UTC in winter and 08:00 UTC in summer (from 28 March 2027).
    let description = "Agenda: budget, hiring; and the offsite.\nA long line that goes on and on so that the calendar has to fold it over several lines of seventy-five octets.";
    let planning = schedule(
        &alice,
        &t,
        &[
            ("title", "Planning"),
            ("date", "2027-03-20"),
            ("time", "10:00"),
            ("time_zone", "Europe/Paris"),
            ("duration", "60"),
            ("description", description),
        ],
    )
    .await;
    planning.expect_ok_with("Sat 20 Mar 2027, 10:00").expect_ok_with("Europe/Paris").expect_ok_with("60 minutes");
    let planning_path = planning.url.trim_start_matches(&alice.base).to_owned();
    let review = schedule(
        &alice,
        &t,
        &[
            ("title", "Review"),
            ("date", "2027-04-03"),
            ("time", "10:00"),
            ("time_zone", "Europe/Paris"),
            ("duration", "30"),
        ],
    )
    .await;
    let review_path = review.url.trim_start_matches(&alice.base).to_owned();
    // Bob's open team page hears of them.
    let mut upcoming = live.next_named("upcoming").await;
    while !upcoming.data.contains("Review") {
        upcoming = live.next_named("upcoming").await;
    }
    assert!(upcoming.data.find("Planning") < upcoming.data.find("Review"), "soonest first");

    // The feed, as a calendar application subscribes to it.
    let overview = bob.get(&format!("/teams/{t}")).await;
    let url = overview.between("id=\"calendar-url\" type=\"text\" readonly value=\"", "\"");
    assert!(url.starts_with(&app.base) && url.ends_with("/team.ics"), "{url}");
    let (status, ics) = feed(&url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ics.lines().all(|l| l.len() <= 75), "lines are folded at 75 octets:\n{ics}");
    let events = parse_ics(&ics);
    let p = event(&events, "Planning");
    assert_eq!(p["start"], "2027-03-20T09:00:00+00:00");
    assert_eq!(p["end"], "2027-03-20T10:00:00+00:00");
    assert_eq!(p["description"], description, "escaped and folded, read back whole");
    assert_eq!((p["sequence"].as_i64(), p["status"].as_str()), (Some(0), Some("CONFIRMED")));
    let r = event(&events, "Review");
    assert_eq!(r["start"], "2027-04-03T08:00:00+00:00", "summer time: 10:00 in Paris is 08:00 UTC");
    let review_uid = r["uid"].as_str().expect("uid").to_owned();

    // Moved to 10:30: the same UID, a new SEQUENCE. Cancelled: CANCELLED.
    let moved = alice
        .post_form(
            &review_path,
            &[
                ("title", "Review"),
                ("date", "2027-04-03"),
                ("time", "10:30"),
                ("time_zone", "Europe/Paris"),
                ("duration", "30"),
            ],
        )
        .await;
    moved.expect_ok_with("Sat 3 Apr 2027, 10:30");
    alice.post_form(&format!("{planning_path}/cancel"), &[]).await.expect_ok_with("cancelled");
    let events = parse_ics(&feed(&url).await.1);
    let r = event(&events, "Review");
    assert_eq!(
        (r["uid"].as_str(), r["start"].as_str()),
        (Some(review_uid.as_str()), Some("2027-04-03T08:30:00+00:00"))
    );
    assert_eq!(r["sequence"], 1);
    let p = event(&events, "Planning");
    assert_eq!((p["status"].as_str(), p["sequence"].as_i64()), (Some("CANCELLED"), Some(1)));
    // One meeting's own .ics, for members.
    let one = bob.get(&format!("{review_path}/event.ics")).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(parse_ics(&one.body)[0]["uid"], review_uid.as_str());

    // A wrong secret, and the old one after an admin makes a new address: 404.
    assert_eq!(feed(&format!("{}/calendar/{}/team.ics", app.base, "0".repeat(64))).await.0, StatusCode::NOT_FOUND);
    assert_eq!(bob.post_form(&format!("/teams/{t}/calendar/new-address"), &[]).await.status, StatusCode::FORBIDDEN);
    alice.post_form(&format!("/teams/{t}/calendar/new-address"), &[]).await;
    assert_eq!(feed(&url).await.0, StatusCode::NOT_FOUND, "the replaced address");
    let fresh =
        alice.get(&format!("/teams/{t}")).await.between("id=\"calendar-url\" type=\"text\" readonly value=\"", "\"");
    assert_ne!(fresh, url);
    assert_eq!(feed(&fresh).await.0, StatusCode::OK);

    // Bob may not start Alice's meeting; she starts it early, and it is the usual live
    // meeting with its chat; the plan then points to it and leaves the upcoming list.
    assert_eq!(bob.post_form(&format!("{review_path}/start"), &[]).await.status, StatusCode::FORBIDDEN);
    assert!(bob.get(&review_path).await.body.contains("Add to my calendar"));
    let started = alice.post_form(&format!("{review_path}/start"), &[]).await;
    started.expect_ok_with("Review").expect_ok_with("Join call");
    assert!(started.url.contains("/meetings/"), "{}", started.url);
    assert!(bob.get(&review_path).await.body.contains("Go to the meeting"));
    let mut after = live.next_named("upcoming").await;
    while after.data.contains("Review") {
        after = live.next_named("upcoming").await;
    }
    let overview = bob.get(&format!("/teams/{t}")).await;
    overview.expect_ok_with("Nothing scheduled.").expect_ok_with("Nobody is in it right now.");
    app.finish().await;
}
