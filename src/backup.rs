//! `floo backup DIR` and `floo restore DIR`.
//!
//! A backup is a directory:
//! - `database/floo.db`: the SQLite database, copied while Floo runs by SQLite's own
//!   `VACUUM INTO` (one consistent snapshot, whatever is being written meanwhile); or
//!   `database/floo.pgdump`: PostgreSQL's `pg_dump --format=custom`, equally consistent;
//! - `data/…`: every other file of the data directory;
//! - `recordings/…`: the recordings (a file being written is copied as far as it goes, and
//!   plays to there; compositions under way, `*.part`, are left out: the restored Floo
//!   composes them again);
//! - `manifest.json`, written last: what made the backup, the schema version, and every
//!   file's size and SHA-256. A restore checks all of them before it writes anything, and
//!   writes only into an empty data directory (and an empty PostgreSQL database).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Connection as _;

use crate::config::SQLITE_FILE;

/// The manifest's file name, and its format's version.
pub const MANIFEST: &str = "manifest.json";
const FORMAT: u32 = 1;
const SQLITE_COPY: &str = "database/floo.db";
const POSTGRES_DUMP: &str = "database/floo.pgdump";

/// Where a Floo keeps its data: what `floo serve` is told.
#[derive(Debug, Clone)]
pub struct Location {
    pub data_dir: PathBuf,
    /// PostgreSQL; None for the SQLite file in the data directory.
    pub database_url: Option<String>,
    /// None for `recordings` in the data directory.
    pub recordings_dir: Option<PathBuf>,
}

impl Location {
    fn recordings(&self) -> PathBuf {
        self.recordings_dir.clone().unwrap_or_else(|| self.data_dir.join("recordings"))
    }

    fn sqlite_url(&self, mode: &str) -> String {
        format!("sqlite://{}?mode={mode}", self.data_dir.join(SQLITE_FILE).display())
    }
}

/// What a backup holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub floo_version: String,
    pub created_at_ms: i64,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// The latest migration applied to the database.
    pub schema_version: i64,
    pub files: Vec<FileEntry>,
}

/// One file of a backup, by its path in the backup (with `/`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// Why a backup or a restore could not be made. The text is for the operator.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} exists and is not empty: choose a new directory")]
    NotEmpty(PathBuf),
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("the database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(
        "pg_dump/pg_restore could not be run ({0}); install PostgreSQL's client programs \
         (Debian: postgresql-client), or run by hand: {1}"
    )]
    PostgresTool(String, String),
    #[error("{0} failed: {1}")]
    ToolFailed(&'static str, String),
    #[error("this is not a Floo backup (no readable {MANIFEST}): {0}")]
    NoManifest(String),
    #[error("the backup is damaged, nothing was restored: {0}")]
    Damaged(String),
    #[error(
        "the backup was made by a newer Floo (schema version {theirs}; this Floo knows up to \
         {ours}): restore it with that version or a later one"
    )]
    Newer { theirs: i64, ours: i64 },
    #[error("the backup holds a {theirs} database and this Floo is set up for {ours}: restore it into the same kind")]
    WrongKind { theirs: String, ours: String },
}

type Result<T> = std::result::Result<T, BackupError>;

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |error| BackupError::Io { path: path.to_owned(), error }
}

