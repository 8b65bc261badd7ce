//! Storage: the sqlx pool (SQLite by default, PostgreSQL in production), migrations for
//! both, and the queries of each aggregate (users and sessions, teams, forum, meetings).
//!
//! One code path serves both backends through sqlx's `Any` driver: every query uses `$N`
//! placeholders (which SQLite accepts too), times are Unix milliseconds in `BIGINT`
//! columns, and ids come back with `RETURNING`.

mod admins;
mod forum;
mod meetings;
mod reads;
mod recordings;
mod schedule;
mod search;
mod teams;
mod users;

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

pub use admins::Who;
pub use forum::{Message, Topic, TopicFlag, TopicKind, TopicSummary};
pub use meetings::{AccessNote, Attendance, Meeting, MeetingAdmission, MeetingSummary};
pub use recordings::{FileKind, NewFile, Recording, RecordingFile, RecordingState};
pub use schedule::{Plan, Scheduled};
pub use search::{Marks, MessageHit, SEARCH_TIME_LIMIT, SEARCHES_AT_ONCE, SearchHits, TopicHit, query_words};
pub use teams::{Member, Role, Team, TeamOfUser};
pub use users::{OAuthLogin, User};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// A storage failure. Callers log it and show a plain error page.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database refused or failed a query.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration could not be applied.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database was written by a newer Floo: nothing is migrated.
    #[error(
        "this database was written by a newer Floo (schema version {theirs}; this Floo knows up to {ours}): \
         run that version or a later one, or restore a backup made by this version"
    )]
    NewerSchema { theirs: i64, ours: i64 },
    /// The URL names no backend Floo supports.
    #[error("unsupported database URL (expected sqlite:// or postgres://): {0}")]
    UnsupportedUrl(String),
    /// As many searches as a node runs at once are running, and this one's turn did not
    /// come soon enough.
    #[error("too many searches at once")]
    SearchBusy,
    /// A search ran past its time and was stopped.
    #[error("the search took too long and was stopped")]
    SearchTooLong,
}

impl Error {
    /// Whether the database could not be reached (down, restarting, out of connections),
    /// rather than refusing the query: worth trying again in a moment.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Database(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed) => true,
            // PostgreSQL's classes 08 (connection exception) and 57P (shutting down, not
            // accepting connections yet).
            Error::Database(sqlx::Error::Database(db)) => {
                db.code().is_some_and(|code| code.starts_with("08") || code.starts_with("57P"))
            }
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which database the pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The shared handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Searches' own connections (see [`search`]).
    searcher: search::Searcher,
    search_time_limit: Duration,
}

/// The latest schema version (migration) this Floo knows, for PostgreSQL or SQLite.
pub fn latest_schema_version(postgres: bool) -> i64 {
    let migrations = if postgres { &POSTGRES_MIGRATIONS } else { &SQLITE_MIGRATIONS };
    migrations.iter().map(|m| m.version).max().unwrap_or(0)
}

impl Store {
    /// Connects to `url` (creating a SQLite file if needed) and applies pending migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(Error::UnsupportedUrl(url.to_owned()));
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            // A page waits this long for the database before it says it cannot reach it.
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the single writer; the busy timeout
                        // makes concurrent writers wait instead of failing at once.
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        // A database from a newer Floo is refused before anything is touched (sqlx would
        // refuse too, after looking, with a message about a missing migration).
        let ours = latest_schema_version(backend == Backend::Postgres);
        let applied: Option<(Option<i64>,)> =
            sqlx::query_as("SELECT MAX(version) FROM _sqlx_migrations").fetch_optional(&pool).await.unwrap_or(None); // no such table yet: a new database
        if let Some((Some(theirs),)) = applied
            && theirs > ours
        {
            return Err(Error::NewerSchema { theirs, ours });
        }
        // Each migration runs in a transaction of its own (sqlx's default, on both
        // backends): one that fails leaves the database as the previous one left it.
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        // After the migrations: on SQLite the searches' read-only connections need the file.
        let searcher = search::Searcher::open(url, backend).await?;
        Ok(Store { pool, backend, searcher, search_time_limit: SEARCH_TIME_LIMIT })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers a trivial query (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The secret shared by every node on this database for media admission tokens: the
    /// first node to ask keeps `candidate`, the others get what it kept.
    pub async fn media_secret(&self, candidate: &str) -> Result<String> {
        sqlx::query("INSERT INTO media_secret (id, secret) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
            .bind(candidate)
            .execute(&self.pool)
            .await?;
        let (secret,): (String,) =
            sqlx::query_as("SELECT secret FROM media_secret WHERE id = 1").fetch_one(&self.pool).await?;
        Ok(secret)
    }

    /// Connections of the pool: (open, idle).
    pub fn pool_usage(&self) -> (i64, i64) {
        (i64::from(self.pool.size()), self.pool.num_idle() as i64)
    }

    /// Closes the pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.searcher.close().await;
        self.pool.close().await;
    }
}

/// Whether `err` is the violation of the named unique constraint.
fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}
