//! PostgreSQL specifics: a pool sized for concurrent workers and readers, and
//! migrations that take sqlx's advisory lock so that several processes
//! starting at once apply them exactly once.

use sqlx::AnyPool;

use super::{pool_options, Backend, Store, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub(super) async fn open(url: &str) -> Result<Store, StoreError> {
    let pool = pool_options(16).connect(url).await?;
    migrate(&pool).await?;
    Ok(Store { writer: pool.clone(), reader: pool, backend: Backend::Postgres })
}

pub(super) async fn migrate(pool: &AnyPool) -> Result<(), StoreError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}
