//! What an attacker found (issue "Hardening"), each with the test that failed before its fix.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;

use crate::support::{Backend, TestApp};

/// `next` values that once sent a signed-in user elsewhere (`/<TAB>/evil.example` reads as
/// `//evil.example` to a browser) or answered a bare 500 with a live session cookie
/// (control characters that cannot go into a `Location` header).
const TRICKY_NEXT: [&str; 7] =
    ["/\t/evil.example", "/\u{b}", "\0", "/\u{7f}", "/\\evil.example", "/\r\n/x", "//evil.example"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_returns_only_to_a_local_path_whatever_next_says() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // Signed in: the sign-in page sends the user on at once.
    let alice = app.signed_in("Alice").await;
    for next in TRICKY_NEXT {
        let url = reqwest::Url::parse_with_params(&format!("{}/login", app.base), [("next", next)]).expect("url");
        let page = alice.get(url.as_str()).await;
        assert_eq!((page.status, page.url.as_str()), (StatusCode::OK, format!("{}/", app.base).as_str()), "{next:?}");
    }
    // Signed out, through the dev login form (the session is made before the redirect).
    for next in TRICKY_NEXT {
        let bob = app.client();
        let page = bob.post_form("/login/dev", &[("name", "Bob"), ("next", next)]).await;
        assert_eq!(page.status, StatusCode::OK, "{next:?}: {}", page.body);
        assert_eq!(page.url, format!("{}/", app.base), "{next:?}");
        page.expect_ok_with("Hello, Bob");
    }
    // A real local path with a query and non-ASCII still works.
    let page = app.client().post_form("/login/dev", &[("name", "Carol"), ("next", "/?from=李雷")]).await;
    assert!(page.url.starts_with(&format!("{}/?from=", app.base)), "{}", page.url);
    app.finish().await;
}

/// A file's or directory's permission bits.
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_and_the_database_are_floos_own() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.signed_in("Alice").await; // something written
    assert_eq!(mode(&app.data_dir), 0o700);
    assert_eq!(mode(&app.data_dir.join("recordings")), 0o700);
    assert_eq!(mode(&app.data_dir.join(floo::config::SQLITE_FILE)), 0o600, "it holds the key that signs media tokens");
    app.finish().await;
}

/// Opens a raw TCP connection to the app and sends `bytes`.
async fn raw(app: &TestApp, bytes: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr = app.base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(bytes).await.expect("send");
    tcp
}

