//! A real HTTP receiver for alert notifications: it records each JSON body
//! it accepts, and can refuse the first requests (HTTP 500) to exercise a
//! sender's retries.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

#[derive(Default)]
struct Inner {
    accepted: Mutex<Vec<(Instant, Value)>>,
    refuse_first: AtomicUsize,
    refused: AtomicUsize,
}

pub struct Webhook {
    /// Where to post: `http://IP:PORT/hook`.
    pub url: String,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    /// Listens on `ip` (a free port); the first `refuse_first` requests
    /// get a 500.
    pub async fn start(ip: &str, refuse_first: usize) -> anyhow::Result<Webhook> {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let inner = Arc::new(Inner { refuse_first: AtomicUsize::new(refuse_first), ..Default::default() });
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(Arc::clone(&inner));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Webhook { url, inner, task })
    }

    /// Bodies accepted so far, with when each arrived.
    pub fn received(&self) -> Vec<(Instant, Value)> {
        self.inner.accepted.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Requests answered with a 500.
    pub fn refused(&self) -> usize {
        self.inner.refused.load(Ordering::SeqCst)
    }
}

async fn receive(State(inner): State<Arc<Inner>>, body: axum::body::Bytes) -> StatusCode {
    if inner.refuse_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        inner.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(v) => {
            if let Ok(mut all) = inner.accepted.lock() {
                all.push((Instant::now(), v));
            }
            StatusCode::OK
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}
