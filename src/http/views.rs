//! The shared page layout and the small pieces every page uses (forms, empty states,
//! times, paging). Everything HTML goes through maud, which escapes text.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::auth::csrf;
use crate::clock::format_utc;
use crate::store::{Role, Team, User};

/// Sent to htmx: swap error responses too (they carry a readable page) and never `eval`.
const HTMX_CONFIG: &str = r#"{"allowEval":false,"historyCacheSize":0,"responseHandling":[{"code":"204","swap":false},{"code":"[23]..","swap":true},{"code":"[45]..","swap":true,"error":true}]}"#;

/// Who is looking at a page, for its header and forms.
#[derive(Clone, Copy)]
pub struct Chrome<'a> {
    pub user: Option<&'a User>,
    pub csrf: &'a str,
}

/// A whole page in the shared layout.
pub fn page(chrome: Chrome<'_>, title: &str, content: Markup) -> Markup {
    let userbar = html! {
        @if let Some(user) = chrome.user {
            span.whoami title=(user.email.as_deref().unwrap_or("")) { (user.display_name) }
            form.inline method="post" action="/logout" {
                (csrf_field(chrome.csrf))
                button.link type="submit" { "Sign out" }
            }
        } @else {
            a href="/login" { "Sign in" }
        }
    };
    layout(chrome.csrf, userbar, title, content)
}

/// An error page: made without knowing who is looking, so its header names nobody (a
/// "Sign in" link would tell a signed-in user they had been signed out).
pub fn error_page(title: &str, content: Markup) -> Markup {
    layout("", html! {}, title, content)
}

fn layout(csrf: &str, userbar: Markup, title: &str, content: Markup) -> Markup {
    let hx_headers = serde_json::json!({ "X-CSRF-Token": csrf }).to_string();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=(HTMX_CONFIG);
                title { (title) " · Floo" }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/htmx.min.js" defer {}
                script src="/static/htmx-ext-sse.js" defer {}
                script src="/static/floo.js" defer {}
            }
            body hx-boost="true" hx-headers=(hx_headers) {
                header.topbar {
                    a.brand href="/" { span.logo { "◆" } " Floo" }
                    nav.userbar { (userbar) }
                }
                main.container { (content) }
            }
        }
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name=(csrf::FIELD) value=(token); }
}

/// The message shown under a field that was refused, if any.
pub fn field_error(error: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = error { p.field-error role="alert" { (e) } }
    }
}

/// What a list shows when it has nothing in it.
pub fn empty_state(title: &str, hint: Markup) -> Markup {
    html! {
        div.empty {
            p.empty-title { (title) }
            p.muted { (hint) }
        }
    }
}

/// A file size for people: megabytes with one decimal.
pub fn megabytes(bytes: i64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// A point in time, readable and machine-readable.
pub fn time(ms: i64) -> Markup {
    html! { time datetime=(ms) { (format_utc(ms)) } }
}

/// Markdown already made safe by [`crate::markdown::to_safe_html`].
pub fn rendered_markdown(safe_html: String) -> Markup {
    html! { div.prose { (PreEscaped(safe_html)) } }
}

/// Tabs of a team's pages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TeamTab {
    Meetings,
    Forum,
    Members,
    Invite,
    Settings,
}

/// A team's header: its name, the viewer's role and the tabs.
pub fn team_header(team: &Team, role: Role, active: TeamTab) -> Markup {
    let base = format!("/teams/{}", team.id);
    let tabs: Vec<(TeamTab, String, &str)> = [
        (TeamTab::Meetings, base.clone(), "Meetings"),
        (TeamTab::Forum, format!("{base}/forum"), "Forum"),
        (TeamTab::Members, format!("{base}/members"), "Members"),
        (TeamTab::Invite, format!("{base}/invite"), "Invite"),
    ]
    .into_iter()
    .chain(role.is_admin().then(|| (TeamTab::Settings, format!("{base}/settings"), "Settings")))
    .collect();
    html! {
        div.team-header {
            h1 { (team.name) }
            span.badge { (role) }
            form.team-search method="get" action=(format!("{base}/search")) role="search" {
                input type="search" name="q" placeholder="Search this team" aria-label="Search this team" maxlength="200";
            }
        }
        nav.tabs {
            @for (tab, href, label) in tabs {
                a.active[tab == active] href=(href) { (label) }
            }
        }
    }
}

/// Previous/next links for a paged list (`page` counts from 1).
pub fn pager(base: &str, page: i64, pages: i64, (previous, next): (&str, &str)) -> Markup {
    let join = if base.contains('?') { '&' } else { '?' };
    html! {
        @if pages > 1 {
            nav.pager aria-label="Pages" {
                @if page > 1 { a href=(format!("{base}{join}page={}", page - 1)) { "← " (previous) } }
                span.muted { "Page " (page) " of " (pages) }
                @if page < pages { a href=(format!("{base}{join}page={}", page + 1)) { (next) " →" } }
            }
        }
    }
}

/// "3 people" / "1 person".
pub fn people(n: usize) -> String {
    if n == 1 { "1 person".into() } else { format!("{n} people") }
}
