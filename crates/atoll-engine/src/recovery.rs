//! Restarting a cluster that lost every node: reading where each node's data
//! got to, and choosing the one to bootstrap from.
//!
//! Bootstrapping from anything but the most advanced node throws away the
//! commits only the others had; bootstrapping two nodes splits the cluster in
//! two. Hence a conservative rule: the node Galera marked safe, else the
//! highest recovered seqno, and a refusal when histories differ.

use atoll_core::RecoveredPosition;

use crate::{EngineError, History};

/// `mariadbd` option that starts a new primary component from this node's
/// data (the bootstrap node only).
pub const BOOTSTRAP_ARG: &str = "--wsrep-new-cluster";

/// `mariadbd` option that recovers the position from InnoDB, logs it (see
/// [`parse_recovered`]) and exits.
pub const RECOVER_ARG: &str = "--wsrep-recover";

/// `mariadbd` option that starts a node at a recovered position, so it
/// asks its donor for the missing writesets only (IST) instead of a full
/// copy.
pub fn start_position_arg(p: &RecoveredPosition) -> String {
    format!("--wsrep-start-position={}:{}", p.uuid, p.seqno)
}

/// The cluster UUID of a data directory that never joined a cluster.
pub const NIL_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// Whether `s` is a UUID in its usual 8-4-4-4-12 hex form.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5 && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `UUID:SEQNO` of a `WSREP: Recovered position: UUID:SEQNO` line from
/// `mariadbd --wsrep-recover`. Given a whole log, the last such line counts
/// (the position recovery settled on). Anything after the seqno (a GTID
/// list after a comma, trailing words) is ignored.
pub fn parse_recovered(log_line: &str) -> Option<(String, i64)> {
    const MARK: &str = "WSREP: Recovered position:";
    log_line.lines().rev().find_map(|line| {
        let rest = line.split_once(MARK)?.1.trim_start();
        let token = rest.split(|c: char| c.is_whitespace() || c == ',').next()?;
        let (uuid, seqno) = token.rsplit_once(':')?;
        let seqno = seqno.parse::<i64>().ok()?;
        is_uuid(uuid).then(|| (uuid.to_ascii_lowercase(), seqno))
    })
}

/// The position recorded in a `grastate.dat`. `None` when the uuid or seqno
/// is missing or malformed; a file without `safe_to_bootstrap` (format 2.0)
/// reads as not safe.
pub fn parse_grastate(text: &str) -> Option<RecoveredPosition> {
    let mut uuid = None;
    let mut seqno = None;
    let mut safe = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match key.trim() {
            "uuid" if is_uuid(value) => uuid = Some(value.to_ascii_lowercase()),
            "uuid" => return None,
            "seqno" => seqno = Some(value.parse::<i64>().ok()?),
            "safe_to_bootstrap" => safe = value == "1",
            _ => {}
        }
    }
    Some(RecoveredPosition { uuid: uuid?, seqno: seqno?, safe_to_bootstrap: safe })
}

/// Whether a position says anything about the node's history.
fn has_history(p: &RecoveredPosition) -> bool {
    p.uuid != NIL_UUID && !p.uuid.is_empty()
}