/// Makes a backup of the running (or stopped) Floo at `from` into `to`, which must not
/// exist or be empty. Reports progress through `progress` (a line now and then).
pub async fn backup(from: &Location, to: &Path, progress: &mut dyn FnMut(&str)) -> Result<Manifest> {
    require_empty(to)?;
    crate::files::private_dir(&to.join("database")).map_err(io_error(to))?;
    let started = Instant::now();
    let (database, schema_version) = match &from.database_url {
        None => {
            let mut db = connect(&from.sqlite_url("ro")).await?;
            let version = schema_version_of(&mut db).await?;
            let target = to.join(SQLITE_COPY);
            sqlx::query("VACUUM INTO $1").bind(target.display().to_string()).execute(&mut db).await?;
            crate::files::make_private(&target).map_err(io_error(&target))?;
            ("sqlite", version)
        }
        Some(url) => {
            let mut db = connect(url).await?;
            let version = schema_version_of(&mut db).await?;
            let target = to.join(POSTGRES_DUMP);
            let args = ["--format=custom", "--no-owner", "--file", &target.display().to_string(), url];
            run_tool("pg_dump", &args)?;
            crate::files::make_private(&target).map_err(io_error(&target))?;
            ("postgres", version)
        }
    };
    progress(&format!("database copied in {:.1} s", started.elapsed().as_secs_f64()));
    let mut files = Vec::new();
    let database_file = if database == "sqlite" { SQLITE_COPY } else { POSTGRES_DUMP };
    files.push(entry_of(to, database_file)?);

    // Everything else: the data directory's other files, then the recordings.
    let recordings = from.recordings();
    let mut plan = Vec::new();
    let skip_in_data = |p: &Path| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        p == recordings || name.starts_with(SQLITE_FILE)
    };
    list_files(&from.data_dir, &from.data_dir, "data", &skip_in_data, &mut plan)?;
    let no_parts = |p: &Path| p.extension().is_some_and(|e| e == "part");
    list_files(&recordings, &recordings, "recordings", &no_parts, &mut plan)?;
    let total: u64 = plan.iter().map(|(_, _, size)| size).sum();
    let (mut copied, mut said) = (0u64, Instant::now());
    for (i, (source, name, _)) in plan.iter().enumerate() {
        let target = to.join(name);
        if let Some(parent) = target.parent() {
            crate::files::private_dir(parent).map_err(io_error(parent))?;
        }
        let (size, sha256) = copy_hashing(source, &target)?;
        copied += size;
        files.push(FileEntry { path: name.clone(), size, sha256 });
        if said.elapsed() > Duration::from_secs(1) {
            said = Instant::now();
            progress(&format!("{}/{} files, {} of {}", i + 1, plan.len(), megabytes(copied), megabytes(total)));
        }
    }
    let manifest = Manifest {
        format: FORMAT,
        floo_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at_ms: crate::clock::now_ms(),
        database: database.to_owned(),
        schema_version,
        files,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Damaged(e.to_string()))?;
    let path = to.join(MANIFEST);
    crate::files::private_file(&path).map_err(io_error(&path))?;
    std::fs::write(&path, json).map_err(io_error(&path))?;
    progress(&format!(
        "backup complete: {} files, {} in {:.1} s",
        manifest.files.len(),
        megabytes(manifest.files.iter().map(|f| f.size).sum()),
        started.elapsed().as_secs_f64()
    ));
    Ok(manifest)
}

/// Restores the backup at `from` into `to`, whose data directory (and recordings
/// directory, and PostgreSQL database) must be empty. Checks every file first.
pub async fn restore(from: &Path, to: &Location, progress: &mut dyn FnMut(&str)) -> Result<Manifest> {
    let manifest = read_manifest(from)?;
    let ours = if to.database_url.is_some() { "postgres" } else { "sqlite" };
    if manifest.database != ours {
        return Err(BackupError::WrongKind { theirs: manifest.database.clone(), ours: ours.into() });
    }
    let known = crate::store::latest_schema_version(ours == "postgres");
    if manifest.schema_version > known {
        return Err(BackupError::Newer { theirs: manifest.schema_version, ours: known });
    }
    let started = Instant::now();
    verify(from, &manifest, progress)?;
    progress(&format!("every file checked in {:.1} s", started.elapsed().as_secs_f64()));
    require_empty(&to.data_dir)?;
    let recordings = to.recordings();
    require_empty(&recordings)?;
    if let Some(url) = &to.database_url {
        let mut db = connect(url).await?;
        let (tables,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()")
                .fetch_one(&mut db)
                .await?;
        if tables > 0 {
            return Err(BackupError::NotEmpty(PathBuf::from(format!("the PostgreSQL database ({tables} tables)"))));
        }
    }
    crate::files::private_dir(&to.data_dir).map_err(io_error(&to.data_dir))?;
    crate::files::private_dir(&recordings).map_err(io_error(&recordings))?;
    for file in &manifest.files {
        let source = from.join(&file.path);
        let target = if file.path == SQLITE_COPY {
            to.data_dir.join(SQLITE_FILE)
        } else if file.path == POSTGRES_DUMP {
            continue;
        } else if let Some(rest) = file.path.strip_prefix("recordings/") {
            recordings.join(rest)
        } else if let Some(rest) = file.path.strip_prefix("data/") {
            to.data_dir.join(rest)
        } else {
            continue;
        };
        if let Some(parent) = target.parent() {
            crate::files::private_dir(parent).map_err(io_error(parent))?;
        }
        copy_hashing(&source, &target)?;
    }
    if let Some(url) = &to.database_url {
        let dump = from.join(POSTGRES_DUMP).display().to_string();
        run_tool("pg_restore", &["--no-owner", "--exit-on-error", "--dbname", url, &dump])?;
    }
    progress(&format!("restored {} files in {:.1} s", manifest.files.len(), started.elapsed().as_secs_f64()));
    Ok(manifest)
}

/// Reads a backup's manifest.
pub fn read_manifest(from: &Path) -> Result<Manifest> {
    let path = from.join(MANIFEST);
    let bytes = std::fs::read(&path).map_err(|e| BackupError::NoManifest(format!("{}: {e}", path.display())))?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| BackupError::NoManifest(format!("{}: {e}", path.display())))?;
    if manifest.format != FORMAT {
        return Err(BackupError::NoManifest(format!("unknown manifest format {}", manifest.format)));
    }
    Ok(manifest)
}

