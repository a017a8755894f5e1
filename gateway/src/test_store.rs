//! A store of its own for a unit test: a SQLite file in a directory that
//! goes with the returned guard.

use shared::store::Store;

pub async fn sqlite_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::connect(&format!("sqlite://{}/t.db", dir.path().display())).await.expect("store");
    (dir, store)
}
