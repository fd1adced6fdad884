//! The checks after every fault: each acknowledged write is on every node,
//! and the bank's invariant holds there: the total is what it was, and
//! every account's balance is its opening balance plus its ledger rows
//! (a transfer's balance updates and its ledger row commit together or
//! not at all). Reads go to each node directly as causal reads, so a
//! node that has not yet applied what another acknowledged is waited
//! for, not reported.
//!
//! [`compare`] is pure and is what decides; [`planted_losses_are_caught`]
//! runs it on the live data with writes that never happened, so a checker
//! that could not fail would fail the campaign.

use std::collections::{BTreeMap, HashSet};

use anyhow::{Context, Result};
use sqlx::{Executor, MySqlConnection, Row};

use super::workload::{ACCOUNTS, DB, Endpoint, Ledger, OPENING_BALANCE, Transfer, connect_options};

/// What one node holds.
#[derive(Debug, Default, Clone)]
pub struct NodeData {
    pub ids: HashSet<i64>,
    pub transfers: Vec<Transfer>,
    pub balances: BTreeMap<i64, i64>,
}

/// What a comparison found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    pub acked_ids: usize,
    pub acked_transfers: usize,
    pub lost_ids: Vec<i64>,
    pub lost_transfers: Vec<i64>,
    /// Broken invariants, in words.
    pub broken: Vec<String>,
}

impl Findings {
    pub fn lost(&self) -> usize {
        self.lost_ids.len() + self.lost_transfers.len()
    }
    pub fn ok(&self) -> bool {
        self.lost() == 0 && self.broken.is_empty()
    }
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.lost_ids.is_empty() {
            parts.push(format!(
                "{} acknowledged ids lost (first: {:?})",
                self.lost_ids.len(),
                &self.lost_ids[..self.lost_ids.len().min(5)]
            ));
        }
        if !self.lost_transfers.is_empty() {
            parts.push(format!(
                "{} acknowledged transfers lost (first: {:?})",
                self.lost_transfers.len(),
                &self.lost_transfers[..self.lost_transfers.len().min(5)]
            ));
        }
        parts.extend(self.broken.iter().cloned());
        if parts.is_empty() { "ok".into() } else { parts.join("; ") }
    }
}

/// Compares what was acknowledged (`acked`) with what a node holds.
pub fn compare(acked: &Ledger, node: &NodeData) -> Findings {
    let mut f = Findings { acked_ids: acked.acked_ids.len(), acked_transfers: acked.acked_transfers.len(), ..Findings::default() };
    f.lost_ids = acked.acked_ids.iter().copied().filter(|id| !node.ids.contains(id)).collect();
    let present: HashSet<i64> = node.transfers.iter().map(|t| t.id).collect();
    f.lost_transfers = acked.acked_transfers.iter().map(|t| t.id).filter(|id| !present.contains(id)).collect();
    // A ledger row must be the transfer that was asked for.
    let asked: BTreeMap<i64, &Transfer> = acked.acked_transfers.iter().map(|t| (t.id, t)).collect();
    for t in &node.transfers {
        if let Some(a) = asked.get(&t.id)
            && *a != t
        {
            f.broken.push(format!("transfer {} reads {t:?}, was {a:?}", t.id));
        }
    }
    let total: i64 = node.balances.values().sum();
    if total != ACCOUNTS * OPENING_BALANCE {
        f.broken.push(format!("the accounts hold {total} in all, not {}", ACCOUNTS * OPENING_BALANCE));
    }
    if node.balances.len() != ACCOUNTS as usize {
        f.broken.push(format!("{} accounts, not {ACCOUNTS}", node.balances.len()));
    }
    let mut expected: BTreeMap<i64, i64> = (1..=ACCOUNTS).map(|a| (a, OPENING_BALANCE)).collect();
    for t in &node.transfers {
        *expected.entry(t.src).or_default() -= t.amount;
        *expected.entry(t.dst).or_default() += t.amount;
    }
    for (account, want) in &expected {
        let have = node.balances.get(account).copied().unwrap_or_default();
        if have != *want {
            f.broken.push(format!("account {account} holds {have}, its ledger says {want}"));
        }
    }
    f
}

/// Reads a node's data directly, with causal reads.
pub async fn read_node(ep: &Endpoint, user: &str, password: &str) -> Result<NodeData> {
    let opts = connect_options(ep, user, password, Some(DB));
    let mut c = tokio::time::timeout(std::time::Duration::from_secs(5), <MySqlConnection as sqlx::Connection>::connect_with(&opts))
        .await
        .context("connecting timed out")?
        .with_context(|| format!("connecting to {}:{}", ep.host, ep.port))?;
    read_all(&mut c).await
}

