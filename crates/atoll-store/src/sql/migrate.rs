//! Our own small migrator.
//!
//! Not `sqlx::migrate!`: its MySQL path serialises servers with `GET_LOCK`,
//! which Galera does not share between nodes. Instead every applied version
//! is a row in `schema_version`; a server applies what is missing and then
//! records it. When two servers migrate at once both may run a migration, so
//! on MySQL (where DDL commits implicitly and cannot be rolled back) the
//! migration files are written to be idempotent (`IF NOT EXISTS`), and the
//! loser's duplicate `schema_version` row is a unique violation we ignore.
//! On SQLite a migration and its version row commit together; SQLite has no
//! `ADD COLUMN IF NOT EXISTS`, so the migrator skips an `ALTER TABLE t ADD
//! COLUMN c` whose column exists, which keeps a re-run harmless there too.

use atoll_core::time::now_ms;
use sqlx::{AnyPool, Row};

use super::Backend;
use crate::{Result, StoreError};

struct Migration {
    version: i64,
    sql: &'static str,
}

const SQLITE: &[Migration] = &[
    Migration { version: 1, sql: include_str!("../../migrations/sqlite/0001_init.sql") },
    Migration { version: 2, sql: include_str!("../../migrations/sqlite/0002_clusters.sql") },
    Migration { version: 3, sql: include_str!("../../migrations/sqlite/0003_packages.sql") },
    Migration { version: 4, sql: include_str!("../../migrations/sqlite/0004_routing.sql") },
    Migration { version: 5, sql: include_str!("../../migrations/sqlite/0005_host_summary.sql") },
    Migration { version: 6, sql: include_str!("../../migrations/sqlite/0006_platform.sql") },
    Migration { version: 7, sql: include_str!("../../migrations/sqlite/0007_alerts.sql") },
    Migration { version: 8, sql: include_str!("../../migrations/sqlite/0008_task_locks.sql") },
    Migration { version: 9, sql: include_str!("../../migrations/sqlite/0009_token_expiry.sql") },
    Migration { version: 10, sql: include_str!("../../migrations/sqlite/0010_regions.sql") },
];

const MYSQL: &[Migration] = &[
    Migration { version: 1, sql: include_str!("../../migrations/mysql/0001_init.sql") },
    Migration { version: 2, sql: include_str!("../../migrations/mysql/0002_clusters.sql") },
    Migration { version: 3, sql: include_str!("../../migrations/mysql/0003_packages.sql") },
    Migration { version: 4, sql: include_str!("../../migrations/mysql/0004_routing.sql") },
    Migration { version: 5, sql: include_str!("../../migrations/mysql/0005_host_summary.sql") },
    Migration { version: 6, sql: include_str!("../../migrations/mysql/0006_platform.sql") },
    Migration { version: 7, sql: include_str!("../../migrations/mysql/0007_alerts.sql") },
    Migration { version: 8, sql: include_str!("../../migrations/mysql/0008_task_locks.sql") },
    Migration { version: 9, sql: include_str!("../../migrations/mysql/0009_token_expiry.sql") },
    Migration { version: 10, sql: include_str!("../../migrations/mysql/0010_regions.sql") },
];

/// Brings the schema up to date; a no-op when it already is.
pub(super) async fn run(pool: &AnyPool, backend: Backend) -> Result<()> {
    let migrations = match backend {
        Backend::Sqlite => SQLITE,
        Backend::MySql => MYSQL,
    };
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY, applied_at_ms BIGINT NOT NULL)")
        .execute(pool)
        .await
        .map_err(|source| StoreError::Migration { version: 0, source })?;
    for m in migrations {
        if !is_applied(pool, m.version).await? {
            apply(pool, backend, m).await?;
            tracing::info!(version = m.version, "metadata store migrated");
        }
    }
    Ok(())
}

async fn is_applied(pool: &AnyPool, version: i64) -> Result<bool> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM schema_version WHERE version = ?").bind(version).fetch_one(pool).await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}

async fn apply(pool: &AnyPool, backend: Backend, m: &Migration) -> Result<()> {
    let failed = |source| StoreError::Migration { version: m.version, source };
    let mut tx = match backend {
        // Takes the write lock first so a second process waits and then sees
        // the version row instead of running the migration again.
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?,
        Backend::MySql => pool.begin().await.map_err(failed)?,
    };
    let done = sqlx::query("SELECT COUNT(*) AS n FROM schema_version WHERE version = ?")
        .bind(m.version)
        .fetch_one(&mut *tx)
        .await
        .and_then(|row| row.try_get::<i64, _>("n"))
        .map_err(failed)?;
    if done > 0 {
        return Ok(());
    }
    for statement in statements(m.sql) {
        if backend == Backend::Sqlite
            && let Some((table, column)) = added_column(statement)
        {
            let present = sqlx::query("SELECT COUNT(*) AS n FROM pragma_table_info(?) WHERE name = ?")
                .bind(table)
                .bind(column)
                .fetch_one(&mut *tx)
                .await
                .and_then(|row| row.try_get::<i64, _>("n"))
                .map_err(failed)?;
            if present > 0 {
                continue;
            }
        }
        sqlx::query(statement).execute(&mut *tx).await.map_err(failed)?;
    }
    let recorded = sqlx::query("INSERT INTO schema_version (version, applied_at_ms) VALUES (?, ?)")
        .bind(m.version)
        .bind(now_ms())
        .execute(&mut *tx)
        .await;
    match recorded {
        Ok(_) => tx.commit().await.map_err(failed),
        // Another server recorded it while we ran the (idempotent) DDL.
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => Ok(()),
        Err(e) => Err(failed(e)),
    }
}

