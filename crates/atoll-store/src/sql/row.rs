//! Turning `Any` rows into records and back, and recognising unique
//! violations.
//!
//! Everything the database hands back is checked: a value another version
//! or a hand edit left behind becomes [`StoreError::Corrupt`] naming the
//! column, never a panic. Integers are always read as `i64`, because `Any`
//! reports SQLite integers as BIGINT but MySQL's SMALLINT/INT as narrower
//! kinds, and `i64` accepts all of them.

use std::fmt::Display;
use std::str::FromStr;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, StoreError};

pub(super) fn text(row: &AnyRow, col: &str) -> Result<String> {
    Ok(row.try_get::<String, _>(col)?)
}

pub(super) fn opt_text(row: &AnyRow, col: &str) -> Result<Option<String>> {
    Ok(row.try_get::<Option<String>, _>(col)?)
}

pub(super) fn int(row: &AnyRow, col: &str) -> Result<i64> {
    Ok(row.try_get::<i64, _>(col)?)
}

pub(super) fn opt_int(row: &AnyRow, col: &str) -> Result<Option<i64>> {
    Ok(row.try_get::<Option<i64>, _>(col)?)
}

/// A 0/1 flag column.
pub(super) fn flag(row: &AnyRow, col: &str) -> Result<bool> {
    Ok(int(row, col)? != 0)
}

/// A small non-negative counter (attempts and the like).
pub(super) fn count(row: &AnyRow, col: &'static str) -> Result<u32> {
    let v = int(row, col)?;
    u32::try_from(v).map_err(|_| StoreError::Corrupt { what: col, detail: format!("{v} is not a count") })
}

/// A column holding an enum's `as_str()` or another `FromStr` value.
pub(super) fn parsed<T>(row: &AnyRow, col: &'static str) -> Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    let s = text(row, col)?;
    s.parse().map_err(|e: T::Err| StoreError::Corrupt { what: col, detail: e.to_string() })
}

/// A JSON TEXT column.
pub(super) fn json<T: DeserializeOwned>(row: &AnyRow, col: &'static str) -> Result<T> {
    let s = text(row, col)?;
    from_json(col, &s)
}

/// A nullable JSON TEXT column.
pub(super) fn opt_json<T: DeserializeOwned>(row: &AnyRow, col: &'static str) -> Result<Option<T>> {
    opt_text(row, col)?.map(|s| from_json(col, &s)).transpose()
}

fn from_json<T: DeserializeOwned>(col: &'static str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt { what: col, detail: e.to_string() })
}

/// Serialises a value for a JSON TEXT column. Our record types always
/// serialise; a failure would mean a non-string map key or similar, reported
/// as unstorable rather than panicking.
pub(super) fn to_json<T: Serialize + ?Sized>(col: &'static str, v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt { what: col, detail: e.to_string() })
}

/// Converts an unsigned count for binding; our counters fit in `i64`.
pub(super) fn bind_u32(v: u32) -> i64 {
    i64::from(v)
}

/// `0` means "the default page".
pub(super) fn page(limit: u32) -> i64 {
    if limit == 0 { 100 } else { i64::from(limit) }
}

/// Whether `e` broke a UNIQUE or PRIMARY KEY rule (SQLite or MySQL).
pub(super) fn is_unique_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Db(sqlx::Error::Database(d)) if d.is_unique_violation())
}

/// Turns a unique violation into `Conflict(message)`; other errors pass.
///
/// Used as the fallback when a concurrent writer slipped in between our
/// check and our insert; the check itself gives the precise message.
pub(super) fn conflict_on_unique(e: impl Into<StoreError>, message: impl FnOnce() -> String) -> StoreError {
    let e = e.into();
    if is_unique_violation(&e) { StoreError::Conflict(message()) } else { e }
}
