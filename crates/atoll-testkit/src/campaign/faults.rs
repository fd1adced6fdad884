//! The faults, how the scheduler picks them, and how each is injected and
//! healed. Every choice (kind, target, hold, timing) comes from the seeded
//! generator, so a seed replays the same schedule; the system's own timing
//! is of course not replayed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::rig::{Rig, send};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Process {
    Mariadbd,
    Agent,
    Server,
    Proxy,
}

impl Process {
    pub fn name(self) -> &'static str {
        match self {
            Process::Mariadbd => "mariadbd",
            Process::Agent => "agent",
            Process::Server => "server",
            Process::Proxy => "proxy",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Kill(Process),
    /// SIGSTOP, a hold, SIGCONT.
    Stop(Process),
    /// Two or three SIGKILLs of different processes within a second.
    Burst,
    /// Every packet from and to one host dropped for a hold.
    NetCut,
    /// One node's data directory filled up for a hold.
    DiskFull,
    /// One host's wall clock stepped away for a hold, then back.
    ClockJump,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Kill(Process::Mariadbd),
        Kind::Kill(Process::Agent),
        Kind::Kill(Process::Server),
        Kind::Kill(Process::Proxy),
        Kind::Stop(Process::Mariadbd),
        Kind::Stop(Process::Agent),
        Kind::Stop(Process::Server),
        Kind::Stop(Process::Proxy),
        Kind::Burst,
        Kind::NetCut,
        Kind::DiskFull,
        Kind::ClockJump,
    ];

    pub fn label(self) -> String {
        match self {
            Kind::Kill(p) => format!("SIGKILL {}", p.name()),
            Kind::Stop(p) => format!("SIGSTOP/SIGCONT {}", p.name()),
            Kind::Burst => "crash burst (2-3 SIGKILLs in 1 s)".into(),
            Kind::NetCut => "network cut of a host".into(),
            Kind::DiskFull => "full disk on a node".into(),
            Kind::ClockJump => "clock jump on a host".into(),
        }
    }
}

/// One process hit by a fault; `host` is unused for the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub process: Process,
    pub host: usize,
}

#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: Kind,
    pub hits: Vec<Hit>,
    /// For a burst: when each hit lands, after the first.
    pub offsets: Vec<Duration>,
    /// How long a stop, cut, full disk or clock jump lasts.
    pub hold: Duration,
    /// How long a killed agent or server stays down before its service
    /// manager (the campaign) starts it again.
    pub restart_after: Duration,
    pub clock_offset_s: i64,
}

impl Fault {
    pub fn describe(&self, rig: &Rig) -> String {
        let hit = |h: &Hit| match h.process {
            Process::Server => "server".to_string(),
            Process::Mariadbd => format!("mariadbd {}", rig.hosts[h.host].server),
            p => format!("{} on {}", p.name(), rig.hosts[h.host].ip),
        };
        let hits = self.hits.iter().map(hit).collect::<Vec<_>>().join(" + ");
        match self.kind {
            Kind::Kill(_) => format!("SIGKILL {hits}"),
            Kind::Stop(_) => format!("SIGSTOP {hits} for {} ms", self.hold.as_millis()),
            Kind::Burst => {
                let at = self.offsets.iter().map(|o| format!("+{}", o.as_millis())).collect::<Vec<_>>().join("/");
                format!("SIGKILL {hits} at {at} ms")
            }
            Kind::NetCut => format!("cut {} for {} ms", rig.hosts[self.hits[0].host].ip, self.hold.as_millis()),
            Kind::DiskFull => format!("fill {}'s data directory for {} ms", rig.hosts[self.hits[0].host].server, self.hold.as_millis()),
            Kind::ClockJump => {
                format!("clock of {} {:+} s for {} ms", rig.hosts[self.hits[0].host].ip, self.clock_offset_s, self.hold.as_millis())
            }
        }
    }

    pub fn mariadbd_kills(&self) -> impl Iterator<Item = usize> + '_ {
        self.hits.iter().filter(|h| h.process == Process::Mariadbd && matches!(self.kind, Kind::Kill(_) | Kind::Burst)).map(|h| h.host)
    }

    /// Two database servers or more killed at once: the survivors lose
    /// their majority, which the platform leaves to an operator's
    /// `cluster recover` (it may be the minority side of a partition).
    pub fn may_lose_quorum(&self) -> bool {
        self.mariadbd_kills().count() >= 2
    }

    /// A fault of one process, during which a platform task may run.
    pub fn single(&self) -> bool {
        matches!(self.kind, Kind::Kill(_) | Kind::Stop(_))
    }
}

/// The agent gives up on a server after 5 exits in 5 minutes (a crash
/// loop an operator must look at). The scheduler stays below that: at
/// most this many exits of one host's `mariadbd` in the window.
const EXIT_BUDGET: usize = 3;
const EXIT_WINDOW: Duration = Duration::from_secs(300);

