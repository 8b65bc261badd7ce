//! Instance admins and the ops dashboard: `floo admin grant | list | revoke` on the
//! server's own database, and `/ops` for admins only (404 for anyone else). The dashboard
//! in a browser during a call is `browser::an_admin_watches_a_call_on_the_dashboard`.

use reqwest::StatusCode;

use crate::support::{Backend, TestApp};

/// Runs `floo admin ARGS` on the app's database: (success, stdout, stderr).
pub fn floo_admin(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_floo"));
    command.arg("admin").arg("--data-dir").arg(&app.data_dir);
    if let Some(url) = &app.database_url {
        command.args(["--database-url", url]);
    }
    let output = command.args(args).output().expect("floo runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_are_granted_listed_and_revoked_from_the_command_line_and_only_they_see_the_dashboard() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let alice = app.signed_in("Alice").await;
    let bob = app.signed_in("Bob").await;
    let (ok, out, _) = floo_admin(&app, &["list"]);
    assert!(ok && out.contains("No instance admins yet"), "{out}");
    // Nobody is an admin yet: the dashboard does not exist for anyone.
    for (who, client) in [("Alice", &alice), ("Bob", &bob), ("a stranger", &app.client())] {
        assert_eq!(client.get("/ops").await.status, StatusCode::NOT_FOUND, "{who}");
        assert_eq!(client.get("/ops/events").await.status, StatusCode::NOT_FOUND, "{who}");
    }

    let (ok, out, err) = floo_admin(&app, &["grant", "--identity", "dev:alice"]);
    assert!(ok, "{err}");
    assert!(out.contains("Alice (dev:alice) is now an instance admin."), "{out}");
    let (ok, out, _) = floo_admin(&app, &["grant", "--identity", "dev:alice"]);
    assert!(ok && out.contains("was an instance admin already"), "{out}");
    let (ok, out, _) = floo_admin(&app, &["list"]);
    assert!(ok && out.contains("Alice (dev:alice)") && !out.contains("Bob"), "{out}");
    // Whom it does not know, it says so, and changes nothing.
    let (ok, _, err) = floo_admin(&app, &["grant", "--identity", "dev:nobody"]);
    assert!(!ok && err.contains("no user dev:nobody: they must have signed in to Floo once"), "{err}");
    let (ok, _, err) = floo_admin(&app, &["grant", "--email", "nobody@example.com"]);
    assert!(!ok && err.contains("no user with the e-mail nobody@example.com"), "{err}");
    let (ok, _, err) = floo_admin(&app, &["grant", "--identity", "alice"]);
    assert!(!ok && err.contains("PROVIDER:SUBJECT"), "{err}");

    let page = alice.get("/ops").await;
    page.expect_ok_with("Operations");
    assert!(page.body.contains("Live meetings (0)") && page.body.contains("No meeting is live right now."));
    assert_eq!(bob.get("/ops").await.status, StatusCode::NOT_FOUND, "Bob is not an admin");
    assert_eq!(app.client().get("/ops").await.status, StatusCode::NOT_FOUND, "signed out");

    // An admin ends someone else's meeting from the dashboard (not a member of the team).
    let team = bob.post_form("/teams", &[("name", "Bob's team")]).await.url;
    let meeting = bob.post_form(&format!("{team}/meetings"), &[("title", "Runaway")]).await.url;
    let page = alice.get("/ops").await;
    assert!(page.body.contains("Live meetings (1)") && page.body.contains("Runaway"), "{}", page.body);
    let team_id = team.rsplit('/').next().expect("team id").to_owned();
    let meeting_id = meeting.rsplit('/').next().expect("meeting id").to_owned();
    // The call's own page: Bob (the host, not an admin) may not see it; Alice is told
    // there are no figures (nobody is connected), and an unknown meeting is 404.
    assert_eq!(bob.get(&format!("/ops/meetings/{meeting_id}")).await.status, StatusCode::NOT_FOUND);
    alice.get(&format!("/ops/meetings/{meeting_id}")).await.expect_ok_with("not hosted by this node right now");
    assert_eq!(alice.get("/ops/meetings/999999").await.status, StatusCode::NOT_FOUND);
    // Where recordings go, and the room left there.
    assert!(alice.get("/ops").await.body.contains("Space left for recordings:"));
    assert_eq!(
        bob.post_form(&format!("/ops/meetings/{meeting_id}/end"), &[("team_id", &team_id)]).await.status,
        StatusCode::NOT_FOUND,
        "Bob may not use it"
    );
    alice
        .post_form(&format!("/ops/meetings/{meeting_id}/end"), &[("team_id", &team_id)])
        .await
        .expect_ok_with("Live meetings (0)");
    assert!(bob.get(&meeting).await.body.contains("ended"), "the meeting has ended");

    let (ok, out, _) = floo_admin(&app, &["revoke", "--identity", "dev:alice"]);
    assert!(ok && out.contains("is no longer an instance admin"), "{out}");
    assert_eq!(alice.get("/ops").await.status, StatusCode::NOT_FOUND, "revoked");
    app.finish().await;
}

#[test]
fn the_deploy_files_are_accepted_by_systemd_caddy_and_promtool() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/deploy");
    // The unit as installed, but starting the binary this test built (verify checks it).
    let unit = std::fs::read_to_string(deploy.join("floo.service")).expect("the unit");
    assert!(unit.contains("ExecStart=/usr/local/bin/floo serve"));
    for hardening in ["User=floo", "NoNewPrivileges=yes", "ProtectSystem=strict", "LimitNOFILE=65536"] {
        assert!(unit.contains(hardening), "the unit has {hardening}");
    }
    let dir = crate::recording::scratch();
    let installed = dir.join("floo.service");
    std::fs::write(&installed, unit.replace("/usr/local/bin/floo", env!("CARGO_BIN_EXE_floo"))).expect("write");
    let verify = std::process::Command::new("systemd-analyze")
        .args(["verify"])
        .arg(&installed)
        .output()
        .expect("systemd-analyze (systemd) runs");
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success() && !said.contains(&*installed.to_string_lossy()), "systemd-analyze verify: {said}");

    let caddy = std::process::Command::new("caddy")
        .args(["validate", "--adapter", "caddyfile", "--config"])
        .arg(deploy.join("Caddyfile"))
        .output()
        .expect("the deploy test needs Caddy (ops/test installs the caddy package)");
    assert!(caddy.status.success(), "caddy validate: {}", String::from_utf8_lossy(&caddy.stderr));
    let rules = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(deploy.join("prometheus-alerts.yml"))
        .output()
        .expect("promtool (from the prometheus package)");
    assert!(rules.status.success(), "promtool check rules: {}", String::from_utf8_lossy(&rules.stderr));
    let alerts = std::fs::read_to_string(deploy.join("prometheus-alerts.yml")).expect("alerts");
    assert!(alerts.contains("floo_recordings_disk_available_bytes"), "the disk alert reads the metric Floo serves");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id_that_the_response_names() {
    use tokio::io::AsyncBufReadExt;
    let data_dir = std::env::temp_dir().join(format!("floo-json-{}", crate::support::unique_suffix()));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_floo"))
        .args(["--log-format", "json", "serve", "--http-addr", "127.0.0.1:0", "--quic-addr", "127.0.0.1:0"])
        .args(["--metrics-addr", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env("FLOO_LOG", "info,floo::metrics=debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start floo");
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let base = loop {
        let line = stdout.next_line().await.expect("stdout").expect("floo exited before listening");
        if let Some(url) = line.strip_prefix("Floo is running at ") {
            break url.trim().to_owned();
        }
    };
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let response = client.get(format!("{base}/teams/7/forum")).send().await.expect("a request");
    let id = response.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let line = stderr.next_line().await.expect("stderr").expect("log ended");
            let json: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            if json["span"]["request_id"] == id.as_str() {
                return json;
            }
        }
    })
    .await
    .expect("a log line with the request id");
    assert_eq!(line["span"]["route"], "/teams/{team_id}/forum", "{line}");
    assert_eq!(line["status"], 303, "{line}");
    drop(child);
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// The container image, built here by `ops/image` (a Debian base from mmdebstrap, the
/// binary these tests built, buildah without a daemon), runs Floo: it answers on its port,
/// and a call made through it by two people in Chromium is recorded and composed into the
/// meeting video, on the data volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_image_serves_a_call_and_records_it() {
    use tokio::io::AsyncBufReadExt;
    let turn = crate::support::WHOLE_MACHINE.lock().await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = tokio::process::Command::new(root.join("ops/image"))
        .arg(env!("CARGO_BIN_EXE_floo"))
        .output()
        .await
        .expect("ops/image runs");
    assert!(
        built.status.success(),
        "ops/image: {}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    let container =
        std::process::Command::new("buildah").args(["from", "localhost/floo:latest"]).output().expect("buildah");
    assert!(container.status.success(), "buildah from: {}", String::from_utf8_lossy(&container.stderr));
    let container = String::from_utf8_lossy(&container.stdout).trim().to_owned();
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::process::Command::new("buildah").args(["rm", &self.0]).output();
        }
    }
    let _remove = Remove(container.clone());
    // The data volume belongs to the image's user (uid 10001).
    let data = crate::recording::scratch().join("volume");
    std::fs::create_dir_all(&data).expect("dir");
    std::os::unix::fs::chown(&data, Some(10001), None).expect("chown");
    let mut server = tokio::process::Command::new("buildah")
        .args(["run", "--isolation", "chroot", "--volume", &format!("{}:/var/lib/floo", data.display()), &container])
        .args(["--", "/usr/local/bin/floo", "serve", "--http-addr", "127.0.0.1:0", "--quic-addr", "127.0.0.1:0"])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("buildah run");
    let mut lines = tokio::io::BufReader::new(server.stdout.take().expect("stdout")).lines();
    let base = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("stdout") {
            if let Some(url) = line.strip_prefix("Floo is running at ") {
                return url.trim().to_owned();
            }
        }
        panic!("Floo in the image exited before listening");
    })
    .await
    .expect("Floo starts in the image");

    // A call through it made by two people in Chromium, recorded and composed.
    drop(turn); // the walk takes the machine itself
    crate::browser::run_browser_script_at(&base, "image.mjs", "image", &[]).await;
    let mp4 = data.join("recordings/1/meeting.mp4");
    let streams = crate::recording::streams(&mp4);
    assert_eq!(streams.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), vec!["h264", "aac"], "{streams:?}");
    // SIGTERM: buildah passes it on, and Floo shuts down inside (a SIGKILL would leave it).
    if let Some(pid) = server.id() {
        let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), server.wait()).await;
    let _ = std::fs::remove_dir_all(data.parent().expect("scratch"));
}
