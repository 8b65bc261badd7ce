//! What Floo writes to disk is its own: the data directory (its SQLite file holds the key
//! that signs relay admission tokens) and the recordings are readable by Floo's user only.
//! Directories are made 0700 and files 0600, also when they were there before.

use std::fs::{OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and its parents) if needed, and makes it Floo's only.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, Permissions::from_mode(0o700))
}

/// Creates (or empties) `path` as a file only Floo may read, for a writer that opens it
/// by name afterwards (ffmpeg truncates an existing file and keeps its mode).
pub fn private_file(path: &Path) -> io::Result<()> {
    OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    std::fs::set_permissions(path, Permissions::from_mode(0o600))
}

/// Makes an existing file Floo's only (nothing happens if it is not there).
pub fn make_private(path: &Path) -> io::Result<()> {
    match std::fs::set_permissions(path, Permissions::from_mode(0o600)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn directories_and_files_are_made_private_even_if_they_were_not() {
        let root = std::env::temp_dir().join(format!("floo-files-{}", std::process::id()));
        let dir = root.join("a/b");
        private_dir(&dir).expect("dir");
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).expect("chmod");
        private_dir(&dir).expect("again");
        assert_eq!(mode(&dir), 0o700, "an existing directory is tightened");
        let file = dir.join("f");
        std::fs::write(&file, b"old").expect("write");
        std::fs::set_permissions(&file, Permissions::from_mode(0o644)).expect("chmod");
        private_file(&file).expect("file");
        assert_eq!((mode(&file), std::fs::read(&file).expect("read").len()), (0o600, 0));
        make_private(&dir.join("missing")).expect("a missing file is no error");
        let _ = std::fs::remove_dir_all(&root);
    }
}
