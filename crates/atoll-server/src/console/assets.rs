//! The console's stylesheet and script, embedded in the binary and served
//! with a content hash in their URL, so browsers may cache them forever.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::Embed)]
#[folder = "assets/"]
struct Assets;

/// `/assets/NAME?v=HASH8` for every embedded file, computed once.
fn urls() -> &'static HashMap<String, String> {
    static URLS: OnceLock<HashMap<String, String>> = OnceLock::new();
    URLS.get_or_init(|| {
        Assets::iter()
            .filter_map(|name| {
                let file = Assets::get(&name)?;
                // rust-embed hashes every file at compile time.
                let hash = hex::encode(file.metadata.sha256_hash());
                Some((name.to_string(), format!("/assets/{name}?v={}", &hash[..8])))
            })
            .collect()
    })
}

/// The versioned URL of an embedded asset (the bare path if it is missing,
/// which a unit test rules out for the ones templates use).
pub fn url(name: &'static str) -> &'static str {
    urls().get(name).map_or(name, String::as_str)
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

pub async fn serve(Path(file): Path<String>) -> Response {
    match Assets::get(&file) {
        Some(f) => (
            [
                (header::CONTENT_TYPE, content_type(&file)),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            f.data.into_owned(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_assets_have_hashed_urls() {
        for name in ["console.css", "console.js"] {
            let u = url(name);
            assert!(u.starts_with(&format!("/assets/{name}?v=")), "{u}");
            assert_eq!(u.len(), format!("/assets/{name}?v=").len() + 8);
        }
        assert_eq!(content_type("console.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("x"), "application/octet-stream");
    }
}
