//! Integration tests: the real Floo on port 0, driven over HTTP, on SQLite and PostgreSQL.

mod support;

mod abuse;
mod authorization;
mod backup;
mod browser;
mod foundation;
mod fuzz;
mod hardening;

mod impair;
mod large;
mod lipsync;
mod live;
mod media;
mod metrics;
mod moderation;
mod nodes;
mod oauth;
mod oidc_provider;
mod ops;
mod recording;
mod schedule;
mod search;
mod synthetic;
mod unread;
mod upgrade;
