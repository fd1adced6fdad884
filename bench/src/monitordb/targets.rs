//! The targets process: `targets` synthetic exporters on consecutive ports
//! of 127.0.0.1, one process for all of them, so each scraper pays for
//! its own work only. A target's body is rendered once per tick and
//! served to every scraper asking within that tick: MonitorDB's scraper
//! and Prometheus read the same values, and rendering costs this process
//! once, not twice.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::io::AsyncReadExt;

use crate::synth::Exporter;

#[derive(Clone)]
struct Target {
    index: usize,
    shared: Arc<Shared>,
}

struct Shared {
    exporter: Exporter,
    interval_ms: i64,
    /// Per target: the tick last rendered and its body.
    bodies: Vec<Mutex<Option<(i64, Bytes)>>>,
}

/// Binds every port, says `ready` on stdout, and serves until stdin
/// closes (the benchmark that started this process is gone).
pub async fn serve(first_port: u16, targets: usize, series: usize, interval_ms: i64) -> Result<()> {
    let shared =
        Arc::new(Shared { exporter: Exporter::new(series), interval_ms, bodies: (0..targets).map(|_| Mutex::new(None)).collect() });
    for index in 0..targets {
        let port = u16::try_from(usize::from(first_port) + index).context("port past 65535")?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.with_context(|| format!("binding 127.0.0.1:{port}"))?;
        let app = axum::Router::new().route("/metrics", get(metrics)).with_state(Target { index, shared: Arc::clone(&shared) });
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(port, error = %e, "target stopped serving");
            }
        });
    }
    println!("ready");
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while stdin.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {}
    Ok(())
}

async fn metrics(State(t): State<Target>) -> impl IntoResponse {
    let tick = atoll_core::time::now_ms() / t.shared.interval_ms;
    let body = {
        // Rendering under the lock: a second scraper in the same tick
        // waits for the body instead of rendering it again.
        let mut slot = t.shared.bodies[t.index].lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some((at, body)) if *at == tick => body.clone(),
            _ => {
                let mut text = String::with_capacity(96 * t.shared.exporter.len());
                t.shared.exporter.render(t.index, tick, &mut text);
                let body = Bytes::from(text);
                *slot = Some((tick, body.clone()));
                body
            }
        }
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}
