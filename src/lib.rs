//! Floo: a self-hosted platform for team meetings in one binary.
//!
//! `app` builds and runs the server from a `config`; `http` serves the pages, using
//! `auth` (who is asking), `store` (the database) and `markdown` (safe rendering).

pub mod app;
pub mod auth;
pub mod clock;
pub mod config;
pub mod http;
pub mod markdown;
pub mod store;

pub use app::App;
pub use config::Config;
