//! PostgreSQL specifics: a pool sized for concurrent workers and readers, and
//! migrations that take sqlx's advisory lock so that several processes
//! starting at once apply them exactly once.

use sqlx::AnyPool;

use super::{pool_options, Backend, Store, StoreError};

/// A binary older than the schema (a rollback, or an old pod during a
/// rollout) still starts: migrations are additive, so it ignores the newer
/// ones it does not know.
fn migrator() -> &'static sqlx::migrate::Migrator {
    static MIGRATOR: std::sync::OnceLock<sqlx::migrate::Migrator> = std::sync::OnceLock::new();
    MIGRATOR.get_or_init(|| {
        let mut migrator = sqlx::migrate!("./migrations/postgres");
        migrator.set_ignore_missing(true);
        migrator
    })
}

pub(super) async fn open(url: &str) -> Result<Store, StoreError> {
    let pool = pool_options(16).connect(url).await?;
    migrate(&pool).await?;
    Ok(Store { writer: pool.clone(), reader: pool, backend: Backend::Postgres })
}

pub(super) async fn migrate(pool: &AnyPool) -> Result<(), StoreError> {
    migrator().run(pool).await?;
    Ok(())
}
