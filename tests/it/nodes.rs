//! Several Floo processes sharing PostgreSQL and Redis: a message posted on one node
//! reaches live readers on another, and none is lost while Redis restarts; a call is
//! hosted by one node, and recorded and ended through either.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::{Client, SseStream, create_postgres_database};

/// A `floo serve` process.
struct Node {
    base: String,
    child: Child,
    /// What it was started with, to start it again (same ports, same data directory).
    args: Vec<String>,
    data_dir: std::path::PathBuf,
}

impl Node {
    async fn start(database_url: &str, redis_url: &str) -> Node {
        Node::start_with(database_url, redis_url, &[]).await
    }

    async fn start_with(database_url: &str, redis_url: &str, extra: &[&str]) -> Node {
        let ports = ["--http-addr", "127.0.0.1:0", "--quic-addr", "127.0.0.1:0"];
        Node::start_on(database_url, redis_url, &[&ports[..], extra].concat()).await
    }

    /// A node whose arguments name its HTTP and QUIC addresses (and anything else).
    async fn start_on(database_url: &str, redis_url: &str, args: &[&str]) -> Node {
        let data_dir = std::env::temp_dir().join(format!("floo-node-{}", crate::support::unique_suffix()));
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.extend(
            ["--metrics-addr", "127.0.0.1:0", "--database-url", database_url, "--redis-url", redis_url]
                .map(String::from),
        );
        let (child, base) = Node::launch(&args, &data_dir).await;
        Node { base, child, args, data_dir }
    }

    async fn launch(args: &[String], data_dir: &std::path::Path) -> (Child, String) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(data_dir.join("node.log")).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_floo"))
            .arg("serve")
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .stdout(Stdio::piped())
            .stderr(log)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start floo");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(url) = line.strip_prefix("Floo is running at ") {
                    return url.trim().to_owned();
                }
            }
            panic!("floo exited before listening; see {}", data_dir.join("node.log").display());
        })
        .await
        .expect("floo starts within 30 s");
        (child, base)
    }

    /// Kills the process outright (SIGKILL), as a crash or an OOM kill would.
    async fn kill(&mut self) {
        self.child.kill().await.expect("kill floo");
    }

    /// Stops the node as a service manager does (SIGTERM: it drains, then exits), then
    /// starts it again with the same arguments. Returns how long the drain took and how
    /// long the node was away in all (from the signal until it listens again).
    async fn restart(&mut self) -> (Duration, Duration) {
        let pid = self.child.id().expect("the node runs").to_string();
        let signalled = tokio::time::Instant::now();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().await.expect("run kill");
        assert!(sent.success(), "SIGTERM to the node");
        let status = tokio::time::timeout(Duration::from_secs(40), self.child.wait())
            .await
            .expect("the node exits within its shutdown grace")
            .expect("wait for the node");
        assert!(
            status.success(),
            "the node exits cleanly after SIGTERM ({status}); see {}",
            self.data_dir.join("node.log").display()
        );
        let drained = signalled.elapsed();
        let (child, base) = Node::launch(&self.args, &self.data_dir).await;
        self.child = child;
        self.base = base;
        (drained, signalled.elapsed())
    }
}

