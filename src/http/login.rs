//! Signing in and out: the sign-in page, the dev login, and the OAuth code flow
//! (start → provider → callback).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};

use maud::{Markup, html};
use serde::Deserialize;

use super::views::{self, Chrome, csrf_field, field_error};
use super::{AppState, Error};
use crate::auth::session::{self, safe_return_to};
use crate::auth::{MaybeViewer, cookie, set_cookie};
use crate::clock::now_ms;
use crate::store::OAuthLogin;

/// Binds a login to the browser that started it, beside the server-side `state`.
const LOGIN_COOKIE: &str = "floo_login";
/// How long a started login may take at the provider.
const LOGIN_TTL_MS: i64 = 10 * 60 * 1000;
const MAX_NAME: usize = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page))
        .route("/login/dev", post(dev_login))
        .route("/auth/{provider}/start", post(start_login))
        .route("/auth/{provider}/callback", get(callback))
        .route("/logout", post(logout))
}

#[derive(Deserialize)]
struct Next {
    next: Option<String>,
}

async fn login_page(State(state): State<AppState>, viewer: MaybeViewer, Query(q): Query<Next>) -> Response {
    let next = safe_return_to(q.next.as_deref().unwrap_or("/"));
    if viewer.user.is_some() {
        return Redirect::to(&next).into_response();
    }
    login_view(&state, &viewer, &next, None, "").into_response()
}

fn login_view(state: &AppState, viewer: &MaybeViewer, next: &str, name_error: Option<&str>, name: &str) -> Markup {
    let chrome = Chrome { user: None, csrf: &viewer.csrf.0 };
    views::page(
        chrome,
        "Sign in",
        html! {
            section.card.narrow {
                h1 { "Sign in to Floo" }
                @for provider in &state.providers {
                    form method="post" action=(format!("/auth/{}/start", provider.key)) hx-boost="false" {
                        (csrf_field(chrome.csrf))
                        input type="hidden" name="next" value=(next);
                        button.primary.wide type="submit" { "Sign in with " (provider.label) }
                    }
                }
                @if state.dev_login {
                    div.dev-login {
                        h2 { "Development login" }
                        p.muted {
                            "This server has no sign-in provider configured, so anyone can sign in under any name. "
                            "Use it on your own machine only; configure Google or OpenID Connect for real use."
                        }
                        form method="post" action="/login/dev" {
                            (csrf_field(chrome.csrf))
                            input type="hidden" name="next" value=(next);
                            label for="name" { "Your name" }
                            input #name type="text" name="name" value=(name) maxlength=(MAX_NAME) required autofocus
                                autocomplete="name" placeholder="e.g. Ada Lovelace";
                            (field_error(name_error))
                            button.primary type="submit" { "Sign in (dev)" }
                        }
                    }
                }
                @if state.providers.is_empty() && !state.dev_login {
                    p.field-error {
                        "No sign-in method is configured. The administrator needs to set up Google or OpenID Connect "
                        "(see the README)."
                    }
                }
            }
        },
    )
}

#[derive(Deserialize)]
struct DevLoginForm {
    name: String,
    next: Option<String>,
}

async fn dev_login(
    State(state): State<AppState>,
    viewer: MaybeViewer,
    Form(form): Form<DevLoginForm>,
) -> Result<Response, Error> {
    if !state.dev_login {
        return Err(Error::NotFound);
    }
    let next = safe_return_to(form.next.as_deref().unwrap_or("/"));
    let name = match crate::auth::names::clean(&form.name, MAX_NAME) {
        Ok(name) => name,
        Err(problem) => {
            let page = login_view(&state, &viewer, &next, Some(&problem.to_string()), form.name.trim());
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
        }
    };
    // The same name signs in as the same dev user.
    let subject = name.to_lowercase();
    let user = state.store.upsert_user("dev", &subject, &name, None, None, now_ms()).await?;
    signed_in(&state, user.id, &next).await
}

/// Creates the session and sends the browser on.
async fn signed_in(state: &AppState, user_id: i64, next: &str) -> Result<Response, Error> {
    let cookie = session::start(&state.store, user_id, state.session_hours, state.secure_cookies).await?;
    let mut response = Redirect::to(next).into_response();
    response.headers_mut().append(header::SET_COOKIE, header_value(&cookie)?);
    Ok(response)
}

