//! One task per supervised server: watch the process; when it exits while
//! it should run, have the survivors evict it at once, then restart it
//! with back-off at its recovered position (IST, not a full copy), and
//! give up after too many crashes in a short time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use atoll_core::DbId;
use tokio::process::Child;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::process::{describe_exit, find_running, is_server_process, spawn_mariadbd};
use super::{DbError, Inner, Server, evict, probe, recover};
use crate::process::{alive, backoff};

/// Exits within this window count towards a crash loop.
const CRASH_WINDOW: Duration = Duration::from_secs(300);
/// This many exits within the window: give up and say so.
const CRASH_LIMIT: usize = 5;
/// Restart back-off: 1 s, 2 s, 4 s ... for the 1st, 2nd, 3rd ... exit in
/// the window, at most 30 s.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// An adopted process is not our child: poll for its end instead.
const POLL_ADOPTED: Duration = Duration::from_millis(200);

/// How a supervision task begins.
pub(crate) enum Launch {
    /// The operation just started it.
    Spawned(Child),
    /// It was already running (agent restart, or started by someone else
    /// with this server's config).
    Adopted(u32),
    /// Start it at its recovered position (agent restart; never with
    /// `--wsrep-new-cluster`).
    Resume,
}

/// Hands `server` to a new supervision task (and its prober).
pub(crate) fn supervise(inner: Arc<Inner>, server: Arc<Server>, launch: Launch) {
    {
        let mut rt = server.rt();
        rt.supervised = true;
        rt.crashed = false;
        match &launch {
            Launch::Spawned(child) => rt.set_process(child.id()),
            Launch::Adopted(pid) => rt.set_process(Some(*pid)),
            Launch::Resume => rt.set_process(None),
        }
    }
    tokio::spawn(run(inner, server, launch));
}

enum Proc {
    Child(Child),
    Adopted(u32),
}

async fn run(inner: Arc<Inner>, server: Arc<Server>, launch: Launch) {
    let id = server.id();
    let probes = inner.shutdown.child_token();
    tokio::spawn(probe::probe_loop(server.clone(), probes.clone()));
    let _stop_probes = probes.drop_guard();
    let mut proc = match launch {
        Launch::Spawned(child) => Some(Proc::Child(child)),
        Launch::Adopted(pid) => Some(Proc::Adopted(pid)),
        Launch::Resume => None,
    };
    loop {
        let proc_now = match proc.take() {
            Some(p) => Ok(p),
            None => match restart(&inner, &server).await {
                Ok(Some(p)) => Ok(p),
                Ok(None) => {
                    finish(&server, &id);
                    return;
                }
                // The agent is stopping: whatever runs keeps running.
                Err(_) if inner.shutdown.is_cancelled() => return,
                Err(e) => Err(format!("could not start: {e}")),
            },
        };
        let (exit, ran) = match proc_now {
            Ok(p) => match watch(p, &server.layout().defaults_arg(), &inner.shutdown).await {
                Some(exit) => (exit, true),
                // The agent is stopping: the server keeps running.
                None => return,
            },
            Err(e) => (e, false),
        };

        // The process is gone (or never started).
        let (desired, uuid, def) = {
            let mut rt = server.rt();
            let uuid = rt.gcomm_uuid.take();
            rt.set_process(None);
            if !rt.desired_running {
                rt.supervised = false;
                rt.crashed = false;
            }
            (rt.desired_running, uuid, rt.def.clone())
        };
        if !desired {
            tracing::info!(server = %id, exit, "database server stopped");
            return;
        }
        tracing::warn!(server = %id, exit, "database server exited unexpectedly");
        // Its state-transfer helpers (a `wsrep_sst_rsync` donor script) can
        // outlive it and hold the joiner's transfer open forever: end them,
        // so the joiner fails over to another donor.
        crate::kill_processes_under(&server.layout().dir.join(""));
        let eviction = match uuid {
            Some((gcomm_uuid, cluster_size)) if !def.peers.is_empty() => {
                let dead = evict::DeadNode { server_id: id.clone(), gcomm_uuid, cluster_size };
                Some(tokio::spawn(async move { evict::evict_everywhere(&dead, &def.peers, &def.admin).await }))
            }
            None if ran => {
                tracing::warn!(server = %id, "not evicting: no gcomm uuid was seen while it ran");
                None
            }
            _ => None,
        };
        // Stopped by us for a full disk: back once there is room, and not
        // a step towards a crash loop.
        if std::mem::take(&mut server.rt().disk_full) {
            {
                let mut rt = server.rt();
                rt.last_exit = Some(format!("stopped by the agent: data directory full ({exit}); starts again once there is room"));
                rt.crashed = true;
            }
            if !wait_for_room(&inner, &server, eviction).await {
                if !inner.shutdown.is_cancelled() {
                    finish(&server, &id);
                }
                return;
            }
            tracing::info!(server = %id, "data directory has room again; starting the server");
            server.rt().restarts += 1;
            continue;
        }
        let Some(backoff) = record_crash(&server, exit) else {
            tracing::error!(
                server = %id,
                exits = CRASH_LIMIT,
                window_s = CRASH_WINDOW.as_secs(),
                "database server keeps crashing: gave up restarting it (crash loop); read its error log, then start it again"
            );
            return;
        };
        tracing::info!(server = %id, backoff_ms = backoff.as_millis() as u64, "restarting database server after back-off");
        if !wait_backoff(&inner, &server, backoff, eviction).await {
            if !inner.shutdown.is_cancelled() {
                finish(&server, &id);
            }
            return;
        }
        server.rt().restarts += 1;
    }
}