/// Table and column of a single-column `ALTER TABLE t ADD COLUMN c ...`.
fn added_column(statement: &str) -> Option<(&str, &str)> {
    let mut words = statement.split_whitespace();
    let head: Vec<&str> = words.by_ref().take(2).collect();
    if !head.iter().map(|w| w.to_ascii_uppercase()).eq(["ALTER", "TABLE"]) {
        return None;
    }
    let table = words.next()?;
    let verb: Vec<&str> = words.by_ref().take(2).collect();
    if !verb.iter().map(|w| w.to_ascii_uppercase()).eq(["ADD", "COLUMN"]) {
        return None;
    }
    Some((table, words.next()?))
}

/// Splits a migration file into statements: a statement ends with `;` at
/// the end of a line. Comment-only pieces are dropped.
fn statements(sql: &'static str) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in sql.split_inclusive('\n') {
        offset += line.len();
        if line.trim_end().ends_with(';') {
            push_statement(&mut out, &sql[start..offset]);
            start = offset;
        }
    }
    push_statement(&mut out, &sql[start..]);
    out
}

/// Keeps a piece unless it holds only comments, dropping its leading
/// comment lines. Comments inside a statement must not end with `;`.
fn push_statement(out: &mut Vec<&'static str>, piece: &'static str) {
    let mut rest = piece;
    loop {
        let trimmed = rest.trim_start();
        if !trimmed.starts_with("--") {
            rest = trimmed;
            break;
        }
        rest = trimmed.split_once('\n').map_or("", |(_, after)| after);
    }
    let statement = rest.trim_end().trim_end_matches(';').trim_end();
    if !statement.is_empty() {
        out.push(statement);
    }
}

#[cfg(test)]
mod tests {
    use super::{added_column, statements};

    #[test]
    fn recognises_added_columns() {
        assert_eq!(added_column("ALTER TABLE hosts ADD COLUMN cpu_cores BIGINT"), Some(("hosts", "cpu_cores")));
        assert_eq!(added_column("alter table hosts\n    add column zone TEXT"), Some(("hosts", "zone")));
        assert_eq!(added_column("ALTER TABLE hosts DROP COLUMN zone"), None);
        assert_eq!(added_column("CREATE TABLE a (x TEXT)"), None);
    }

    #[test]
    fn splits_on_semicolons_at_line_ends() {
        let sql = "-- header; with a semicolon\nCREATE TABLE a (\n  x TEXT -- a; b\n);\n\nCREATE INDEX i ON a (x);\n-- trailing\n";
        let got = statements(sql);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].contains("CREATE TABLE a") && got[0].ends_with(')'));
        assert_eq!(got[1], "CREATE INDEX i ON a (x)");
    }

    /// Table name and column names of every CREATE TABLE, in order.
    fn shape(sql: &'static str) -> Vec<(String, Vec<String>)> {
        let mut tables: Vec<(String, Vec<String>)> = statements(sql)
            .iter()
            .filter_map(|s| s.strip_prefix("CREATE TABLE IF NOT EXISTS "))
            .map(|s| {
                let name = s.split_whitespace().next().unwrap_or_default().to_owned();
                let columns = s
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_whitespace().next())
                    .filter(|w| !matches!(*w, "UNIQUE" | "KEY" | "CONSTRAINT" | "PRIMARY" | ")" | ");"))
                    .filter(|w| !w.starts_with(')'))
                    .map(str::to_owned)
                    .collect();
                (name, columns)
            })
            .collect();
        tables.sort();
        tables
    }

    /// `table.column` of every column an `ALTER TABLE ... ADD COLUMN` adds
    /// (SQLite needs one statement per column, MariaDB takes a list).
    fn added_columns(sql: &'static str) -> Vec<String> {
        let mut added: Vec<String> = statements(sql)
            .iter()
            .filter_map(|s| s.strip_prefix("ALTER TABLE "))
            .flat_map(|s| {
                let table = s.split_whitespace().next().unwrap_or_default();
                s.split("ADD COLUMN ").skip(1).map(move |c| {
                    let column = c.trim_start_matches("IF NOT EXISTS ").split_whitespace().next().unwrap_or_default();
                    format!("{table}.{column}")
                })
            })
            .collect();
        added.sort();
        added
    }

    #[test]
    fn both_schemas_have_the_same_tables_and_columns() {
        assert_eq!(super::SQLITE.len(), super::MYSQL.len());
        let sqlite = shape(super::SQLITE[0].sql);
        assert!(sqlite.len() >= 9, "{sqlite:?}");
        for (a, b) in super::SQLITE.iter().zip(super::MYSQL) {
            assert_eq!(a.version, b.version);
            assert_eq!(shape(a.sql), shape(b.sql), "migration {}", a.version);
            assert_eq!(added_columns(a.sql), added_columns(b.sql), "migration {}", a.version);
        }
    }

    #[test]
    fn every_table_is_copied_or_left_behind_on_purpose() {
        let copy = super::super::copy::TABLES.iter().chain(super::super::copy::LEFT_BEHIND);
        let mut known: Vec<&str> = copy.copied().collect();
        known.sort();
        let mut tables: Vec<String> = super::SQLITE.iter().flat_map(|m| shape(m.sql)).map(|(name, _)| name).collect();
        tables.push("schema_version".into());
        tables.sort();
        assert_eq!(known, tables, "a new table must be listed in sql/copy.rs");
    }
}