/// Everything the server sends until it closes the connection; None if it is still open
/// after `within`.
async fn read_until_closed(tcp: &mut tokio::net::TcpStream, within: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut chunk = [0u8; 4096];
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    });
    read.await.ok().map(|()| String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_oversized_clients_are_let_go_and_a_full_server_says_so() {
    let limits = ["--http-header-timeout", "1", "--http-body-timeout", "1", "--max-http-connections", "6"];
    let app = TestApp::spawn_with(Backend::Sqlite, &limits).await;
    let patience = Duration::from_secs(4);

    // Half the headers, then nothing: closed after the header timeout.
    let mut half = raw(&app, b"GET / HTTP/1.1\r\nHost: floo\r\nX-Slow: ").await;
    let answer =
        read_until_closed(&mut half, patience).await.expect("a client that never finishes its headers is let go");
    assert!(!answer.contains("200 OK"), "{answer}");

    // A finished request, then an idle keep-alive connection: answered, then closed.
    let mut idle = raw(&app, b"GET /healthz HTTP/1.1\r\nHost: floo\r\n\r\n").await;
    let answer = read_until_closed(&mut idle, patience).await.expect("an idle keep-alive connection is closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A body declared far larger than any form: refused at once, nothing read.
    let mut huge =
        raw(&app, b"POST /teams HTTP/1.1\r\nHost: floo\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 104857600\r\n\r\n")
            .await;
    let answer = read_until_closed(&mut huge, patience).await.expect("an oversized declared body is refused");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("too large"), "{answer}");

    // A body that stops arriving: refused after the body timeout.
    let mut stalled =
        raw(&app, b"POST /login/dev HTTP/1.1\r\nHost: floo\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nname=Mal")
            .await;
    let answer = read_until_closed(&mut stalled, patience).await.expect("a stalled body is let go");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // Connections past the cap get a clear 503 and are closed; slots free up again.
    tokio::time::sleep(Duration::from_millis(1500)).await; // the earlier connections are gone
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(raw(&app, b"GET / HTTP/1.1\r\nHost: floo\r\n").await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = raw(&app, b"GET / HTTP/1.1\r\nHost: floo\r\n\r\n").await;
    let answer = read_until_closed(&mut extra, patience).await.expect("the refusal closes the connection");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("Floo is busy") && answer.to_lowercase().contains("retry-after: 5"), "{answer}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.client().get("/login").await.expect_ok_with("Sign in");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_refused_before_their_handler_get_floos_error_page() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let alice = app.signed_in("Alice").await;
    let team = alice.post_form("/teams", &[("name", "Pages")]).await.url;
    let token = alice.csrf().await;
    let cases: [(reqwest::RequestBuilder, StatusCode); 5] = [
        (alice.http.get(format!("{team}/forum?page=first")), StatusCode::BAD_REQUEST),
        (alice.http.get(format!("{}/teams/not-a-number", app.base)), StatusCode::NOT_FOUND),
        (alice.http.get(format!("{}/teams/99999999999999999999999/forum", app.base)), StatusCode::NOT_FOUND),
        (alice.http.put(format!("{}/teams", app.base)).header("x-csrf-token", &token), StatusCode::METHOD_NOT_ALLOWED),
        (
            alice.http.post(format!("{}/teams", app.base)).header("x-csrf-token", &token).body("{\"name\":1}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (request, status) in cases {
        let response = request.send().await.expect("request");
        let url = response.url().to_string();
        assert_eq!(response.status(), status, "{url}");
        let kind = response.headers()[reqwest::header::CONTENT_TYPE].to_str().expect("type").to_owned();
        let body = response.text().await.expect("body");
        assert!(kind.starts_with("text/html"), "{url}: {kind}");
        assert!(body.contains("Go to your home page"), "{url}: {body}");
        for raw_text in ["Failed to", "Invalid URL", "deserialize", "Content-Type"] {
            assert!(!body.contains(raw_text), "{url} shows axum's own text: {body}");
        }
    }
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_cannot_hide_characters_or_pose_as_someone_else() {
    use crate::oidc_provider::{CLIENT_ID, CLIENT_SECRET, NextLogin, Provider};
    let provider = Provider::start().await;
    let sso = ["--oidc-issuer", &provider.issuer, "--oidc-client-id", CLIENT_ID, "--oidc-client-secret", CLIENT_SECRET];
    let app = TestApp::spawn_with(Backend::Sqlite, &[&sso[..], &["--allow-dev-login"]].concat()).await;

    // The dev login refuses what would hide or reorder characters, and says why.
    for trick in ["Ali\u{200B}ce", "Bob\u{202E}ecilA", "Al\u{0}ice", "\u{2066}Alice\u{2069}"] {
        let page = app.client().post_form("/login/dev", &[("name", trick)]).await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{trick:?}");
        assert!(page.body.contains("invisible or control characters"), "{trick:?}: {}", page.body);
    }
    // What only looks different is the same name: normalised, it signs in as one user.
    let first = app.signed_in("Am\u{e9}lie Poulain").await;
    first
        .post_form("/teams", &[("name", "Caf\u{e9}\n\n  des Deux   Moulins ")])
        .await
        .expect_ok_with("Café des Deux Moulins");
    let again = app.client();
    let home = again.post_form("/login/dev", &[("name", "  Ame\u{301}lie \r\n Poulain ")]).await;
    home.expect_ok_with("Hello, Amélie Poulain").expect_ok_with("Café des Deux Moulins");

    // A provider's name is not sent back: what would be refused is left out.
    provider.set_next(NextLogin::User {
        subject: "77".into(),
        name: "Grace\u{202E} \u{200B}Hopper\r\n".into(),
        email: "grace@example.com".into(),
    });
    let grace = app.client();
    let home = grace.post_form("/auth/oidc/start", &[("next", "/")]).await;
    home.expect_ok_with("Hello, Grace Hopper");
    assert!(!home.body.contains('\u{202E}') && !home.body.contains('\u{200B}'));
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_and_guessing_invite_codes_are_rate_limited_per_user_and_address() {
    let app = TestApp::spawn_with(Backend::Sqlite, &["--creation-burst", "2", "--creations-per-minute", "1"]).await;
    let alice = app.signed_in("Alice").await;
    let team = alice.post_form("/teams", &[("name", "Busy")]).await.url;
    alice.post_form(&format!("{team}/forum"), &[("title", "One"), ("body", "")]).await.expect_ok_with("One");
    // The third creation of any kind is refused on its form, which keeps the draft.
    let meeting = alice.post_form(&format!("{team}/meetings"), &[("title", "Third thing")]).await;
    assert_eq!(meeting.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(meeting.body.contains("faster than this server allows") && meeting.body.contains("Third thing"));
    let topic = alice.post_form(&format!("{team}/forum"), &[("title", "Spam"), ("body", "kept draft")]).await;
    assert_eq!(topic.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(topic.body.contains("kept draft"));
    let another = alice.post_form("/teams", &[("name", "Spam team")]).await;
    assert_eq!(another.status, StatusCode::TOO_MANY_REQUESTS);
    // Bob is not slowed down by Alice.
    let bob = app.signed_in("Bob").await;
    bob.post_form("/teams", &[("name", "Bob's")]).await.expect_ok_with("Bob's");

    // Wrong invite codes: a few tries, then every code is refused for a while.
    let code = alice.get(&format!("{team}/invite")).await.between("id=\"invite-code\">", "<");
    let mallory = app.signed_in("Mallory").await;
    for guess in 0..10 {
        let page = mallory.post_form("/join", &[("code", &format!("guess{guess:05}"))]).await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "guess {guess}");
    }
    let page = mallory.post_form("/join", &[("code", &code)]).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "even a right code, once guessing was seen");
    assert!(page.body.contains("Too many invite codes"), "{}", page.body);
    let link = mallory.get(&format!("/join/{code}")).await;
    assert_eq!(link.status, StatusCode::TOO_MANY_REQUESTS, "invite links count too");
    // The same address under another account is refused too...
    let carol = app.signed_in("Carol").await;
    assert_eq!(carol.post_form("/join", &[("code", &code)]).await.status, StatusCode::TOO_MANY_REQUESTS);
    // ...while someone elsewhere (behind the local reverse proxy) joins.
    let dave = app.signed_in("Dave").await;
    let token = dave.csrf().await;
    let joined = dave
        .http
        .post(dave.url("/join"))
        .header("x-forwarded-for", "203.0.113.9")
        .form(&[("code", code.as_str()), ("_csrf", token.as_str())])
        .send()
        .await
        .expect("join");
    assert_eq!(joined.status(), StatusCode::OK);
    assert!(joined.text().await.expect("body").contains("Busy"));
    app.finish().await;
}

/// A client that keeps no cookies and follows no redirects: the test sets every cookie.
fn bare_client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// The value a response sets for cookie `name`.
fn set_cookie_value(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{name}="))?.split(';').next().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_tokens_are_bound_to_the_session_so_a_planted_cookie_does_not_help() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let alice = app.signed_in("Alice").await;
    let before_sign_in = app.client().csrf().await;
    let token = alice.csrf().await;
    assert_ne!(token, before_sign_in, "signing in changes the token");
    let other_session = app.signed_in("Alice").await.csrf().await;
    assert_ne!(token, other_session, "each session has its own");
    // Alice's form works with her token.
    alice.post_form("/teams", &[("name", "Mine")]).await.expect_ok_with("Mine");

    // An attacker who plants a CSRF cookie of their choosing and submits the same value
    // (the double-submit trick) is refused: the token must match Alice's session.
    let http = bare_client();
    let login = http
        .post(format!("{}/login/dev", app.base))
        .header("cookie", format!("floo_csrf={before_sign_in}"))
        .form(&[("name", "Alice"), ("_csrf", &before_sign_in)])
        .send()
        .await
        .expect("login");
    let session = set_cookie_value(&login, "floo_session").expect("a session cookie");
    let planted = "a".repeat(64);
    let forged = http
        .post(format!("{}/teams", app.base))
        .header("cookie", format!("floo_session={session}; floo_csrf={planted}"))
        .form(&[("name", "Forged"), ("_csrf", planted.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    // Another session's token does not carry over either.
    let crossed = http
        .post(format!("{}/teams", app.base))
        .header("cookie", format!("floo_session={session}"))
        .header("x-csrf-token", &token)
        .send()
        .await
        .expect("post");
    assert_eq!(crossed.status(), StatusCode::FORBIDDEN);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_https_cookies_are_host_only_and_unprefixed_ones_are_ignored() {
    let app = TestApp::spawn_with(Backend::Sqlite, &["--public-url", "https://floo.example"]).await;
    let base = format!("http://{}", app.http_addr);
    let http = bare_client();
    let login_page = http.get(format!("{base}/login")).send().await.expect("login page");
    let raw = login_page.headers()[reqwest::header::SET_COOKIE].to_str().expect("cookie").to_owned();
    assert!(raw.starts_with("__Host-floo_csrf=") && raw.contains("; Secure") && raw.contains("Path=/"), "{raw}");
    assert!(!raw.to_lowercase().contains("domain="), "{raw}");
    let csrf = set_cookie_value(&login_page, "__Host-floo_csrf").expect("csrf");
    let login = http
        .post(format!("{base}/login/dev"))
        .header("cookie", format!("__Host-floo_csrf={csrf}"))
        .form(&[("name", "Alice"), ("_csrf", &csrf)])
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let session = set_cookie_value(&login, "__Host-floo_session").expect("a __Host- session cookie");
    let home = |cookie: String| http.get(format!("{base}/")).header("cookie", cookie).send();
    let signed_in = home(format!("__Host-floo_session={session}")).await.expect("home").text().await.expect("body");
    assert!(signed_in.contains("Hello, Alice"), "{signed_in}");
    // The same value without the prefix (as a sibling subdomain could plant) is no session.
    let planted = home(format!("floo_session={session}")).await.expect("home");
    assert!(planted.status().is_redirection() || !planted.text().await.expect("body").contains("Hello, Alice"));
    app.finish().await;
}

/// A TCP proxy in front of PostgreSQL that a test can cut (every connection dropped,
/// new ones refused, as while the server restarts) and restore.
struct CuttableProxy {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CuttableProxy {
    async fn start(target: String) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (refusing, connections) = (cut.clone(), open.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if refusing.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped at once: the connection is reset
                }
                let target = target.clone();
                let relay = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                connections.lock().expect("lock").push(relay);
            }
        });
        CuttableProxy { port, cut, open, accept }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for connection in self.open.lock().expect("lock").drain(..) {
            connection.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgresql_is_away_pages_say_so_with_503_and_recover_after() {
    let (url, _) = crate::support::create_postgres_database().await;
    let mut url = url::Url::parse(&url).expect("url");
    let target = format!("{}:{}", url.host_str().expect("host"), url.port().unwrap_or(5432));
    let proxy = CuttableProxy::start(target).await;
    url.set_host(Some("127.0.0.1")).expect("host");
    url.set_port(Some(proxy.port)).expect("port");
    let app = TestApp::spawn_with(Backend::Sqlite, &["--database-url", url.as_str()]).await;
    let alice = app.signed_in("Alice").await;
    let team = alice.post_form("/teams", &[("name", "Durable")]).await.url;
    let topic =
        alice.post_form(&format!("{team}/forum"), &[("title", "Committed"), ("body", "before the outage")]).await.url;

    let token = alice.csrf().await;
    proxy.cut();
    for path in [team.as_str(), topic.as_str(), "/"] {
        let page = alice.get(path).await;
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {}", page.body);
        assert!(page.body.contains("cannot reach its database"), "{}", page.body);
    }
    let form = [("title", "Lost?"), ("body", ""), ("_csrf", token.as_str())];
    let refused = alice.http.post(format!("{team}/forum")).form(&form).send().await.expect("post");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "5");

    proxy.restore();
    // The pool reconnects by itself; what was committed before is all there.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let page = alice.get(&topic).await;
        if page.status == StatusCode::OK {
            page.expect_ok_with("before the outage");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no recovery: {} {}", page.status, page.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    alice.post_form(&format!("{team}/forum"), &[("title", "After"), ("body", "")]).await.expect_ok_with("After");
    app.finish().await;
}
