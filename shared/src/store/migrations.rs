//! Bringing the schema up to date, and saying what that did. sqlx applies
//! the migrations; this module names the ones about to run before it
//! starts, since one may take a while on a large database (on SQLite, 0003
//! fills a column in for every stored message), and reports what ran.

use std::time::{Duration, Instant};

use sqlx::migrate::Migrator;
use sqlx::AnyPool;

use super::StoreError;

/// One migration of the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: i64,
    pub description: String,
}

/// What bringing the schema up to date did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The migrations applied now, in order; empty when the schema was
    /// current. On PostgreSQL, processes starting together take turns
    /// under sqlx's lock, and each may list what the first one applied.
    pub applied: Vec<Migration>,
    /// The newest migration this binary knows (a newer schema, left by a
    /// newer binary, is accepted: migrations are additive).
    pub version: i64,
    pub took: Duration,
}

impl std::fmt::Display for Migration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04} {}", self.version, self.description)
    }
}

pub(super) async fn apply(pool: &AnyPool, migrator: &Migrator) -> Result<Migrated, StoreError> {
    let started = Instant::now();
    let done = applied_versions(pool).await?;
    let pending: Vec<Migration> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !done.contains(&m.version))
        .map(|m| Migration { version: m.version, description: m.description.to_string() })
        .collect();
    for migration in &pending {
        tracing::info!(%migration, "applying migration");
    }
    migrator.run(pool).await?;
    let version = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    let migrated = Migrated { applied: pending, version, took: started.elapsed() };
    if !migrated.applied.is_empty() {
        tracing::info!(count = migrated.applied.len(), version, took = ?migrated.took, "migrations applied");
    }
    Ok(migrated)
}

/// The versions already applied. A new database has no bookkeeping table
/// yet (sqlx creates it), which the query's database error means here; a
/// lost connection is an error of its own.
async fn applied_versions(pool: &AnyPool) -> Result<Vec<i64>, StoreError> {
    match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(pool).await {
        Ok(versions) => Ok(versions),
        Err(sqlx::Error::Database(_)) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}
