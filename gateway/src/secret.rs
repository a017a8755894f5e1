//! The JWT secret. Cluster mode requires `JWT_SECRET`; standalone without
//! one creates a random secret once in the data directory (mode 0600) and
//! reuses it, so tokens survive restarts.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

const FILE_NAME: &str = "jwt-secret";

pub fn standalone_secret(configured: Option<&str>, data_dir: &str) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = configured.filter(|s| !s.is_empty()) {
        return Ok(secret.as_bytes().to_vec());
    }
    let path = Path::new(data_dir).join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(secret) if !secret.trim().is_empty() => return Ok(secret.trim().as_bytes().to_vec()),
        Ok(_) => anyhow::bail!("{} is empty; delete it or set JWT_SECRET", path.display()),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    }
    // Readable by this user only, as the database in it (`store::sqlite`).
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(data_dir)?;
    let secret: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
    match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())?;
            tracing::info!(path = %path.display(), "created a JWT secret for standalone mode");
            Ok(secret.into_bytes())
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(&path)?.trim().as_bytes().to_vec())
        }
        Err(e) => anyhow::bail!("cannot create {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().to_str().expect("utf-8 path");
        let first = standalone_secret(None, data).expect("created");
        assert_eq!(standalone_secret(None, data).expect("read"), first);
        let mode = std::fs::metadata(dir.path().join(FILE_NAME)).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(standalone_secret(Some("given"), data).expect("given"), b"given".to_vec());
    }
}
