//! What an attacker found (issue "Hardening"), each with the test that failed before its fix.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

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
