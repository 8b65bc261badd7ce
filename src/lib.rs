//! Floo: a self-hosted platform for team meetings in one binary.
//!
//! `app` builds and runs the server from a `config`; `http` serves the pages, using
//! `auth` (who is asking), `store` (the database), `bus` (live events, across nodes
//! through Redis) and `markdown` (safe rendering); `metrics` is what Prometheus scrapes.

pub mod admin;
pub mod app;
pub mod auth;
pub mod backup;
pub mod bus;
pub mod clock;
pub mod config;
pub mod files;
pub mod http;
pub mod markdown;
pub mod media;
pub mod metrics;
pub mod recording;
pub mod store;

pub use app::App;
pub use config::Config;
