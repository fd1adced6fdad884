//! The threads that relay client connections.
//!
//! Each relay thread runs a single-threaded reactor and owns the
//! connections handed to it from accept to close, as HAProxy's threads
//! do. A query's four socket calls then never wake a second thread: a
//! work-stealing pool spent a futex call and a context switch on a third
//! of all queries here moving tasks between its workers. Accepting,
//! probing and the platform's long-poll stay on the caller's runtime, so
//! they never delay a relayed byte either.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::forward;
use crate::router::{Kind, Shared};

/// Hands accepted connections to the relay thread with the fewest.
pub struct Relays {
    threads: Vec<Relay>,
    joins: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

struct Relay {
    tx: mpsc::UnboundedSender<(std::net::TcpStream, Kind)>,
    /// Connections this thread owns now.
    load: Arc<AtomicUsize>,
}

impl Relays {
    /// Starts `shared.cfg.relay_threads` threads. They end once
    /// `shared.kill_all` is cancelled (after the shutdown grace period).
    pub fn start(shared: &Arc<Shared>) -> std::io::Result<Relays> {
        let (mut threads, mut joins) = (Vec::new(), Vec::new());
        for i in 0..shared.cfg.relay_threads.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (tx, mut rx) = mpsc::unbounded_channel::<(std::net::TcpStream, Kind)>();
            let load = Arc::new(AtomicUsize::new(0));
            let (shared, mine) = (shared.clone(), load.clone());
            let join = std::thread::Builder::new().name(format!("relay-{i}")).spawn(move || {
                rt.block_on(async move {
                    let kill_all = shared.kill_all.clone();
                    loop {
                        let next = tokio::select! {
                            _ = kill_all.cancelled() => break,
                            n = rx.recv() => n,
                        };
                        let Some((sock, kind)) = next else {
                            // No more connections to come: serve the ones
                            // we own until the grace period ends.
                            kill_all.cancelled().await;
                            break;
                        };
                        let (shared, mine) = (shared.clone(), mine.clone());
                        tokio::spawn(async move {
                            let _owned = Owned(mine);
                            match TcpStream::from_std(sock) {
                                Ok(sock) => forward::handle(shared, sock, kind).await,
                                Err(e) => tracing::warn!(error = %e, "cannot take over an accepted connection"),
                            }
                        });
                    }
                });
            })?;
            threads.push(Relay { tx, load });
            joins.push(join);
        }
        Ok(Relays { threads, joins: std::sync::Mutex::new(joins) })
    }

    /// Until every relay thread has ended, and with it every connection
    /// it owned.
    pub async fn join(&self) {
        let joins = match self.joins.lock() {
            Ok(mut j) => std::mem::take(&mut *j),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for j in joins {
            let _ = tokio::task::spawn_blocking(move || j.join()).await;
        }
    }

    /// Gives `sock` to the least loaded thread.
    pub fn dispatch(&self, sock: TcpStream, kind: Kind) {
        let sock = match sock.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand over an accepted connection");
                return;
            }
        };
        let Some(relay) = self.threads.iter().min_by_key(|r| r.load.load(Ordering::Relaxed)) else {
            return;
        };
        relay.load.fetch_add(1, Ordering::Relaxed);
        if relay.tx.send((sock, kind)).is_err() {
            relay.load.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!("a relay thread has stopped; connection dropped");
        }
    }
}

/// Keeps a thread's count right however its connection ends.
struct Owned(Arc<AtomicUsize>);

impl Drop for Owned {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