/// The server to bootstrap a stopped cluster from.
///
/// Positions are `(server name, position)`; `None` means the agent could not
/// recover one. Order matters only for ties: the first listed wins.
/// 1. Positions with a different cluster UUID mean different histories
///    (a split brain, or a node re-seeded elsewhere): refused, naming them.
/// 2. A node with `safe_to_bootstrap` (the last to leave cleanly) wins.
/// 3. Else the highest seqno; seqno -1, a nil UUID or no position at all
///    count as unknown.
/// 4. No known position: refused, naming every server.
///
/// Servers whose position is unknown are passed over when others are known:
/// the caller decides whether to wait for them.
pub fn choose_bootstrap(positions: &[(String, Option<RecoveredPosition>)]) -> Result<String, EngineError> {
    let with_history: Vec<(&str, &RecoveredPosition)> =
        positions.iter().filter_map(|(name, p)| p.as_ref().filter(|p| has_history(p)).map(|p| (name.as_str(), p))).collect();

    let mut histories: Vec<History> = Vec::new();
    for (name, p) in &with_history {
        let uuid = p.uuid.to_ascii_lowercase();
        match histories.iter_mut().find(|h| h.uuid == uuid) {
            Some(h) => h.servers.push((*name).to_owned()),
            None => histories.push(History { uuid, servers: vec![(*name).to_owned()] }),
        }
    }
    if histories.len() > 1 {
        return Err(EngineError::DivergentHistories { histories });
    }

    // max_by_key keeps the last maximum; iterate in reverse so ties go to
    // the first listed.
    let best = |pick: &dyn Fn(&RecoveredPosition) -> bool| {
        with_history.iter().rev().filter(|(_, p)| pick(p)).max_by_key(|(_, p)| p.seqno).map(|(name, _)| (*name).to_owned())
    };
    if let Some(name) = best(&|p| p.safe_to_bootstrap) {
        return Ok(name);
    }
    if let Some(name) = best(&|p| p.seqno >= 0) {
        return Ok(name);
    }
    Err(EngineError::NoRecoverablePosition { servers: positions.iter().map(|(name, _)| name.clone()).collect() })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const A: &str = "8bb4a5a1-0c3e-11ef-9d1b-6f3f5ad1c2e4";
    const B: &str = "1e3da54e-3051-11ee-bbb6-cb65a0f86cdc";

    fn pos(uuid: &str, seqno: i64, safe: bool) -> Option<RecoveredPosition> {
        Some(RecoveredPosition { uuid: uuid.into(), seqno, safe_to_bootstrap: safe })
    }

    fn servers(ps: Vec<Option<RecoveredPosition>>) -> Vec<(String, Option<RecoveredPosition>)> {
        ps.into_iter().enumerate().map(|(i, p)| (format!("orders-{}", i + 1), p)).collect()
    }

    #[test]
    fn safe_flag_wins_over_a_higher_seqno() {
        let s = servers(vec![pos(A, 120, false), pos(A, 100, true), pos(A, 90, false)]);
        assert_eq!(choose_bootstrap(&s).unwrap(), "orders-2");
    }

    #[test]
    fn highest_seqno_wins_and_ties_go_to_the_first() {
        let s = servers(vec![pos(A, 1122, false), pos(A, 1127, false), pos(A, 1124, false)]);
        assert_eq!(choose_bootstrap(&s).unwrap(), "orders-2");
        let s = servers(vec![pos(A, 7, false), pos(A, 9, false), pos(A, 9, false)]);
        assert_eq!(choose_bootstrap(&s).unwrap(), "orders-2");
        let s = servers(vec![pos(A, 5, false), None, pos(A, -1, false)]);
        assert_eq!(choose_bootstrap(&s).unwrap(), "orders-1");
    }

    #[test]
    fn all_unknown_is_refused_naming_every_server() {
        let s = servers(vec![None, pos(A, -1, false), pos(NIL_UUID, -1, false)]);
        let err = choose_bootstrap(&s).unwrap_err();
        assert_eq!(err, EngineError::NoRecoverablePosition { servers: vec!["orders-1".into(), "orders-2".into(), "orders-3".into()] });
        let msg = err.to_string();
        assert!(msg.contains("orders-1, orders-2, orders-3") && msg.contains("--wsrep-recover"), "{msg}");
        assert!(matches!(choose_bootstrap(&[]), Err(EngineError::NoRecoverablePosition { .. })));
    }

    #[test]
    fn different_histories_are_refused() {
        let s = servers(vec![pos(A, 10, false), pos(B, 50, true), pos(A, 12, false)]);
        let err = choose_bootstrap(&s).unwrap_err();
        assert_eq!(
            err,
            EngineError::DivergentHistories {
                histories: vec![
                    History { uuid: A.into(), servers: vec!["orders-1".into(), "orders-3".into()] },
                    History { uuid: B.into(), servers: vec!["orders-2".into()] },
                ]
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("different cluster histories") && msg.contains("split-brain"), "{msg}");
        assert!(msg.contains(&format!("{A} (orders-1, orders-3)")) && msg.contains(&format!("{B} (orders-2)")), "{msg}");
        // A crashed node (seqno -1) still tells its history.
        let s = servers(vec![pos(A, 10, false), pos(B, -1, false)]);
        assert!(matches!(choose_bootstrap(&s), Err(EngineError::DivergentHistories { .. })));
        // A never-initialised node does not.
        let s = servers(vec![pos(A, 10, false), pos(NIL_UUID, -1, false)]);
        assert_eq!(choose_bootstrap(&s).unwrap(), "orders-1");
    }

    #[test]
    fn recovered_position_from_the_log() {
        let line = "2024-05-02 10:45:06 0 [Note] WSREP: Recovered position: 1e3da54e-3051-11ee-bbb6-cb65a0f86cdc:20639";
        assert_eq!(parse_recovered(line), Some((B.to_owned(), 20639)));
        let log = format!(
            "2024-05-02 10:45:05 0 [Note] InnoDB: Starting crash recovery from checkpoint LSN=47284\n\
             2024-05-02 10:45:06 0 [Note] WSREP: Recovered position: {A}:3\n\
             2024-05-02 10:45:06 0 [Note] WSREP: Recovered position: {A}:9,0-1-9\n\
             2024-05-02 10:45:06 0 [Note] InnoDB: Starting shutdown...\n"
        );
        assert_eq!(parse_recovered(&log), Some((A.to_owned(), 9)));
        assert_eq!(parse_recovered(&format!("[Note] WSREP: Recovered position: {NIL_UUID}:-1")), Some((NIL_UUID.to_owned(), -1)));
        for bad in ["", "InnoDB started", "WSREP: Recovered position: not-a-uuid:5", &format!("WSREP: Recovered position: {A}:x")] {
            assert_eq!(parse_recovered(bad), None, "{bad}");
        }
    }

    #[test]
    fn grastate_files() {
        let clean =
            "# GALERA saved state\nversion: 2.1\nuuid:    9acf4d34-acdb-11e6-bcc3-d3e36276629f\nseqno:   1352\nsafe_to_bootstrap: 1\n";
        assert_eq!(
            parse_grastate(clean),
            Some(RecoveredPosition { uuid: "9acf4d34-acdb-11e6-bcc3-d3e36276629f".into(), seqno: 1352, safe_to_bootstrap: true })
        );
        let crashed =
            "# GALERA saved state\nversion: 2.1\nuuid:    9acf4d34-acdb-11e6-bcc3-d3e36276629f\nseqno:   -1\nsafe_to_bootstrap: 0\n";
        let p = parse_grastate(crashed).unwrap();
        assert_eq!((p.seqno, p.safe_to_bootstrap), (-1, false));
        let old = "# GALERA saved state\nversion: 2.0\nuuid: 9acf4d34-acdb-11e6-bcc3-d3e36276629f\nseqno: 7\ncert_index:\n";
        assert_eq!(parse_grastate(old).unwrap().seqno, 7);
        assert!(!parse_grastate(old).unwrap().safe_to_bootstrap);
        assert_eq!(parse_grastate(""), None);
        assert_eq!(parse_grastate("uuid: nope\nseqno: 1\n"), None);
        assert_eq!(parse_grastate("uuid: 9acf4d34-acdb-11e6-bcc3-d3e36276629f\n"), None);
    }
}