/// A private redis-server on a free port that the test can stop and start again.
struct PrivateRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    async fn start() -> PrivateRedis {
        let port = free_port(false);
        let dir = std::env::temp_dir().join(format!("floo-redis-{}", crate::support::unique_suffix()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut redis = PrivateRedis { port, dir, child: None };
        redis.restart().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        let binary = std::env::var("FLOO_TEST_REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{binary} is needed for this test (ops/test installs it): {e}"));
        self.child = Some(child);
        // Ready when it answers PING.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
            {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "private redis did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill redis");
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Signs in on `node` (the session is valid on every node sharing the database).
async fn sign_in(node: &Node, name: &str) -> Client {
    let client = Client::new(&node.base);
    client.post_form("/login/dev", &[("name", name)]).await.expect_ok_with(&format!("Hello, {name}"));
    client
}

/// A team with a topic, made on node A; returns (Alice on A, Bob on B, topic path).
async fn team_across(a: &Node, b: &Node) -> (Client, Client, String) {
    let alice = sign_in(a, "Alice").await;
    let bob_on_a = sign_in(a, "Bob").await;
    let team = alice.post_form("/teams", &[("name", "Spread out")]).await;
    let team_id = team.url.split("/teams/").nth(1).expect("team").to_owned();
    let code = alice.get(&format!("/teams/{team_id}/invite")).await.between("id=\"invite-code\">", "<");
    bob_on_a.post_form("/join", &[("code", &code)]).await.expect_ok_with("Spread out");
    let topic = alice.post_form(&format!("/teams/{team_id}/forum"), &[("title", "Across nodes"), ("body", "")]).await;
    let topic_path = topic.url.trim_start_matches(&a.base).to_owned();
    // Bob's browser talks to node B with the same session cookie.
    let bob = Client { base: b.base.clone(), http: bob_on_a.http.clone() };
    (alice, bob, topic_path)
}

fn redis_url() -> String {
    std::env::var("FLOO_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_posted_on_one_node_reaches_readers_on_the_other() {
    let (database, _) = create_postgres_database().await;
    let a = Node::start(&database, &redis_url()).await;
    let b = Node::start(&database, &redis_url()).await;
    let (alice, bob, topic) = team_across(&a, &b).await;
    let mut on_b = SseStream::open(&bob, &format!("{topic}/events"), None).await;
    let mut on_a = SseStream::open(&alice, &format!("{topic}/events"), None).await;

    alice.post_form(&format!("{topic}/messages"), &[("body", "posted on A")]).await;
    let event = on_b.next_named("message").await;
    assert_eq!(event.id.as_deref(), Some("1"));
    assert!(event.data.contains("posted on A"));

    bob.post_form(&format!("{topic}/messages"), &[("body", "posted on B")]).await;
    assert!(on_a.next_named("message").await.data.contains("posted on A"));
    let event = on_a.next_named("message").await;
    assert_eq!(event.id.as_deref(), Some("2"));
    assert!(event.data.contains("posted on B"));
}

/// A node stopped with SIGTERM and started again (a rolling restart) serves live chat at
/// once: its readers get what is posted on it and on the other node, and so do the other
/// node's readers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_serves_live_chat_from_both_nodes_at_once() {
    let (database, _) = create_postgres_database().await;
    let mut a = Node::start(&database, &redis_url()).await;
    let b = Node::start(&database, &redis_url()).await;
    let (alice, bob, topic) = team_across(&a, &b).await;
    a.restart().await;
    let alice = Client { base: a.base.clone(), http: alice.http.clone() };
    let mut on_a = SseStream::open(&alice, &format!("{topic}/events"), None).await;
    let mut on_b = SseStream::open(&bob, &format!("{topic}/events"), None).await;
    alice.post_form(&format!("{topic}/messages"), &[("body", "posted on the restarted node")]).await;
    assert!(on_a.next_named("message").await.data.contains("posted on the restarted node"));
    assert!(on_b.next_named("message").await.data.contains("posted on the restarted node"));
    bob.post_form(&format!("{topic}/messages"), &[("body", "posted on the other")]).await;
    assert!(on_a.next_named("message").await.data.contains("posted on the other"));
    assert!(on_b.next_named("message").await.data.contains("posted on the other"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_pages_on_one_node_follow_what_happens_on_the_other() {
    let (database, _) = create_postgres_database().await;
    let a = Node::start(&database, &redis_url()).await;
    let b = Node::start(&database, &redis_url()).await;
    let (alice, bob, topic) = team_across(&a, &b).await;
    let team = topic.split("/topics/").next().expect("team path").to_owned();
    let mut meetings = SseStream::open(&bob, &format!("{team}/events?view=meetings"), None).await;
    let mut forum = SseStream::open(&bob, &format!("{team}/events?view=forum"), None).await;
    assert!(meetings.next_named("meetings").await.data.contains("No meetings yet."));
    assert!(forum.next_named("topics").await.data.contains("Across nodes"));

    // A meeting started on A: B's pages show it.
    let page = alice.post_form(&format!("{team}/meetings"), &[("title", "Made on A")]).await;
    let meeting = page.url.trim_start_matches(&a.base).to_owned();
    let chat = format!("{team}/topics/{}", page.between(&format!("{team}/topics/"), "/"));
    assert!(meetings.next_named("meetings").await.data.contains("Made on A"));
    let mut topics = forum.next_named("topics").await;
    while !topics.data.contains("Made on A") {
        topics = forum.next_named("topics").await;
    }
    // A comment on the older topic, posted on A, moves it up B's forum list.
    alice.post_form(&format!("{topic}/messages"), &[("body", "bump")]).await;
    let mut topics = forum.next_named("topics").await;
    while topics.data.find("Across nodes") > topics.data.find("Made on A") {
        topics = forum.next_named("topics").await;
    }
    // Chat in the meeting, on A: nothing for B's meeting list.
    alice.post_form(&format!("{chat}/messages"), &[("body", "hello from A")]).await;
    meetings.expect_none_named("meetings", Duration::from_millis(1500)).await;
    // Joining and leaving on A: B's list follows; so does the end of the meeting.
    alice.post_form(&format!("{meeting}/join"), &[]).await;
    let mut update = meetings.next_named("meetings").await;
    while !update.data.contains("In it now: Alice") {
        update = meetings.next_named("meetings").await;
    }
    alice.post_form(&format!("{meeting}/leave"), &[]).await;
    let mut update = meetings.next_named("meetings").await;
    while !update.data.contains("Nobody is in it right now.") {
        update = meetings.next_named("meetings").await;
    }
    alice.post_form(&format!("{meeting}/end"), &[]).await;
    let mut update = meetings.next_named("meetings").await;
    while !update.data.contains("lasted") {
        update = meetings.next_named("meetings").await;
    }
    // Bob removed on A: his streams on B close at once.
    let members = alice.get(&format!("{team}/members")).await;
    let at = members.body.find("<td>Bob").expect("Bob listed");
    let bob_id =
        members.body[..at].rsplit("id=\"member-").next().expect("row").split('"').next().expect("id").to_owned();
    alice.post_form(&format!("{team}/members/{bob_id}/remove"), &[]).await;
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        meetings.expect_end().await;
        forum.expect_end().await;
    })
    .await;
    assert!(closed.is_ok(), "a removed member's team pages on the other node stay open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_nodes_dashboard_shows_all_the_nodes_and_which_one_went_silent() {
    let (database, _) = create_postgres_database().await;
    let a = Node::start(&database, &redis_url()).await;
    let mut b = Node::start(&database, &redis_url()).await;
    let olga = sign_in(&a, "Olga").await;
    let granted = std::process::Command::new(env!("CARGO_BIN_EXE_floo"))
        .args(["admin", "--database-url", &database, "grant", "--identity", "dev:olga"])
        .output()
        .expect("floo admin");
    assert!(granted.status.success(), "{}", String::from_utf8_lossy(&granted.stderr));
    // Both nodes report within a few seconds; A's dashboard lists both, itself marked.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let page = loop {
        let page = olga.get("/ops").await;
        if page.body.contains("All nodes (2)") && page.body.contains(&b.base) {
            break page;
        }
        assert!(tokio::time::Instant::now() < deadline, "the dashboard never listed both nodes: {}", page.body);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mine = page.body.find(&a.base).expect("A's row");
    assert!(page.body[mine..].split("</tr>").next().expect("row").contains("this one"), "A is this one");
    // B dies: A's dashboard says it went silent.
    b.kill().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let page = olga.get("/ops").await;
        let row = page.body.find(&b.base).map(|at| page.body[at..].split("</tr>").next().unwrap_or("").to_owned());
        if row.as_deref().is_some_and(|r| r.contains("silent")) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "B never showed as silent: {}", page.body);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A team with a topic on `node`, made by `name`; returns the client and the topic's path.
async fn team_with_topic(node: &Node, name: &str) -> (Client, String) {
    let client = sign_in(node, name).await;
    let team = client.post_form("/teams", &[("name", "Our team")]).await;
    let team_id = team.url.split("/teams/").nth(1).expect("team").to_owned();
    let topic = client.post_form(&format!("/teams/{team_id}/forum"), &[("title", "Plans"), ("body", "")]).await;
    let path = topic.url.trim_start_matches(&node.base).to_owned();
    (client, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deployments_sharing_a_redis_do_not_hear_each_other() {
    let ((first, _), (second, _)) = (create_postgres_database().await, create_postgres_database().await);
    let a = Node::start(&first, &redis_url()).await;
    let b = Node::start(&second, &redis_url()).await;
    let (alice, on_a) = team_with_topic(&a, "Alice").await;
    let (zoe, on_b) = team_with_topic(&b, "Zoe").await;
    assert_eq!(on_a, on_b, "the same team and topic ids in both deployments");
    let mut reader = SseStream::open(&zoe, &format!("{on_b}/events"), None).await;
    alice.post_form(&format!("{on_a}/messages"), &[("body", "only for deployment A")]).await;
    zoe.post_form(&format!("{on_b}/messages"), &[("body", "said in deployment B")]).await;
    let event = reader.next_named("message").await;
    assert!(event.data.contains("said in deployment B"), "B's reader got another deployment's message: {}", event.data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_message_is_lost_while_redis_restarts() {
    let (database, _) = create_postgres_database().await;
    let mut redis = PrivateRedis::start().await;
    let a = Node::start(&database, &redis.url()).await;
    let b = Node::start(&database, &redis.url()).await;
    let (alice, bob, topic) = team_across(&a, &b).await;
    let mut on_b = SseStream::open(&bob, &format!("{topic}/events"), None).await;

    alice.post_form(&format!("{topic}/messages"), &[("body", "before")]).await;
    assert!(on_b.next_named("message").await.data.contains("before"));

    redis.kill().await;
    // Posting still works on A while Redis is down; B cannot hear of it yet.
    for body in ["during one", "during two"] {
        alice.post_form(&format!("{topic}/messages"), &[("body", body)]).await.expect_ok_with(body);
    }
    redis.restart().await;

    // B resyncs from the database when its link comes back: nothing lost, nothing twice.
    for (id, body) in [("2", "during one"), ("3", "during two")] {
        let event = on_b.next_named("message").await;
        assert_eq!(event.id.as_deref(), Some(id));
        assert!(event.data.contains(body), "{}", event.data);
    }
    // Live delivery goes on after the restart.
    alice.post_form(&format!("{topic}/messages"), &[("body", "after")]).await;
    let event = on_b.next_named("message").await;
    assert_eq!(event.id.as_deref(), Some("4"));
    assert!(event.data.contains("after"));
}

/// A media ticket for `meeting`, as the meeting page asks for it.
async fn media_ticket(client: &Client, meeting: &str) -> serde_json::Value {
    let page = client.post_form(&format!("{meeting}/media"), &[]).await;
    serde_json::from_str(&page.body).expect("ticket")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_hosted_by_one_node_whichever_node_people_ask() {
    use floo::media::wire::ServerMessage;
    let (database, _) = create_postgres_database().await;
    let a = Node::start(&database, &redis_url()).await;
    let b = Node::start(&database, &redis_url()).await;
    let (alice, bob, topic) = team_across(&a, &b).await;
    let team = topic.split("/topics/").next().expect("team path").to_owned();
    let meeting = alice.post_form(&format!("{team}/meetings"), &[("title", "Spread call")]).await;
    let meeting = meeting.url.trim_start_matches(&a.base).to_owned();

    // Alice asks node A first, so A hosts the call; Bob asks node B and is sent to A.
    let for_alice = media_ticket(&alice, &meeting).await;
    let for_bob = media_ticket(&bob, &meeting).await;
    assert_eq!(for_alice["port"], for_bob["port"], "both are sent to the same relay");
    assert_eq!(for_alice["certHash"], for_bob["certHash"]);
    let mut alice_call = crate::media::join_with_ticket(&for_alice).await;
    // Bob's token was minted by node B; node A's relay admits it (one secret per deployment).
    let _bob_call = crate::media::join_with_ticket(&for_bob).await;
    let me = alice_call.you;
    alice_call.wait_for(|m| matches!(m, ServerMessage::Joined { participant } if participant.id != me)).await;

    // Asking again, either node still points at A.
    assert_eq!(media_ticket(&bob, &meeting).await["port"], for_alice["port"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_hosted_on_one_node_is_recorded_and_ended_through_the_other() {
    use floo::media::wire::ServerMessage;
    let (database, _) = create_postgres_database().await;
    // The nodes share the recordings directory, as a deployment shares storage for them.
    let shared = std::env::temp_dir().join(format!("floo-shared-recordings-{}", crate::support::unique_suffix()));
    let recordings = ["--recordings-dir", shared.to_str().expect("path")];
    let a = Node::start_with(&database, &redis_url(), &recordings).await;
    let b = Node::start_with(&database, &redis_url(), &recordings).await;
    let (alice, bob, topic) = team_across(&a, &b).await;
    let team = topic.split("/topics/").next().expect("team path").to_owned();
    let meeting = alice.post_form(&format!("{team}/meetings"), &[("title", "Spread call")]).await;
    let meeting = meeting.url.trim_start_matches(&a.base).to_owned();
    // Node A hosts the call (Alice asked it first); Bob is sent there by node B.
    let mut alice_call = crate::media::join_with_ticket(&media_ticket(&alice, &meeting).await).await;
    let _bob_call = crate::media::join_with_ticket(&media_ticket(&bob, &meeting).await).await;
    alice_call.announce_camera_and_microphone(1).await;

    // Alice now works through node B, which does not host the call.
    let alice_on_b = Client { base: b.base.clone(), http: alice.http.clone() };
    let page = alice_on_b.post_form(&format!("{meeting}/recordings"), &[]).await;
    page.expect_ok_with("Stop recording");
    alice_call.wait_for(|m| matches!(m, ServerMessage::Recording { on: true })).await;
    // A node starting meanwhile (as B would after a restart) leaves A's recording alone:
    // it is not A's crash to recover from.
    let _c = Node::start_with(&database, &redis_url(), &recordings).await;
    let dir = crate::recording::scratch();
    let packets = crate::media::source_packets(&crate::recording::source(&dir));
    crate::media::publish_paced(&alice_call, &packets, 2.0).await;
    let page = alice_on_b.post_form(&format!("{meeting}/recordings/stop"), &[]).await;
    page.expect_ok_with("Alice stopped recording this meeting.").expect_ok_with("Alice's tracks");
    alice_call.wait_for(|m| matches!(m, ServerMessage::Recording { on: false })).await;
    // Composed by the host, downloadable through either node.
    let page = crate::media::composed(&alice_on_b, &meeting).await;
    assert!(!page.body.contains("rec-interrupted"), "the recording ran whole: {}", page.body);
    let video = page.body.split('"').find(|part| part.ends_with("/video")).expect("a link to the video").to_owned();
    for node in [&alice, &alice_on_b] {
        let response = node.http.get(format!("{}{video}", node.base)).send().await.expect("download");
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        assert!(response.bytes().await.expect("body").len() > 10_000, "a real video");
    }

    // Ending the meeting on node B disconnects the call on node A.
    alice_on_b.post_form(&format!("{meeting}/end"), &[]).await;
    assert_eq!(alice_call.close_code().await.0, floo::media::close::ENDED);
    let _ = std::fs::remove_dir_all(&shared);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two nodes on a fresh database and the Redis at `redis_url`; Alice (on A) and Bob (on
/// B) in one team, and a meeting Alice started: (A, B, Alice, Bob, team path, meeting path).
async fn meeting_across(redis_url: &str, title: &str) -> (Node, Node, Client, Client, String, String) {
    let (database, _) = create_postgres_database().await;
    let a = Node::start(&database, redis_url).await;
    let b = Node::start(&database, redis_url).await;
    let (alice, bob, topic) = team_across(&a, &b).await;
    let team = topic.split("/topics/").next().expect("team path").to_owned();
    let meeting = alice.post_form(&format!("{team}/meetings"), &[("title", title)]).await;
    let meeting = meeting.url.trim_start_matches(&a.base).to_owned();
    (a, b, alice, bob, team, meeting)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_split_by_a_redis_restart_comes_back_together_on_one_node() {
    let mut redis = PrivateRedis::start().await;
    let (_a, b, alice, bob, team, meeting) = meeting_across(&redis.url(), "Split call").await;
    let code = alice.get(&format!("{team}/invite")).await.between("id=\"invite-code\">", "<");
    let carol = sign_in(&b, "Carol").await;
    carol.post_form("/join", &[("code", &code)]).await.expect_ok_with("Spread out");
    let on_a = media_ticket(&alice, &meeting).await;
    let alice_call = crate::media::join_with_ticket(&on_a).await;
    let bob_call = crate::media::join_with_ticket(&media_ticket(&bob, &meeting).await).await;

    // Redis restarts (it keeps nothing): every claim is gone. Carol, asking node B at
    // once, gets B to claim the meeting before A has renewed: two rooms for one meeting.
    redis.kill().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart().await;
    let for_carol = media_ticket(&carol, &meeting).await;
    let carol_call = crate::media::join_with_ticket(&for_carol).await;
    let one_call = if for_carol["port"] == on_a["port"] {
        for_carol.clone() // A took its claim back first: no split at all
    } else {
        // Split: whichever node finds the other's claim when it renews (10 s, and a retry
        // if Redis's first answer was an error) sends its people over to the other.
        let within = Duration::from_secs(25);
        let (loser, code, reason) = tokio::select! {
            (code, reason) = alice_call.close_code_within(within) => ("A", code, reason),
            (code, reason) = carol_call.close_code_within(within) => ("B", code, reason),
        };
        assert_eq!(code, floo::media::close::GOING_AWAY, "{reason}");
        if loser == "A" {
            assert_eq!(bob_call.close_code().await.0, floo::media::close::GOING_AWAY, "Bob leaves A with Alice");
        }
        // A ticket for the room that gave up is refused with a code that makes clients
        // reconnect (the relay sends sessions to the call's host).
        let mut stale = if loser == "A" { on_a.clone() } else { for_carol.clone() };
        stale["token"] = media_ticket(&alice, &meeting).await["token"].clone();
        let (code, reason) = crate::media::refusal_for_ticket(&stale).await;
        assert_eq!(code, floo::media::close::GOING_AWAY, "{reason}");
        if loser == "A" { for_carol.clone() } else { on_a.clone() }
    };
    // Whoever asks, on either node, is sent to the one call that is left.
    for (who, client) in [("Alice", &alice), ("Bob", &bob), ("Carol", &carol)] {
        let ticket = media_ticket(client, &meeting).await;
        assert_eq!(ticket["port"], one_call["port"], "{who} is sent to the call that is left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_node_hosting_a_call_is_killed_the_call_moves_at_once_and_nobody_is_left_here_now() {
    let redis = PrivateRedis::start().await;
    let (mut a, b, alice_on_a, bob, team, meeting) = meeting_across(&redis.url(), "Doomed host").await;
    let topic = format!("{team}/topics/{}", alice_on_a.get(&meeting).await.between("/topics/", "/"));
    alice_on_a
        .post_form(&format!("{topic}/messages"), &[("body", "said before the crash")])
        .await
        .expect_ok_with("said before the crash");
    let on_a = media_ticket(&alice_on_a, &meeting).await;
    let alice_call = crate::media::join_with_ticket(&on_a).await;
    let bob_call = crate::media::join_with_ticket(&media_ticket(&bob, &meeting).await).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while bob.get(&meeting).await.body.matches("here now").count() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "both are marked as in the call");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    a.kill().await;
    drop((alice_call, bob_call));
    // Within a few seconds (the heartbeat's 3 s, not the claim's 30 s), node B hosts the
    // meeting: Bob's reconnecting client is sent to B's own relay and admitted there.
    let killed = tokio::time::Instant::now();
    let alice = Client::new(&b.base);
    alice.post_form("/login/dev", &[("name", "Alice")]).await.expect_ok_with("Hello, Alice");
    let for_bob = loop {
        let ticket = media_ticket(&bob, &meeting).await;
        if ticket["port"] != on_a["port"] {
            break ticket;
        }
        assert!(killed.elapsed() < Duration::from_secs(10), "the meeting stayed on the dead node");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _bob_again = crate::media::join_with_ticket(&for_bob).await;
    // Alice never came back: she is not "here now" any more; Bob, who rejoined, is.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let body = alice.get(&meeting).await.body;
        let list = body.split("list attendance").nth(1).unwrap_or("").split("</ul>").next().unwrap_or("");
        let here =
            |name: &str| list.split("<li>").any(|row| row.contains(&format!(">{name}<")) && row.contains("here now"));
        if !here("Alice") && here("Bob") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "stale attendance after the host died: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The team page agrees with the meeting page.
    let team_page = alice.get(&team).await.body;
    let in_it = team_page.split("In it now: ").nth(1).and_then(|rest| rest.split('<').next()).unwrap_or("");
    assert_eq!(in_it.trim(), "Bob", "the team page lists who is in the call");
    // The meeting's chat is intact, and goes on through B.
    bob.post_form(&format!("{topic}/messages"), &[("body", "said after it")]).await.expect_ok_with("said after it");
    let chat = alice.get(&topic).await.body;
    assert!(chat.contains("said before the crash") && chat.contains("said after it"), "{chat}");
    println!("re-hosted {} ms after the kill", killed.elapsed().as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_controls_say_try_again_while_redis_is_away_not_conflict() {
    let mut redis = PrivateRedis::start().await;
    let (_a, _b, alice, _bob, _, meeting) = meeting_across(&redis.url(), "Flaky cache").await;
    let _alice_call = crate::media::join_with_ticket(&media_ticket(&alice, &meeting).await).await;

    redis.kill().await;
    let page = alice.post_form(&format!("{meeting}/recordings"), &[]).await;
    assert_eq!(page.status, reqwest::StatusCode::SERVICE_UNAVAILABLE, "{}", page.body);
    assert!(page.body.contains("Try again in a moment"), "{}", page.body);
    redis.restart().await;
    // Once Redis answers again, the same click works.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let page = alice.post_form(&format!("{meeting}/recordings"), &[]).await;
        if page.status.is_success() {
            page.expect_ok_with("Stop recording");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} {}", page.status, page.body);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_outlives_a_forty_second_redis_outage_its_chat_arrives_and_newcomers_join_it() {
    use floo::media::wire::ServerMessage;
    let mut redis = PrivateRedis::start().await;
    let (_a, b, alice, bob, team, meeting) = meeting_across(&redis.url(), "Long outage").await;
    let code = alice.get(&format!("{team}/invite")).await.between("id=\"invite-code\">", "<");
    let carol = sign_in(&b, "Carol").await;
    carol.post_form("/join", &[("code", &code)]).await.expect_ok_with("Spread out");
    // Alice on A hosts the call; Bob, through B, is sent to A's relay and watches her camera.
    let on_a = media_ticket(&alice, &meeting).await;
    let mut alice_call = crate::media::join_with_ticket(&on_a).await;
    let for_bob = media_ticket(&bob, &meeting).await;
    assert_eq!(for_bob["port"], on_a["port"]);
    let mut bob_call = crate::media::join_with_ticket(&for_bob).await;
    alice_call.announce_camera_and_microphone(0).await;
    let camera = crate::media::subscribe_to_others(&mut bob_call, 2).await[0].id;
    // Both read the meeting's chat live, each through their own node.
    let topic = format!("{team}/topics/{}", alice.get(&meeting).await.between("/topics/", "/"));
    let mut chat_on_a = SseStream::open(&alice, &format!("{topic}/events"), None).await;
    let mut chat_on_b = SseStream::open(&bob, &format!("{topic}/events"), None).await;

    // Redis goes away for longer than a claim lives (30 s).
    redis.kill().await;
    let outage = tokio::time::Instant::now();
    alice.post_form(&format!("{topic}/messages"), &[("body", "said on A")]).await.expect_ok_with("said on A");
    bob.post_form(&format!("{topic}/messages"), &[("body", "said on B")]).await.expect_ok_with("said on B");
    // The call goes on meanwhile: each second a picture of Alice's reaches Bob, whole.
    let mut sequence = 0;
    while outage.elapsed() < Duration::from_secs(40) {
        let sent = crate::media::frames(3);
        alice_call.publish_group(1, sequence, &sent).await;
        let (header, received) = bob_call.receive_group().await;
        assert_eq!((header.track, header.sequence, received), (camera, sequence, sent), "Bob still sees Alice");
        sequence += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    redis.restart().await;

    // Everything said during the outage reaches both readers, once each.
    for (node, chat) in [("A", &mut chat_on_a), ("B", &mut chat_on_b)] {
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let event = chat.next_named("message").await;
            seen.push((event.id.clone().unwrap_or_default(), event.data));
        }
        assert!(seen.iter().any(|(_, d)| d.contains("said on A")) && seen.iter().any(|(_, d)| d.contains("said on B")));
        assert_ne!(seen[0].0, seen[1].0, "nothing twice on {node}: {seen:?}");
    }
    alice.post_form(&format!("{topic}/messages"), &[("body", "after")]).await.expect_ok_with("after");
    for chat in [&mut chat_on_a, &mut chat_on_b] {
        assert!(chat.next_named("message").await.data.contains("after"), "live again, nothing replayed");
    }
    // Carol, joining through B afterwards, lands in the same call as Alice and Bob.
    let for_carol = media_ticket(&carol, &meeting).await;
    assert_eq!(for_carol["port"], on_a["port"], "Carol is sent to the call that went on");
    let _carol_call = crate::media::join_with_ticket(&for_carol).await;
    alice_call.wait_for(|m| matches!(m, ServerMessage::Joined { participant } if participant.name == "Carol")).await;
    println!("the call went on through {sequence} pictures without Redis");
}

/// A port free on loopback now (for a process that must come back on the same one).
fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("a free UDP port").port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("a free TCP port").port()
    }
}

/// Caddy running the deployment's own `ops/deploy/Caddyfile` on loopback, in front of
/// the two nodes' HTTP addresses, on `port`. Stopped when dropped.
struct Caddy {
    base: String,
    _child: Child,
    home: std::path::PathBuf,
}

impl Caddy {
    async fn start(port: u16, nodes: [&str; 2]) -> Caddy {
        let base = format!("http://127.0.0.1:{port}");
        let home = std::env::temp_dir().join(format!("floo-caddy-{}", crate::support::unique_suffix()));
        std::fs::create_dir_all(&home).expect("a home for caddy");
        let caddyfile = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/deploy/Caddyfile");
        let child = Command::new("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&caddyfile)
            .env("HOME", &home)
            .env("XDG_DATA_HOME", &home)
            .env("XDG_CONFIG_HOME", &home)
            .env("FLOO_DOMAIN", &base)
            .env("FLOO_NODE_1", nodes[0])
            .env("FLOO_NODE_2", nodes[1])
            .env("CADDY_ADMIN", "off")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(home.join("caddy.log")).expect("caddy log"))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the rolling-restart test needs Caddy (ops/test installs the caddy package)");
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(response) = http.get(format!("{base}/readyz")).send().await
                && response.status().is_success()
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Caddy did not serve the nodes within 20 s; see {}",
                home.join("caddy.log").display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Caddy { base, _child: child, home }
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// The weekly deploy: two nodes behind Caddy (the deployment's Caddyfile), three people in
/// a call in Chromium, and each node in turn stopped with SIGTERM and started again. The
/// walk (`tests/e2e/rolling.mjs`) measures, at each participant, the longest gap in the
/// video and the voices it receives from the others while the node goes, and writes chat
/// the whole time: everyone is back after each restart and every message is there, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_both_nodes_during_a_call_of_three_freezes_it_briefly_and_loses_no_chat() {
    let (database, _) = create_postgres_database().await;
    let redis = PrivateRedis::start().await;
    let http = [free_port(false), free_port(false)];
    let mut nodes = Vec::new();
    let caddy_port = free_port(false);
    let public = format!("http://127.0.0.1:{caddy_port}");
    for (i, port) in http.iter().enumerate() {
        let args = [
            "--http-addr".to_owned(),
            format!("127.0.0.1:{port}"),
            "--quic-addr".to_owned(),
            format!("127.0.0.1:{}", free_port(true)),
            "--public-url".to_owned(),
            public.clone(),
            "--node-url".to_owned(),
            format!("{public}/node/{}", i + 1),
            "--shutdown-grace".to_owned(),
            "20".to_owned(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        nodes.push(Node::start_on(&database, &redis.url(), &args).await);
    }
    let upstreams = http.map(|port| format!("127.0.0.1:{port}"));
    let caddy = Caddy::start(caddy_port, [&upstreams[0], &upstreams[1]]).await;
    assert_eq!(caddy.base, public);

    let mut restarts = Vec::new();
    crate::browser::run_browser_script_steering(&public, "rolling.mjs", "rolling", &[], async |request: String| {
        let n: usize = request
            .strip_prefix("restart ")
            .and_then(|n| n.parse().ok())
            .filter(|n| (1..=2).contains(n))
            .unwrap_or_else(|| panic!("rolling.mjs asked for `{request}`"));
        let node = &mut nodes[n - 1];
        let quic = node.args.iter().skip_while(|a| *a != "--quic-addr").nth(1).and_then(|a| a.rsplit(':').next());
        let quic = quic.expect("the node's QUIC address").to_owned();
        let (drained, away) = node.restart().await;
        restarts.push((n, drained, away));
        format!("restarted {n} {} {} {quic}", drained.as_millis(), away.as_millis())
    })
    .await;
    assert_eq!(restarts.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2], "each node was restarted once, in turn");
    for (n, drained, away) in restarts {
        println!("node {n}: drained in {} ms, away {} ms in all", drained.as_millis(), away.as_millis());
    }
}
