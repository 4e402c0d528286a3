//! Opening an SQLite file that another process is still creating (two planes or two `migrate`
//! runs started together on a new file): while another connection writes the new file, SQLite
//! refuses to turn it to WAL at once, without waiting out the busy timeout. The store opens
//! again until it can.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

use std::str::FromStr;
use std::time::Duration;

use opentrusty_store::{ConnectOptions, Store};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{ConnectOptions as _, Connection as _, Executor as _};

#[tokio::test]
async fn a_store_opens_a_new_file_once_its_creator_has_written_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("new.db").display());
    let mut creator = SqliteConnectOptions::from_str(&url)
        .unwrap()
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Delete)
        .connect()
        .await
        .unwrap();
    creator
        .execute("BEGIN IMMEDIATE; CREATE TABLE created_first (x INTEGER)")
        .await
        .unwrap();

    let opening = {
        let url = url.clone();
        tokio::spawn(async move { Store::connect(&url, &ConnectOptions::default()).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !opening.is_finished(),
        "the store waits while the file is being written: {:?}",
        opening.await
    );
    creator.execute("COMMIT").await.unwrap();
    creator.close().await.unwrap();
    let store = tokio::time::timeout(Duration::from_secs(5), opening)
        .await
        .expect("the store opens once the creator committed")
        .unwrap()
        .expect("the store opens");
    store.migrate().await.unwrap();
}
