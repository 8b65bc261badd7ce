//! The OAuth 2.0 / OpenID Connect code flow against the stand-in provider on loopback:
//! the real sign-in code path, including its failures.

use reqwest::StatusCode;

use crate::oidc_provider::{CLIENT_ID, CLIENT_SECRET, NextLogin, Provider};
use crate::on_both_backends;
use crate::support::{Backend, Client, TestApp};

on_both_backends!(
    signing_in_through_the_provider_creates_a_session_for_the_same_user_each_time,
    a_wrong_state_a_replayed_code_and_a_provider_error_each_end_without_a_session,
);

pub async fn spawn_with_provider(backend: Backend) -> (TestApp, Provider) {
    spawn_with_provider_and(backend, &[]).await
}

/// The same, with more `floo serve` flags.
pub async fn spawn_with_provider_and(backend: Backend, extra: &[&str]) -> (TestApp, Provider) {
    let provider = Provider::start().await;
    let mut args = vec![
        "--oidc-issuer",
        &provider.issuer,
        "--oidc-client-id",
        CLIENT_ID,
        "--oidc-client-secret",
        CLIENT_SECRET,
        "--oidc-name",
        "Test SSO",
    ];
    args.extend(extra);
    let app = TestApp::spawn_with(backend, &args).await;
    (app, provider)
}

pub fn grace() -> NextLogin {
    NextLogin::User { subject: "248289761001".into(), name: "Grace Hopper".into(), email: "grace@example.com".into() }
}

/// A client that does not follow redirects, to step through the flow by hand.
fn manual_client(app: &TestApp) -> Client {
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    Client { base: app.base.clone(), http }
}

async fn location_of(response: reqwest::Response) -> String {
    assert!(response.status().is_redirection(), "expected a redirect, got {}", response.status());
    response.headers()["location"].to_str().expect("location").to_owned()
}

/// Starts a login and returns the callback URL the provider sends the browser to.
async fn callback_url_from_provider(client: &Client) -> String {
    let token = client.csrf().await;
    let start = client
        .http
        .post(format!("{}/auth/oidc/start", client.base))
        .form(&[("_csrf", token.as_str()), ("next", "/")])
        .send()
        .await
        .expect("start");
    let authorize = location_of(start).await;
    let at_provider = client.http.get(&authorize).send().await.expect("authorize");
    location_of(at_provider).await
}

async fn is_signed_in(client: &Client) -> bool {
    client.get("/").await.body.contains("Sign out")
}

async fn signing_in_through_the_provider_creates_a_session_for_the_same_user_each_time(backend: Backend) {
    let (app, provider) = spawn_with_provider(backend).await;
    let client = app.client();
    let login = client.get("/login").await;
    login.expect_ok_with("Sign in with Test SSO");
    assert!(!login.body.contains("Development login"), "no dev login beside a configured provider");
    let dev = client.post_form("/login/dev", &[("name", "Mallory")]).await;
    assert_eq!(dev.status, StatusCode::NOT_FOUND);

    provider.set_next(grace());
    let home = client.post_form("/auth/oidc/start", &[("next", "/")]).await;
    home.expect_ok_with("Hello, Grace Hopper");
    let team = client.post_form("/teams", &[("name", "Navy")]).await;
    team.expect_ok_with("Navy");

    // Signing in again (another browser) is the same user: the team is there.
    let other = app.client();
    other.post_form("/auth/oidc/start", &[("next", "/")]).await.expect_ok_with("Navy");

    // Signing out ends that session only.
    other.post_form("/logout", &[]).await;
    assert!(!is_signed_in(&other).await);
    assert!(is_signed_in(&client).await);
    app.finish().await;
}

async fn a_wrong_state_a_replayed_code_and_a_provider_error_each_end_without_a_session(backend: Backend) {
    let (app, provider) = spawn_with_provider(backend).await;
    provider.set_next(grace());

    // Wrong state: the callback's state is not the one this browser was given.
    let browser = manual_client(&app);
    let callback = callback_url_from_provider(&browser).await;
    let state = callback.split("state=").nth(1).expect("state").to_owned();
    let forged = callback.replace(&format!("state={state}"), "state=forged-state");
    let page = browser.http.get(&forged).send().await.expect("callback");
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    let body = page.text().await.expect("body");
    assert!(body.contains("Sign-in failed"), "{body}");
    assert!(!is_signed_in(&browser).await);
    // The browser's pending login ended with that attempt: even the genuine answer is
    // refused now, and the user starts again.
    let stale = browser.http.get(&callback).send().await.expect("callback");
    assert_eq!(stale.status(), StatusCode::BAD_REQUEST);
    assert!(!is_signed_in(&browser).await);
    // A genuine callback works once, and not twice (the state is single-use).
    let callback = callback_url_from_provider(&browser).await;
    let ok = browser.http.get(&callback).send().await.expect("callback");
    assert!(ok.status().is_redirection());
    assert!(is_signed_in(&browser).await);
    let again = manual_client(&app);
    let replayed_state = again.http.get(&callback).send().await.expect("callback");
    assert_eq!(replayed_state.status(), StatusCode::BAD_REQUEST);
    assert!(!is_signed_in(&again).await);

    // Replayed code: a fresh login, but answered with a code the provider already redeemed.
    let used_code = provider.last_code();
    let thief = manual_client(&app);
    let fresh = callback_url_from_provider(&thief).await;
    let fresh_code = fresh.split("code=").nth(1).and_then(|s| s.split('&').next()).expect("code").to_owned();
    let replay = fresh.replace(&format!("code={fresh_code}"), &format!("code={used_code}"));
    let page = thief.http.get(&replay).send().await.expect("callback");
    assert_eq!(page.status(), StatusCode::BAD_GATEWAY);
    let body = page.text().await.expect("body");
    assert!(body.contains("did not accept the sign-in") && body.contains("invalid_grant"), "{body}");
    assert!(!is_signed_in(&thief).await);

    // The provider reports an error (the user declined).
    provider.set_next(NextLogin::Error("access_denied".into()));
    let declined = manual_client(&app);
    let callback = callback_url_from_provider(&declined).await;
    let page = declined.http.get(&callback).send().await.expect("callback");
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    let body = page.text().await.expect("body");
    assert!(body.contains("Test SSO said you declined to sign in"), "{body}");
    assert!(!is_signed_in(&declined).await);
    app.finish().await;
}
