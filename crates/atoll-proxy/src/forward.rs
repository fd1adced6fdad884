//! Client connections: accept, pick a backend, connect, then copy bytes
//! both ways. The proxy never parses the MySQL protocol after choosing:
//! the backend's greeting goes to the client unchanged, so authentication
//! (and TLS, if the client asks for it) stays end to end.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::packet::{ER_CON_COUNT_ERROR, ER_NO_BACKEND, err_packet};
use crate::relay::Relays;
use crate::router::{Decision, Kind, Route, Shared};

/// Connect attempts per client before giving up.
const MAX_ATTEMPTS: usize = 8;

/// Accepts on `listener` until `stop`, handing each connection to a
/// relay thread.
pub async fn serve(relays: Arc<Relays>, listener: TcpListener, kind: Kind, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((sock, peer)) => {
                tracing::trace!(%peer, port = kind.as_str(), "client connection accepted");
                relays.dispatch(sock, kind);
            }
            Err(e) => {
                // Out of file descriptors, most likely: slow down rather
                // than spin; the clients already connected carry on.
                tracing::warn!(port = kind.as_str(), error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Keeps the connection counts right however a connection ends.
struct Open<'a> {
    shared: &'a Shared,
    kind: Kind,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.shared.metrics.open.fetch_sub(1, Ordering::Relaxed);
        self.shared.metrics.connections_current[self.kind as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

struct OnBackend {
    stats: Arc<crate::router::BackendStats>,
    kind: Kind,
}

impl Drop for OnBackend {
    fn drop(&mut self) {
        self.stats.connections[self.kind as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

/// One client connection, from the connection limit to the last byte.
pub(crate) async fn handle(shared: Arc<Shared>, mut client: TcpStream, kind: Kind) {
    let m = &shared.metrics;
    let _ = client.set_nodelay(true);
    m.connections_total[kind as usize].fetch_add(1, Ordering::Relaxed);
    m.connections_current[kind as usize].fetch_add(1, Ordering::Relaxed);
    let open = m.open.fetch_add(1, Ordering::Relaxed);
    let _open = Open { shared: &shared, kind };
    if open >= shared.cfg.max_connections {
        let msg = format!(
            "Too many connections: atoll proxy for cluster '{}' already has {} client connections (--max-connections)",
            shared.cfg.cluster, shared.cfg.max_connections
        );
        refuse(&shared, &mut client, kind, ER_CON_COUNT_ERROR, &msg).await;
        return;
    }
    let (route, backend, greeting) = match connect_somewhere(&shared, kind).await {
        Ok(c) => c,
        Err(msg) => {
            tracing::warn!(port = kind.as_str(), reason = %msg, "client refused");
            refuse(&shared, &mut client, kind, ER_NO_BACKEND, &msg).await;
            return;
        }
    };
    route.stats.connections[kind as usize].fetch_add(1, Ordering::Relaxed);
    let _on = OnBackend { stats: route.stats.clone(), kind };
    if client.write_all(&greeting).await.is_err() {
        return;
    }
    pipe(&shared, client, backend, &route.kill).await;
}

async fn refuse(shared: &Shared, client: &mut TcpStream, kind: Kind, code: u16, msg: &str) {
    shared.metrics.connections_refused[kind as usize].fetch_add(1, Ordering::Relaxed);
    let packet = err_packet(code, msg);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        client.write_all(&packet).await?;
        client.shutdown().await
    })
    .await;
}

/// Picks a backend and connects to it, holding during a planned writer
/// move, trying the next candidate when a connect fails (and marking the
/// failed one down at once). Returns the backend's first bytes.
async fn connect_somewhere(shared: &Shared, kind: Kind) -> Result<(Route, TcpStream, Vec<u8>), String> {
    let cfg = &shared.cfg;
    let start = Instant::now();
    let mut changes = shared.subscribe();
    let mut failed: Vec<String> = Vec::new();
    loop {
        let (deadline, why) = match shared.route(kind, &failed) {
            Decision::Go(route) => {
                let target = format!("{}:{}", route.backend.address, route.backend.port);
                match connect(&target, cfg.connect_timeout).await {
                    Ok((stream, greeting)) => return Ok((route, stream, greeting)),
                    Err(reason) => {
                        tracing::warn!(backend = %route.backend.name, %target, %reason, "backend connect failed; marking it down");
                        shared.mark_down(&route.backend.name, &reason);
                        failed.push(route.backend.name.clone());
                        if failed.len() >= MAX_ATTEMPTS {
                            return Err(format!("atoll proxy: cluster '{}': could not connect to {}", cfg.cluster, failed.join(", ")));
                        }
                        continue;
                    }
                }
            }
            Decision::Refuse(msg) => return Err(msg),
            Decision::Hold(to) => (
                start + cfg.hold_timeout,
                format!(
                    "atoll proxy: cluster '{}' is moving its writer to {to}; the move did not finish within {} ms",
                    cfg.cluster,
                    cfg.hold_timeout.as_millis()
                ),
            ),
            Decision::Wait(why) => (start + cfg.connect_timeout, why),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(why);
        }
        // Anything that changes routing wakes us: a table, a probe.
        let _ = tokio::time::timeout(left, changes.changed()).await;
    }
}

/// TCP connect and the backend's first bytes (its greeting), both within
/// `timeout`: a backend that accepts but never speaks is as down as one
/// that refuses.
pub async fn connect(target: &str, timeout: Duration) -> Result<(TcpStream, Vec<u8>), String> {
    let attempt = async {
        let mut s = TcpStream::connect(target).await.map_err(|e| format!("cannot connect to {target}: {e}"))?;
        let _ = s.set_nodelay(true);
        let mut buf = vec![0u8; 1024];
        let n = s.read(&mut buf).await.map_err(|e| format!("{target} failed before its greeting: {e}"))?;
        if n == 0 {
            return Err(format!("{target} closed the connection before its greeting"));
        }
        buf.truncate(n);
        Ok((s, buf))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("{target} did not greet within {} ms", timeout.as_millis())))
}

/// Copies both ways until either side closes, the backend is dropped
/// from routing (`kill`), the proxy stops, or the connection is idle for
/// `--idle-timeout-s` (checked at that granularity: closed after one to
/// two periods without a byte).
///
/// The copy runs as a task of its own, so the per-packet path polls only
/// the two sockets: the cancellation tokens, shared by every connection
/// to a backend, are waited on by this task, which wakes only when one
/// fires or the copy ends.
async fn pipe(shared: &Arc<Shared>, client: TcpStream, backend: TcpStream, kill: &CancellationToken) {
    let activity = Arc::new(AtomicUsize::new(0));
    let mut client = Counted::new(client, shared.clone(), Dir::In, activity.clone());
    let mut backend = Counted::new(backend, shared.clone(), Dir::Out, activity.clone());
    let mut copy = tokio::spawn(async move {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
    });
    let idle = async {
        match shared.cfg.idle_timeout {
            None => std::future::pending::<()>().await,
            Some(period) => loop {
                let before = activity.load(Ordering::Relaxed);
                tokio::time::sleep(period).await;
                if activity.load(Ordering::Relaxed) == before {
                    return;
                }
            },
        }
    };
    tokio::select! {
        _ = &mut copy => return,
        _ = kill.cancelled() => tracing::debug!("closing a client connection: its backend left routing"),
        _ = shared.kill_all.cancelled() => {}
        _ = idle => tracing::debug!("closing an idle client connection"),
    }
    copy.abort();
    let _ = copy.await;
}

#[derive(Clone, Copy)]
enum Dir {
    /// Read from the client.
    In,
    /// Read from the backend.
    Out,
}

/// A stream that counts the bytes read from it, adding them to the
/// proxy's totals every few reads (and when dropped) rather than on every
/// read: one shared counter bumped by every packet of every connection
/// would bounce its cache line between the cores.
struct Counted {
    inner: TcpStream,
    shared: Arc<Shared>,
    dir: Dir,
    pending: u64,
    reads: u32,
    activity: Arc<AtomicUsize>,
}

impl Counted {
    fn new(inner: TcpStream, shared: Arc<Shared>, dir: Dir, activity: Arc<AtomicUsize>) -> Self {
        Self { inner, shared, dir, pending: 0, reads: 0, activity }
    }

    fn flush_count(&mut self) {
        if self.pending > 0 {
            let total = match self.dir {
                Dir::In => &self.shared.metrics.bytes_in,
                Dir::Out => &self.shared.metrics.bytes_out,
            };
            total.fetch_add(std::mem::take(&mut self.pending), Ordering::Relaxed);
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.flush_count();
    }
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.pending += n as u64;
            self.reads = self.reads.wrapping_add(1);
            // Per connection, so uncontended: the idle check sees every read.
            self.activity.fetch_add(1, Ordering::Relaxed);
            if self.reads.is_multiple_of(64) {
                self.flush_count();
            }
        }
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
