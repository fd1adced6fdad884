//! Client connections: accept, check the limits, pick a backend, connect,
//! then copy bytes both ways. The backend's greeting goes to the client
//! unchanged, so authentication (and TLS, if the client asks for it)
//! stays end to end; the proxy only watches the handshake's packets go by
//! ([`crate::handshake`]) to know when it is over, and parses nothing
//! after that.
//!
//! Limits, all answered before any backend connection is opened where
//! the client can be told: `--max-connections` and
//! `--max-connections-per-ip` (ERR 1040 in place of the greeting);
//! `--pre-auth-timeout-ms` (closed: the client is not reading); and
//! `--idle-timeout-s` (ERR 4031 as the answer to the next statement, then
//! closed).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::handshake::Handshake;
use crate::packet::{ER_CLIENT_INTERACTION_TIMEOUT, ER_CON_COUNT_ERROR, ER_NO_BACKEND, err_packet, err_packet_seq};
use crate::probe::recheck_interval;
use crate::relay::Relays;
use crate::router::{Decision, Kind, Route, Shared};

/// Readers tried per client before giving up (each failed one is skipped).
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
    let Ok(peer) = client.peer_addr() else { return };
    let _per_ip = match shared.enter_ip(peer.ip()) {
        Ok(slot) => slot,
        Err(open) => {
            m.refused_per_ip.fetch_add(1, Ordering::Relaxed);
            // Counted in metrics; debug only, as a flood would flood the log.
            tracing::debug!(client = %peer.ip(), open, "client refused: --max-connections-per-ip");
            let msg = format!(
                "Too many connections: atoll proxy for cluster '{}' already has {open} client connections from {} \
                 (at most {} per address: --max-connections-per-ip)",
                shared.cfg.cluster,
                peer.ip().to_canonical(),
                shared.cfg.max_connections_per_ip
            );
            refuse(&shared, &mut client, kind, ER_CON_COUNT_ERROR, &msg).await;
            return;
        }
    };
    let (route, backend, greeting) = match connect_somewhere(&shared, kind).await {
        Ok(c) => c,
        Err(msg) => {
            tracing::warn!(port = kind.as_str(), reason = %msg, "client refused");
            refuse(&shared, &mut client, kind, ER_NO_BACKEND, &msg).await;
            return;
        }
    };
    let pre_auth_deadline = tokio::time::Instant::now() + shared.cfg.pre_auth_timeout;
    route.stats.connections[kind as usize].fetch_add(1, Ordering::Relaxed);
    let _on = OnBackend { stats: route.stats.clone(), kind };
    let mut handshake = Handshake::new();
    handshake.server(&greeting);
    let sent = tokio::time::timeout_at(pre_auth_deadline, client.write_all(&greeting)).await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    pipe(&shared, client, backend, &route.kill, handshake, pre_auth_deadline, peer).await;
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
/// move. When a connect fails, the backend's prober is asked to look at
/// once; a reader connection tries the next reader, a writer connection
/// waits for the probes' verdict (the writer confirmed down and replaced,
/// or still up: tried again) up to `--hold-timeout-ms`. Returns the
/// backend's first bytes.
async fn connect_somewhere(shared: &Shared, kind: Kind) -> Result<(Route, TcpStream, Vec<u8>), String> {
    let cfg = &shared.cfg;
    let start = Instant::now();
    let mut changes = shared.subscribe();
    let mut failed: Vec<String> = Vec::new();
    let mut writer_failure: Option<String> = None;
    loop {
        if let Some(why) = &writer_failure
            && Instant::now() >= start + cfg.hold_timeout
        {
            return Err(why.clone());
        }
        let (deadline, why) = match shared.route(kind, &failed) {
            Decision::Go(route) => {
                let target = format!("{}:{}", route.backend.address, route.backend.port);
                match connect(&target, cfg.connect_timeout).await {
                    Ok((stream, greeting)) => return Ok((route, stream, greeting)),
                    Err(reason) => {
                        tracing::warn!(backend = %route.backend.name, %target, %reason, port = kind.as_str(), "backend connect failed");
                        shared.connect_failed(&route.backend.name);
                        match kind {
                            Kind::Ro => {
                                failed.push(route.backend.name.clone());
                                if failed.len() >= MAX_ATTEMPTS {
                                    return Err(format!(
                                        "atoll proxy: cluster '{}': could not connect to {}",
                                        cfg.cluster,
                                        failed.join(", ")
                                    ));
                                }
                                continue;
                            }
                            Kind::Rw => {
                                let why = format!(
                                    "atoll proxy: cluster '{}': could not connect to the writer {} ({reason}), and the proxy's probes \
                                     have not found it down within {} ms (--hold-timeout-ms)",
                                    cfg.cluster,
                                    route.backend.name,
                                    cfg.hold_timeout.as_millis()
                                );
                                writer_failure = Some(why.clone());
                                // Until the probes have looked again, then
                                // the writer they leave us (maybe this one).
                                let again = Instant::now() + recheck_interval(cfg.probe_interval);
                                (again.min(start + cfg.hold_timeout), why)
                            }
                        }
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

/// How a connection's copy task ended.
enum Ended {
    /// Either side closed (or failed).
    Closed,
    /// The client did not finish the handshake by the deadline.
    PreAuthTimeout,
}

/// Relays the handshake, then copies both ways until either side closes,
/// the backend is dropped from routing (`kill`), the proxy stops, the
/// client does not finish the handshake by `pre_auth_deadline`, or the
/// session is idle for `--idle-timeout-s`.
///
/// The copy runs as a task of its own, so the per-packet path polls only
/// the two sockets and a oneshot receiver (an atomic load): the
/// cancellation tokens, shared by every connection to a backend, are
/// waited on by this function, which wakes only when one fires, the idle
/// check is due, or the copy ends.
async fn pipe(
    shared: &Arc<Shared>,
    client: TcpStream,
    backend: TcpStream,
    kill: &CancellationToken,
    mut handshake: Handshake,
    pre_auth_deadline: tokio::time::Instant,
    peer: std::net::SocketAddr,
) {
    let activity = Arc::new(AtomicUsize::new(0));
    let mut client = Counted::new(client, shared.clone(), Dir::In, activity.clone());
    let mut backend = Counted::new(backend, shared.clone(), Dir::Out, activity.clone());
    let (done_tx, done_rx) = oneshot::channel::<bool>();
    let (idle_tx, mut idle_rx) = oneshot::channel::<()>();
    let mut copy = tokio::spawn(async move {
        let relayed = tokio::time::timeout_at(pre_auth_deadline, relay_handshake(&mut client, &mut backend, &mut handshake)).await;
        let error_packets = match relayed {
            Err(_) => return Ended::PreAuthTimeout,
            Ok(None) => return Ended::Closed,
            Ok(Some(p)) => p,
        };
        let _ = done_tx.send(error_packets);
        tokio::select! {
            biased;
            _ = tokio::io::copy_bidirectional(&mut client, &mut backend) => {}
            Ok(()) = &mut idle_rx => {
                // Where the protocol allows: the answer to the client's
                // next statement.
                let cfg = &client.shared.cfg;
                if let (true, Some(limit)) = (error_packets, cfg.idle_timeout) {
                    let packet = err_packet_seq(ER_CLIENT_INTERACTION_TIMEOUT, 1, &idle_message(&cfg.cluster, limit));
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        client.inner.write_all(&packet).await?;
                        client.inner.shutdown().await
                    })
                    .await;
                }
            }
        }
        Ended::Closed
    });
    let idle = idle_after_handshake(shared.cfg.idle_timeout, done_rx, &activity);
    tokio::select! {
        ended = &mut copy => {
            if let Ok(Ended::PreAuthTimeout) = ended {
                // Counted, and logged at debug only: a flood of silent
                // clients must not flood the log too.
                shared.metrics.pre_auth_timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    client = %peer,
                    limit_ms = shared.cfg.pre_auth_timeout.as_millis() as u64,
                    "closed a client connection that did not finish the MySQL handshake in time (--pre-auth-timeout-ms)"
                );
            }
            return;
        }
        _ = kill.cancelled() => tracing::debug!("closing a client connection: its backend left routing"),
        _ = shared.kill_all.cancelled() => {}
        _ = idle => {
            shared.metrics.idle_timeouts.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(client = %peer, "closing an idle client connection (--idle-timeout-s)");
            // The copy task writes the error packet and ends.
            let _ = idle_tx.send(());
            if tokio::time::timeout(Duration::from_secs(2), &mut copy).await.is_ok() {
                return;
            }
        }
    }
    copy.abort();
    let _ = copy.await;
}

fn idle_message(cluster: &str, limit: Duration) -> String {
    format!(
        "atoll proxy (cluster '{cluster}') closed this connection: no statement for {} s, the proxy's limit \
         (--idle-timeout-s on the proxy; 0 turns it off). Reconnect to go on",
        limit.as_secs()
    )
}

/// Copies the handshake both ways, feeding `handshake`, until it is over
/// (`Some(error_packets)`, see [`Handshake::done`]) or a side closes
/// (`None`). Bytes past the end of the handshake read in the same chunk
/// are copied too; nothing is held back.
async fn relay_handshake(client: &mut Counted, backend: &mut Counted, handshake: &mut Handshake) -> Option<bool> {
    let mut from_client = vec![0u8; 4096];
    let mut from_backend = vec![0u8; 4096];
    loop {
        if let Some(error_packets) = handshake.done() {
            return Some(error_packets);
        }
        tokio::select! {
            r = client.read(&mut from_client) => {
                let n = r.ok().filter(|n| *n > 0)?;
                handshake.client(&from_client[..n]);
                backend.write_all(&from_client[..n]).await.ok()?;
            }
            r = backend.read(&mut from_backend) => {
                let n = r.ok().filter(|n| *n > 0)?;
                handshake.server(&from_backend[..n]);
                client.write_all(&from_backend[..n]).await.ok()?;
            }
        }
    }
}

/// Resolves once the session has been idle for `limit`: the handshake is
/// over, and no byte went either way for `limit` after the backend last
/// spoke (so the client owes the next statement; a long query is not
/// idle). Checked every eighth of `limit`: closed after between one and
/// one and a quarter times `limit`.
async fn idle_after_handshake(limit: Option<Duration>, done: oneshot::Receiver<bool>, activity: &AtomicUsize) {
    let Some(limit) = limit else { return std::future::pending().await };
    if done.await.is_err() {
        return std::future::pending().await;
    }
    let step = (limit / 8).max(Duration::from_millis(10));
    let mut seen = activity.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    loop {
        tokio::time::sleep(step).await;
        let now = activity.load(Ordering::Relaxed);
        if now != seen {
            (seen, quiet_since) = (now, Instant::now());
            continue;
        }
        if quiet_since.elapsed() >= limit && Dir::last(now) == Dir::Out {
            return;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Read from the client.
    In,
    /// Read from the backend.
    Out,
}

impl Dir {
    /// Which side the last read of a connection's `activity` came from:
    /// its low bit (the rest counts reads).
    fn last(activity: usize) -> Dir {
        if activity & 1 == 1 { Dir::Out } else { Dir::In }
    }
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
            // Per connection, and only this connection's copy task writes
            // it: the idle check sees every read, and who spoke last.
            let reads = (self.activity.load(Ordering::Relaxed) >> 1).wrapping_add(1);
            self.activity.store(reads << 1 | usize::from(self.dir == Dir::Out), Ordering::Relaxed);
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