/// Checks every file of the manifest: there, of its size, of its checksum.
fn verify(from: &Path, manifest: &Manifest, progress: &mut dyn FnMut(&str)) -> Result<()> {
    let mut said = Instant::now();
    for (i, file) in manifest.files.iter().enumerate() {
        if file.path.split('/').any(|part| part == ".." || part.is_empty()) {
            return Err(BackupError::Damaged(format!("{} is not a path inside the backup", file.path)));
        }
        let path = from.join(&file.path);
        let size = std::fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| BackupError::Damaged(format!("{}: {e}", file.path)))?;
        if size != file.size {
            return Err(BackupError::Damaged(format!("{} has {size} bytes, not {}", file.path, file.size)));
        }
        let (_, sha256) = hash_file(&path)?;
        if sha256 != file.sha256 {
            return Err(BackupError::Damaged(format!(
                "{} is not what was backed up (its checksum differs)",
                file.path
            )));
        }
        if said.elapsed() > Duration::from_secs(1) {
            said = Instant::now();
            progress(&format!("checked {}/{} files", i + 1, manifest.files.len()));
        }
    }
    Ok(())
}

async fn connect(url: &str) -> Result<sqlx::AnyConnection> {
    sqlx::any::install_default_drivers();
    Ok(sqlx::AnyConnection::connect(url).await?)
}

/// The latest migration a database has applied.
async fn schema_version_of(db: &mut sqlx::AnyConnection) -> Result<i64> {
    let (version,): (Option<i64>,) =
        sqlx::query_as("SELECT MAX(version) FROM _sqlx_migrations WHERE success").fetch_one(db).await?;
    Ok(version.unwrap_or(0))
}

fn require_empty(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(entries) => match entries.count() {
            0 => Ok(()),
            _ => Err(BackupError::NotEmpty(dir.to_owned())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(BackupError::Io { path: dir.to_owned(), error }),
    }
}

/// The files under `dir` (not `skip`ped), as (path, name in the backup under `prefix`, size).
fn list_files(
    root: &Path,
    dir: &Path,
    prefix: &str,
    skip: &dyn Fn(&Path) -> bool,
    out: &mut Vec<(PathBuf, String, u64)>,
) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(BackupError::Io { path: dir.to_owned(), error }),
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if skip(&path) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).map_err(io_error(&path))?;
        if meta.is_dir() {
            list_files(root, &path, prefix, skip, out)?;
        } else if meta.is_file() {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            let name: Vec<String> =
                relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            out.push((path.clone(), format!("{prefix}/{}", name.join("/")), meta.len()));
        }
    }
    Ok(())
}

/// Copies `from` to `to` (a file only Floo may read), hashing what it wrote.
fn copy_hashing(from: &Path, to: &Path) -> Result<(u64, String)> {
    let mut input = std::fs::File::open(from).map_err(io_error(from))?;
    crate::files::private_file(to).map_err(io_error(to))?;
    let mut output = std::fs::OpenOptions::new().write(true).truncate(true).open(to).map_err(io_error(to))?;
    let (mut hasher, mut size, mut buffer) = (Sha256::new(), 0u64, vec![0u8; 1 << 20]);
    loop {
        let n = input.read(&mut buffer).map_err(io_error(from))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        output.write_all(&buffer[..n]).map_err(io_error(to))?;
        size += n as u64;
    }
    output.sync_all().map_err(io_error(to))?;
    Ok((size, hex(&hasher.finalize())))
}

fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut input = std::fs::File::open(path).map_err(io_error(path))?;
    let (mut hasher, mut size, mut buffer) = (Sha256::new(), 0u64, vec![0u8; 1 << 20]);
    loop {
        let n = input.read(&mut buffer).map_err(io_error(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((size, hex(&hasher.finalize())))
}

fn entry_of(root: &Path, name: &str) -> Result<FileEntry> {
    let (size, sha256) = hash_file(&root.join(name))?;
    Ok(FileEntry { path: name.to_owned(), size, sha256 })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn run_tool(tool: &'static str, args: &[&str]) -> Result<()> {
    let by_hand = format!("{tool} {}", args.join(" "));
    let output = std::process::Command::new(tool)
        .args(args)
        .output()
        .map_err(|e| BackupError::PostgresTool(e.to_string(), by_hand.clone()))?;
    if !output.status.success() {
        return Err(BackupError::ToolFailed(tool, String::from_utf8_lossy(&output.stderr).trim().to_owned()));
    }
    Ok(())
}