async fn read_all(c: &mut MySqlConnection) -> Result<NodeData> {
    // Reads wait until the node has applied everything committed before;
    // the wait happens at a read, which comes before the snapshot.
    for statement in atoll_engine::sql::causal_read() {
        c.execute(sqlx::AssertSqlSafe(statement)).await?;
    }
    c.execute("SELECT COUNT(*) FROM accounts").await?;
    // One snapshot for ledger rows and balances alike.
    c.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT").await?;
    let ids = sqlx::query("SELECT id FROM acks").fetch_all(&mut *c).await?.iter().map(|r| r.get::<i64, _>(0)).collect();
    let transfers = sqlx::query("SELECT id, src, dst, amount FROM transfers")
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(|r| Transfer { id: r.get(0), src: r.get(1), dst: r.get(2), amount: r.get(3) })
        .collect();
    let balances = sqlx::query("SELECT id, balance FROM accounts").fetch_all(&mut *c).await?.iter().map(|r| (r.get(0), r.get(1))).collect();
    c.execute("COMMIT").await?;
    Ok(NodeData { ids, transfers, balances })
}

/// Checks `acked` against every node in `nodes`; `(node, findings)` each.
pub async fn check_nodes(acked: &Ledger, nodes: &[(String, Endpoint)], user: &str, password: &str) -> Result<Vec<(String, Findings)>> {
    let mut out = Vec::new();
    for (name, ep) in nodes {
        let data = read_node(ep, user, password).await.with_context(|| format!("reading {name}"))?;
        out.push((name.clone(), compare(acked, &data)));
    }
    Ok(out)
}

/// The checker's own test, on the live cluster: a ledger that claims an
/// id, a transfer and a balance change that never happened must be
/// reported lost and broken. `Ok` with what was caught, `Err` if it was not.
pub async fn planted_losses_are_caught(acked: &Ledger, node: &Endpoint, user: &str, password: &str) -> Result<String> {
    let mut data = read_node(node, user, password).await?;
    let mut planted = acked.clone();
    planted.acked_ids.push(-1);
    planted.acked_transfers.push(Transfer { id: -2, src: 1, dst: 2, amount: 5 });
    let f = compare(&planted, &data);
    anyhow::ensure!(f.lost_ids == [-1] && f.lost_transfers == [-2], "planted losses not reported: {f:?}");
    // A balance changed without its ledger row.
    if let Some(b) = data.balances.get_mut(&1) {
        *b += 7;
    }
    let f = compare(acked, &data);
    anyhow::ensure!(f.broken.len() >= 2, "a balance changed without its ledger row was not reported: {f:?}");
    Ok(format!(
        "checker self-test: 1 planted id and 1 planted transfer reported lost, a planted balance change reported as {} broken invariants",
        f.broken.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ids: &[i64], transfers: &[Transfer]) -> NodeData {
        let mut balances: BTreeMap<i64, i64> = (1..=ACCOUNTS).map(|a| (a, OPENING_BALANCE)).collect();
        for t in transfers {
            *balances.entry(t.src).or_default() -= t.amount;
            *balances.entry(t.dst).or_default() += t.amount;
        }
        NodeData { ids: ids.iter().copied().collect(), transfers: transfers.to_vec(), balances }
    }

    #[test]
    fn a_missing_acknowledged_write_is_lost_and_an_unknown_one_is_not() {
        let t1 = Transfer { id: 10, src: 1, dst: 2, amount: 3 };
        let t2 = Transfer { id: 11, src: 2, dst: 3, amount: 4 };
        let acked = Ledger { acked_ids: vec![1, 2, 3], acked_transfers: vec![t1, t2], ..Ledger::default() };
        // 4 and transfer 12 were never acknowledged (unknown): present is fine.
        let t3 = Transfer { id: 12, src: 3, dst: 1, amount: 9 };
        assert!(compare(&acked, &node(&[1, 2, 3, 4], &[t1, t2, t3])).ok());
        let f = compare(&acked, &node(&[1, 3], &[t2]));
        assert_eq!((f.lost_ids, f.lost_transfers), (vec![2], vec![10]));
    }

    #[test]
    fn balances_must_match_the_ledger_and_the_total() {
        let t = Transfer { id: 10, src: 1, dst: 2, amount: 3 };
        let acked = Ledger { acked_transfers: vec![t], ..Ledger::default() };
        let mut n = node(&[], &[t]);
        assert!(compare(&acked, &n).ok());
        // The debit without the credit: total and account 2 are both wrong.
        if let Some(b) = n.balances.get_mut(&2) {
            *b -= 3;
        }
        let f = compare(&acked, &n);
        assert_eq!(f.broken.len(), 2, "{f:?}");
        // A ledger row that differs from what was asked.
        let n = node(&[], &[Transfer { amount: 4, ..t }]);
        assert!(!compare(&acked, &n).ok());
    }
}