/// Supervision ends because the server should no longer run.
fn finish(server: &Server, id: &DbId) {
    let mut rt = server.rt();
    rt.supervised = false;
    rt.crashed = false;
    tracing::info!(server = %id, "supervision ended: the server is meant to be stopped");
}

/// Waits for the process to end: `Some(how)`, or `None` when the agent is
/// stopping first.
async fn watch(proc: Proc, defaults_arg: &str, shutdown: &CancellationToken) -> Option<String> {
    match proc {
        Proc::Child(mut child) => {
            let pid = child.id();
            tokio::select! {
                _ = shutdown.cancelled() => None,
                status = child.wait() => match (status, pid) {
                    (Ok(s), _) => Some(describe_exit(s)),
                    // Cannot wait: fall back to watching the pid.
                    (Err(_), Some(pid)) if alive(pid) => poll_until_gone(pid, defaults_arg, shutdown).await,
                    (Err(e), _) => Some(format!("ended (wait failed: {e})")),
                },
            }
        }
        Proc::Adopted(pid) => poll_until_gone(pid, defaults_arg, shutdown).await,
    }
}

/// Polls until `pid` is no longer this server's `mariadbd` (checking the
/// command line too: a pid reused within a poll is not mistaken for it).
async fn poll_until_gone(pid: u32, defaults_arg: &str, shutdown: &CancellationToken) -> Option<String> {
    while is_server_process(pid, defaults_arg) {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(POLL_ADOPTED) => {}
        }
    }
    Some("exited (adopted process, not a child of this agent: exit status unknown)".into())
}

/// Records an unexpected exit; the back-off before the next start, or
/// `None` when this exit makes a crash loop.
fn record_crash(server: &Server, exit: String) -> Option<Duration> {
    let mut rt = server.rt();
    let now = Instant::now();
    rt.last_exit = Some(exit);
    rt.crashed = true;
    rt.exits.push_back(now);
    while rt.exits.front().is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW) {
        rt.exits.pop_front();
    }
    if rt.exits.len() >= CRASH_LIMIT {
        rt.crash_loop = true;
        rt.crashed = false;
        rt.supervised = false;
        return None;
    }
    Some(backoff(FIRST_BACKOFF, MAX_BACKOFF, rt.exits.len()))
}

