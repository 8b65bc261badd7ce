//! A small OpenID Connect provider on loopback, standing in for Google: discovery,
//! authorize (answers at once, as if the user consented), token (checks client secret,
//! redirect URI, PKCE, and that each code is used once) and userinfo.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

pub const CLIENT_ID: &str = "floo-test-client";
pub const CLIENT_SECRET: &str = "floo-test-secret";

/// What the next authorization answers.
#[derive(Clone)]
pub enum NextLogin {
    /// The user consents and is this person.
    User { subject: String, name: String, email: String },
    /// The provider answers with this OAuth error.
    Error(String),
}

struct Grant {
    challenge: String,
    redirect_uri: String,
    subject: String,
    name: String,
    email: String,
    used: bool,
}

#[derive(Default)]
struct Inner {
    next: Option<NextLogin>,
    grants: HashMap<String, Grant>,
    tokens: HashMap<String, (String, String, String)>,
    counter: u64,
    /// Every code issued, so a test can replay one.
    pub issued_codes: Vec<String>,
}

#[derive(Clone, Default)]
pub struct Provider {
    inner: Arc<Mutex<Inner>>,
    pub issuer: String,
}

impl Provider {
    /// Starts the provider on a free loopback port.
    pub async fn start() -> Provider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind provider");
        let issuer = format!("http://{}", listener.local_addr().expect("addr"));
        let provider = Provider { inner: Arc::default(), issuer };
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .with_state(provider.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        provider
    }

    pub fn set_next(&self, next: NextLogin) {
        self.inner.lock().expect("lock").next = Some(next);
    }

    pub fn last_code(&self) -> String {
        self.inner.lock().expect("lock").issued_codes.last().cloned().expect("a code was issued")
    }
}

async fn discovery(State(p): State<Provider>) -> Json<serde_json::Value> {
    Json(json!({
        "issuer": p.issuer,
        "authorization_endpoint": format!("{}/authorize", p.issuer),
        "token_endpoint": format!("{}/token", p.issuer),
        "userinfo_endpoint": format!("{}/userinfo", p.issuer),
    }))
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    response_type: String,
    client_id: String,
    redirect_uri: String,
    state: String,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    scope: Option<String>,
}

async fn authorize(State(p): State<Provider>, Query(q): Query<AuthorizeQuery>) -> Response {
    assert_eq!(q.response_type, "code");
    assert_eq!(q.client_id, CLIENT_ID);
    assert_eq!(q.code_challenge_method.as_deref(), Some("S256"), "Floo must use PKCE with S256");
    assert!(q.scope.as_deref().unwrap_or_default().contains("openid"));
    let mut inner = p.inner.lock().expect("lock");
    let sep = if q.redirect_uri.contains('?') { '&' } else { '?' };
    match inner.next.clone().expect("test set the next login") {
        NextLogin::Error(error) => Redirect::to(&format!(
            "{}{sep}error={error}&error_description=Test+refusal&state={}",
            q.redirect_uri, q.state
        ))
        .into_response(),
        NextLogin::User { subject, name, email } => {
            inner.counter += 1;
            let code = format!("code-{}", inner.counter);
            inner.grants.insert(
                code.clone(),
                Grant {
                    challenge: q.code_challenge.unwrap_or_default(),
                    redirect_uri: q.redirect_uri.clone(),
                    subject,
                    name,
                    email,
                    used: false,
                },
            );
            inner.issued_codes.push(code.clone());
            Redirect::to(&format!("{}{sep}code={code}&state={}", q.redirect_uri, q.state)).into_response()
        }
    }
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    code: String,
    redirect_uri: String,
    code_verifier: String,
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn oauth_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
}

async fn token(State(p): State<Provider>, headers: HeaderMap, Form(form): Form<TokenForm>) -> Response {
    // Client authentication: HTTP Basic (the oauth2 crate's default) or form fields.
    let basic = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let expected = format!("Basic {}", {
        let mut s = base64url(format!("{CLIENT_ID}:{CLIENT_SECRET}").as_bytes()).replace('-', "+").replace('_', "/");
        while !s.len().is_multiple_of(4) {
            s.push('=');
        }
        s
    });
    if basic != expected {
        return (StatusCode::UNAUTHORIZED, Json(json!({ "error": "invalid_client" }))).into_response();
    }
    if form.grant_type != "authorization_code" {
        return oauth_error("unsupported_grant_type");
    }
    let mut inner = p.inner.lock().expect("lock");
    let Some(grant) = inner.grants.get_mut(&form.code) else { return oauth_error("invalid_grant") };
    if grant.used {
        return oauth_error("invalid_grant");
    }
    grant.used = true;
    if grant.redirect_uri != form.redirect_uri {
        return oauth_error("invalid_grant");
    }
    if base64url(&Sha256::digest(form.code_verifier.as_bytes())) != grant.challenge {
        return oauth_error("invalid_grant");
    }
    let who = (grant.subject.clone(), grant.name.clone(), grant.email.clone());
    inner.counter += 1;
    let access = format!("access-{}", inner.counter);
    inner.tokens.insert(access.clone(), who);
    Json(json!({ "access_token": access, "token_type": "Bearer", "expires_in": 3600 })).into_response()
}

async fn userinfo(State(p): State<Provider>, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match p.inner.lock().expect("lock").tokens.get(token) {
        Some((sub, name, email)) => Json(json!({ "sub": sub, "name": name, "email": email })).into_response(),
        None => (StatusCode::UNAUTHORIZED, "bad token").into_response(),
    }
}