pub struct Scheduler {
    kinds: Vec<Kind>,
    deck: VecDeque<Kind>,
    exits: Vec<VecDeque<Instant>>,
    hosts: usize,
    clock_host: usize,
}

impl Scheduler {
    pub fn new(kinds: Vec<Kind>, hosts: usize, clock_host: usize) -> Scheduler {
        Scheduler { kinds, deck: VecDeque::new(), exits: vec![VecDeque::new(); hosts], hosts, clock_host }
    }

    /// A `mariadbd` of `host` exited (killed, or seen to restart).
    pub fn record_exit(&mut self, host: usize) {
        if let Some(q) = self.exits.get_mut(host) {
            q.push_back(Instant::now());
        }
    }

    fn may_kill(&mut self, host: usize) -> bool {
        let q = &mut self.exits[host];
        while q.front().is_some_and(|t| t.elapsed() > EXIT_WINDOW) {
            q.pop_front();
        }
        q.len() < EXIT_BUDGET
    }

    /// The next fault: kinds come round in shuffled rounds, so each is
    /// injected about as often as the others; one that cannot run now
    /// (no `mariadbd` within its exit budget) misses this round.
    pub fn next(&mut self, rng: &mut StdRng) -> Fault {
        for _ in 0..self.kinds.len() * 2 + 1 {
            if self.deck.is_empty() {
                let mut round = self.kinds.clone();
                round.shuffle(rng);
                self.deck.extend(round);
            }
            let Some(kind) = self.deck.pop_front() else { break };
            if let Some(f) = self.plan(kind, rng) {
                return f;
            }
        }
        // Nothing else can run: a proxy kill always can.
        self.fault(Kind::Kill(Process::Proxy), vec![Hit { process: Process::Proxy, host: rng.random_range(0..self.hosts) }], rng)
    }

    fn fault(&self, kind: Kind, hits: Vec<Hit>, rng: &mut StdRng) -> Fault {
        let hold_ms = match kind {
            // Below and above Galera's suspect (2 s) and inactive (4 s) timeouts.
            Kind::Stop(Process::Mariadbd) => rng.random_range(500..=5000),
            Kind::Stop(_) => rng.random_range(300..=2500),
            Kind::NetCut => rng.random_range(1000..=5000),
            Kind::DiskFull => rng.random_range(1000..=4000),
            Kind::ClockJump => rng.random_range(1500..=4000),
            _ => 0,
        };
        let mut offsets = vec![Duration::ZERO];
        for _ in 1..hits.len() {
            offsets.push(Duration::from_millis(rng.random_range(0..=1000)));
        }
        offsets.sort();
        let magnitude = rng.random_range(30..=900);
        Fault {
            kind,
            hits,
            offsets,
            hold: Duration::from_millis(hold_ms),
            restart_after: Duration::from_millis(rng.random_range(200..=1500)),
            clock_offset_s: if rng.random_bool(0.5) { magnitude } else { -magnitude },
        }
    }

    fn plan(&mut self, kind: Kind, rng: &mut StdRng) -> Option<Fault> {
        let host = rng.random_range(0..self.hosts);
        let hits = match kind {
            Kind::Kill(Process::Mariadbd) => {
                let killable: Vec<usize> = (0..self.hosts).filter(|h| self.may_kill(*h)).collect();
                vec![Hit { process: Process::Mariadbd, host: *killable.get(rng.random_range(0..killable.len().max(1)))? }]
            }
            Kind::Kill(p) | Kind::Stop(p) => vec![Hit { process: p, host }],
            Kind::Burst => {
                let mut candidates = vec![Hit { process: Process::Server, host: 0 }];
                for h in 0..self.hosts {
                    candidates.push(Hit { process: Process::Agent, host: h });
                    candidates.push(Hit { process: Process::Proxy, host: h });
                    if self.may_kill(h) {
                        candidates.push(Hit { process: Process::Mariadbd, host: h });
                    }
                }
                candidates.shuffle(rng);
                candidates.truncate(rng.random_range(2..=3));
                candidates
            }
            Kind::NetCut => vec![Hit { process: Process::Mariadbd, host }],
            // A full disk may end a node more than once (voted out, then a
            // start that fails while the disk is still full): only a node
            // with room in its budget, charged one exit now (the exit seen
            // afterwards is charged too).
            Kind::DiskFull => {
                let room: Vec<usize> = (0..self.hosts).filter(|h| self.may_kill(*h)).collect();
                let host = *room.get(rng.random_range(0..room.len().max(1)))?;
                self.record_exit(host);
                vec![Hit { process: Process::Mariadbd, host }]
            }
            Kind::ClockJump => vec![Hit { process: Process::Agent, host: self.clock_host }],
        };
        let f = self.fault(kind, hits, rng);
        for h in f.mariadbd_kills().collect::<Vec<_>>() {
            self.record_exit(h);
        }
        Some(f)
    }
}

