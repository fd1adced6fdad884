use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    /// A uniqueness rule was broken; the message names the field.
    #[error("{0}")]
    Conflict(String),
    #[error("metadata store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("metadata store holds an unreadable value in {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("metadata store migration {version} failed: {source}")]
    Migration { version: i64, source: sqlx::Error },
    #[error("unsupported metadata store URL {0:?}: use sqlite://PATH or mysql://USER:PASS@HOST:PORT/DB")]
    UnsupportedUrl(String),
}