fn header_value(s: &str) -> Result<HeaderValue, Error> {
    HeaderValue::from_str(s).map_err(|_| Error::BadRequest("invalid header value".into()))
}

fn redirect_uri(state: &AppState, provider: &str) -> String {
    format!("{}/auth/{provider}/callback", state.public_url)
}

#[derive(Deserialize)]
struct StartForm {
    next: Option<String>,
}

async fn start_login(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Form(form): Form<StartForm>,
) -> Result<Response, Error> {
    let provider = state.providers.iter().find(|p| p.key == key).ok_or(Error::NotFound)?;
    let started = provider.start(&redirect_uri(&state, &provider.key))?;
    let login = OAuthLogin {
        provider: provider.key.clone(),
        pkce_verifier: started.pkce_verifier,
        return_to: safe_return_to(form.next.as_deref().unwrap_or("/")),
        created_at: now_ms(),
    };
    state.store.insert_oauth_login(&started.state, &login).await?;
    let mut response = Redirect::to(&started.authorize_url).into_response();
    let cookie = set_cookie(LOGIN_COOKIE, &started.state, Some(600), "Lax", state.secure_cookies);
    response.headers_mut().append(header::SET_COOKIE, header_value(&cookie)?);
    Ok(response)
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, Error> {
    let provider = state.providers.iter().find(|p| p.key == key).ok_or(Error::NotFound)?;
    let clear_cookie = set_cookie(LOGIN_COOKIE, "", Some(0), "Lax", state.secure_cookies);
    let result = finish_login(&state, provider, &headers, q).await;
    let mut response = match result {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    response.headers_mut().append(header::SET_COOKIE, header_value(&clear_cookie)?);
    Ok(response)
}

async fn finish_login(
    state: &AppState,
    provider: &crate::auth::Provider,
    headers: &HeaderMap,
    q: CallbackQuery,
) -> Result<Response, Error> {
    if let Some(error) = q.error {
        let detail = q.error_description.map(|d| format!(": {d}")).unwrap_or_default();
        let what = if error == "access_denied" { "you declined to sign in" } else { "the provider reported an error" };
        return Err(Error::SignIn(format!("{} said {what} ({error}{detail}).", provider.label)));
    }
    let (Some(code), Some(login_state)) = (q.code, q.state) else {
        return Err(Error::SignIn("the provider's answer was incomplete. Please try again.".into()));
    };
    // The state must be the one this browser was given (no login CSRF) and one the
    // server still holds (single use, not expired).
    let bound = cookie(headers, LOGIN_COOKIE, state.secure_cookies)
        .is_some_and(|c| crate::auth::constant_time_eq(c, &login_state));
    let login = state.store.take_oauth_login(&login_state).await?;
    let login = match login {
        Some(login) if bound && login.provider == provider.key && now_ms() - login.created_at <= LOGIN_TTL_MS => login,
        _ => {
            return Err(Error::SignIn(
                "this sign-in link is not valid any more (it was used already, expired, or was started in another \
                 browser). Please sign in again."
                    .into(),
            ));
        }
    };
    let identity =
        provider.finish(&state.http_client, &redirect_uri(state, &provider.key), &code, &login.pkce_verifier).await?;
    let user = state
        .store
        .upsert_user(
            &provider.identity,
            &identity.subject,
            &identity.display_name,
            identity.email.as_deref(),
            identity.avatar_url.as_deref(),
            now_ms(),
        )
        .await?;
    tracing::info!(user_id = user.id, provider = %provider.key, "signed in");
    if let Some(email) = identity.email.as_ref().filter(|_| identity.email_verified)
        && state.admin_emails.contains(&email.to_lowercase())
        && state.store.grant_admin(user.id, now_ms()).await?
    {
        tracing::info!(user_id = user.id, "made an instance admin (--admin-email)");
    }
    signed_in(state, user.id, &login.return_to).await
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, Error> {
    let clear = session::end(&state.store, &headers, state.secure_cookies).await?;
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(header::SET_COOKIE, header_value(&clear)?);
    Ok(response)
}