/// Sleeps `d`, and until the eviction has finished (a join while the
/// survivors still list the dead node stalls the cluster), unless the
/// server stops being wanted or the agent stops: `true` to go on and
/// restart.
async fn wait_backoff(inner: &Inner, server: &Server, d: Duration, eviction: Option<JoinHandle<usize>>) -> bool {
    let deadline = tokio::time::Instant::now() + d;
    let evicted = async {
        if let Some(h) = eviction {
            let _ = h.await;
        }
    };
    let ready = async { tokio::join!(tokio::time::sleep_until(deadline), evicted) };
    tokio::pin!(ready);
    loop {
        tokio::select! {
            _ = inner.shutdown.cancelled() => return false,
            _ = &mut ready => return server.desired(),
            _ = server.wake.notified() => if !server.desired() { return false },
        }
    }
}

/// Waits until the data directory has room again (and the eviction of the
/// stopped node finished); `true` to restart, `false` when the server is
/// no longer wanted or the agent stops.
async fn wait_for_room(inner: &Inner, server: &Server, eviction: Option<JoinHandle<usize>>) -> bool {
    if let Some(h) = eviction {
        let _ = h.await;
    }
    let data = server.layout().data;
    loop {
        if !server.desired() {
            return false;
        }
        if super::diskfull::full(&data).is_none() {
            return true;
        }
        tokio::select! {
            _ = inner.shutdown.cancelled() => return false,
            _ = tokio::time::sleep(super::diskfull::LOOK_EVERY) => {}
            _ = server.wake.notified() => {}
        }
    }
}

/// Starts the server again at its recovered position, so it rejoins by
/// IST; `None` when it should no longer run.
async fn restart(inner: &Inner, server: &Server) -> Result<Option<Proc>, DbError> {
    let (id, layout) = {
        let rt = server.rt();
        (rt.def.id.clone(), rt.layout.clone())
    };
    // Never two processes on one data directory.
    if let Some(pid) = find_running(&layout) {
        tracing::info!(server = %id, pid, "database server is already running; adopting it");
        server.rt().set_process(Some(pid));
        return Ok(Some(Proc::Adopted(pid)));
    }
    let args: Vec<String> = recover::start_position_arg(&inner.root, &layout, &id).await.into_iter().collect();
    if !server.desired() {
        return Ok(None);
    }
    if inner.shutdown.is_cancelled() {
        return Err(DbError::Io("the agent is stopping".into()));
    }
    let child = spawn_mariadbd(&inner.root, &layout, &args)?;
    tracing::info!(server = %id, pid = child.id(), args = ?args, "database server started again");
    server.rt().set_process(child.id());
    Ok(Some(Proc::Child(child)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifth_exit_in_the_window_is_a_crash_loop() {
        let def = atoll_api::db::DbServerDef {
            id: atoll_core::DbId::new("c", "s1"),
            dir: "/srv/s1".into(),
            config: "[mysqld]\n".into(),
            sql_addr: "127.0.0.1:3306".into(),
            peers: vec![],
            admin: atoll_api::db::DbCredentials { user: "a".into(), password: "b".into() },
            basedir: None,
            tls: None,
        };
        let server = Server::new(def, true);
        server.rt().supervised = true;
        let waits: Vec<Option<u64>> = (0..5).map(|_| record_crash(&server, "killed by signal 9".into()).map(|d| d.as_secs())).collect();
        assert_eq!(waits, vec![Some(1), Some(2), Some(4), Some(8), None]);
        let st = server.status();
        assert_eq!(st.state, atoll_core::ServerState::CrashLoop);
        assert_eq!(st.last_exit.as_deref(), Some("killed by signal 9"));
        assert!(!server.rt().supervised);
    }
}