/// When the fault was healed, on the platform's clock (ms since the
/// epoch): reports made before it prove nothing about recovery.
pub struct Injected {
    pub healed_at_ms: i64,
}

fn pid_of(rig: &Rig, hit: Hit) -> Result<u32> {
    let pid = match hit.process {
        Process::Mariadbd => rig.mariadbd_pid(hit.host),
        Process::Agent => rig.agent_pid(hit.host),
        Process::Server => rig.server_pid(),
        Process::Proxy => rig.proxy_pid(hit.host),
    };
    pid.with_context(|| format!("no {} process found on host {}", hit.process.name(), hit.host + 1))
}

async fn kill(rig: &mut Rig, hit: Hit) -> Result<()> {
    match hit.process {
        Process::Agent => rig.kill_agent(hit.host),
        Process::Server => rig.kill_server(),
        _ => send(pid_of(rig, hit)?, "KILL")?,
    }
    Ok(())
}

/// Injects `f`, holds it, heals it, and restarts what the service manager
/// restarts (agents, the server); the agents restart the rest themselves.
pub async fn inject(rig: &mut Rig, f: &Fault) -> Result<Injected> {
    let started = Instant::now();
    match f.kind {
        Kind::Kill(_) | Kind::Burst => {
            for (hit, offset) in f.hits.iter().zip(&f.offsets) {
                tokio::time::sleep_until((started + *offset).into()).await;
                kill(rig, *hit).await?;
            }
            tokio::time::sleep(f.restart_after).await;
            for hit in &f.hits {
                match hit.process {
                    Process::Agent => rig.spawn_agent(hit.host)?,
                    Process::Server => rig.restart_server().await?,
                    _ => {}
                }
            }
        }
        Kind::Stop(_) => {
            let pid = pid_of(rig, f.hits[0])?;
            send(pid, "STOP")?;
            rig.stopped.add(pid);
            tokio::time::sleep(f.hold).await;
            send(pid, "CONT")?;
            rig.stopped.remove(pid);
        }
        Kind::NetCut => {
            let host = f.hits[0].host;
            let (cut, groups) = rig.cut().context("network cuts are not available")?;
            cut.cut(groups, host, &rig.hosts[host].ip)?;
            tokio::time::sleep(f.hold).await;
            cut.heal()?;
        }
        Kind::DiskFull => {
            let host = f.hits[0].host;
            let disk = rig.disks.get(host).and_then(Option::as_ref).context("no tmpfs data directory")?;
            let took = disk.fill()?;
            tracing::debug!(host, took, "data directory full");
            tokio::time::sleep(f.hold).await;
            disk.free()?;
        }
        Kind::ClockJump => {
            let clock = rig.clock.as_ref().context("libfaketime is not available")?;
            clock.set(f.clock_offset_s)?;
            // The library rereads the offset at most once a second.
            tokio::time::sleep(f.hold).await;
            clock.set(0)?;
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
    if matches!(f.kind, Kind::Kill(_) | Kind::Burst) && !rig.server_running() {
        bail!("the server was not restarted");
    }
    Ok(Injected { healed_at_ms: atoll_core::time::now_ms() })
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn every_kind_comes_round_and_no_node_is_killed_into_a_crash_loop() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut s = Scheduler::new(Kind::ALL.to_vec(), 3, 1);
        let faults: Vec<Fault> = (0..120).map(|_| s.next(&mut rng)).collect();
        for k in Kind::ALL {
            let n = faults.iter().filter(|f| f.kind == k).count();
            // A mariadbd kill or a full disk misses its turn once every
            // node used its budget.
            let least = if matches!(k, Kind::Kill(Process::Mariadbd) | Kind::DiskFull) { 1 } else { 8 };
            assert!(n >= least, "{k:?} came round {n} times");
        }
        // All within one window here: never more kills of a node than the budget.
        for host in 0..3 {
            let kills: usize = faults.iter().map(|f| f.mariadbd_kills().filter(|h| *h == host).count()).sum();
            assert!(kills <= EXIT_BUDGET, "host {host}: {kills} kills");
        }
        // Bursts are two or three kills within a second.
        for f in faults.iter().filter(|f| f.kind == Kind::Burst) {
            assert!((2..=3).contains(&f.hits.len()) && f.offsets.iter().all(|o| *o <= Duration::from_secs(1)), "{f:?}");
        }
    }

    #[test]
    fn a_seed_replays_the_same_schedule() {
        let plan = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut s = Scheduler::new(Kind::ALL.to_vec(), 3, 1);
            (0..30).map(|_| format!("{:?}", s.next(&mut rng))).collect::<Vec<_>>()
        };
        assert_eq!(plan(42), plan(42));
        assert_ne!(plan(42), plan(43));
    }
}
