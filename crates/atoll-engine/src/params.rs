//! The MariaDB settings users may tune, and the rules for their values.
//!
//! Only what is in the catalog can be set: an unknown key is far more often a
//! typo than a wish, and a typo in `my.cnf` stops `mariadbd` at start-up on
//! every node at once. Keys Atoll writes itself (paths, addresses, Galera
//! wiring) are refused with a reason instead, so a user cannot break the
//! cluster's plumbing through its parameters.

use std::collections::BTreeMap;
use std::fmt;

use atoll_core::Durability;
use serde::{Deserialize, Serialize};

/// What is wrong with one parameter, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamProblem {
    /// The key as the user wrote it, so they can find it in their input.
    pub key: String,
    /// A complete sentence fragment that names the key: shown on its own.
    pub message: String,
}

impl ParamProblem {
    fn new(key: &str, message: impl Into<String>) -> Self {
        Self { key: key.to_owned(), message: message.into() }
    }
}

impl fmt::Display for ParamProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The shape a parameter's value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole number in an inclusive range.
    Int { min: u64, max: u64 },
    /// A byte count, optionally with a K, M, G or T suffix (either case, powers
    /// of 1024, as MariaDB reads them); the range is in bytes.
    Size { min: u64, max: u64 },
    /// Seconds with up to six decimals (MariaDB keeps microseconds); the range
    /// is in whole seconds.
    Seconds { min: u64, max: u64 },
    /// `ON`, `OFF`, `1` or `0`, in any case.
    Bool,
    /// One of these words, in any case.
    Enum(&'static [&'static str]),
    /// A character set or collation name: lowercase letters, digits, `_`.
    Name,
    /// A comma-separated list of SQL modes, possibly empty.
    SqlModes,
    /// `ON` (the default base name) or a base name for the binary log files,
    /// kept inside the data directory.
    LogBin,
}

/// One tunable setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamDef {
    /// The canonical key, with underscores.
    pub name: &'static str,
    pub kind: Kind,
    /// Whether a new value takes effect only after a restart (else `SET GLOBAL`
    /// applies it online). Facts of MariaDB 10.11.
    pub restart: bool,
    /// Why the accepted values are narrower than MariaDB's, when they are;
    /// added to a problem so the refusal does not look arbitrary.
    pub note: &'static str,
}

const K: u64 = 1 << 10;
const M: u64 = 1 << 20;
const G: u64 = 1 << 30;
const T: u64 = 1 << 40;
const YEAR_SECONDS: u64 = 31_536_000;

const fn def(name: &'static str, kind: Kind, restart: bool) -> ParamDef {
    ParamDef { name, kind, restart, note: "" }
}

/// The catalog, sorted by name (a test keeps it so).
static CATALOG: &[ParamDef] = &[
    // How long binary logs are kept: a standby further behind than this needs a new copy.
    def("binlog_expire_logs_seconds", Kind::Int { min: 0, max: u32::MAX as u64 }, false),
    ParamDef { name: "binlog_format", kind: Kind::Enum(&["ROW"]), restart: false, note: "Galera replicates row events only" },
    def("character_set_server", Kind::Name, false),
    def("collation_server", Kind::Name, false),
    def("innodb_buffer_pool_size", Kind::Size { min: 5 * M, max: T }, false),
    def("innodb_flush_log_at_trx_commit", Kind::Enum(&["0", "1", "2"]), false),
    def("innodb_io_capacity", Kind::Int { min: 100, max: u64::MAX }, false),
    def("innodb_lock_wait_timeout", Kind::Int { min: 0, max: G }, false),
    // Resizable online since MariaDB 10.9 (MDEV-27812).
    def("innodb_log_file_size", Kind::Size { min: 4 * M, max: 512 * G }, false),
    def("interactive_timeout", Kind::Int { min: 1, max: YEAR_SECONDS }, false),
    def("log_bin", Kind::LogBin, true),
    def("long_query_time", Kind::Seconds { min: 0, max: YEAR_SECONDS }, false),
    def("max_allowed_packet", Kind::Size { min: K, max: G }, false),
    def("max_connections", Kind::Int { min: 1, max: 100_000 }, false),
    def("max_heap_table_size", Kind::Size { min: 16 * K, max: u64::MAX }, false),
    def("performance_schema", Kind::Bool, true),
    ParamDef {
        name: "query_cache_size",
        kind: Kind::Size { min: 0, max: 0 },
        restart: false,
        note: "the query cache does not work with Galera replication and must stay off",
    },
    def("read_only", Kind::Bool, false),
    def("slow_query_log", Kind::Bool, false),
    def("sql_mode", Kind::SqlModes, false),
    def("sync_binlog", Kind::Int { min: 0, max: u32::MAX as u64 }, false),
    def("table_open_cache", Kind::Int { min: 1, max: 1_048_576 }, false),
    def("thread_cache_size", Kind::Int { min: 0, max: 16_384 }, false),
    def("tmp_table_size", Kind::Size { min: K, max: u64::MAX }, false),
    def("wait_timeout", Kind::Int { min: 1, max: YEAR_SECONDS }, false),
    def("wsrep_slave_threads", Kind::Int { min: 1, max: 512 }, false),
    def("wsrep_sync_wait", Kind::Int { min: 0, max: 15 }, false),
];

/// Every parameter users may set, sorted by name (for listings and help).
pub fn catalog() -> &'static [ParamDef] {
    CATALOG
}

/// The catalog entry for `key` (`-` or `_`, any case).
pub fn lookup(key: &str) -> Option<&'static ParamDef> {
    let key = normalize_key(key);
    CATALOG.iter().find(|d| d.name == key)
}

/// MariaDB treats `-` and `_` in option names alike; Atoll also ignores case
/// and surrounding spaces, and writes the result.
pub fn normalize_key(key: &str) -> String {
    key.trim().to_ascii_lowercase().replace('-', "_")
}

/// Keys (canonical form) Atoll writes into every config, with the reason a
/// user may not set them. Prefixes end in `*`.
const MANAGED: &[(&str, &str)] = &[
    ("datadir", "the server's files live in the directory Atoll gives it"),
    ("socket", "the server's files live in the directory Atoll gives it"),
    ("pid_file", "the agent finds the process through it"),
    ("tmpdir", "the server's files live in the directory Atoll gives it"),
    ("log_error", "the agent reads the error log from the server's directory"),
    ("bind_address", "addresses come from the cluster's topology"),
    ("port", "ports come from the cluster's topology"),
    ("user", "rsync state transfer needs the server to run as mysql"),
    ("server_id", "Atoll assigns it per cluster"),
    ("wsrep_on", "Galera replication is what makes the cluster"),
    ("wsrep_provider*", "Atoll wires the Galera provider and tunes its failure detection"),
    ("wsrep_cluster_*", "Atoll names the cluster and lists its members"),
    ("wsrep_node_*", "Atoll names each node and its address"),
    ("wsrep_sst_*", "Atoll chooses how state transfers run"),
    ("default_storage_engine", "Galera replicates InnoDB tables only"),
    ("innodb_autoinc_lock_mode", "Galera needs interleaved auto-increment locks (2)"),
];

/// Why `key` (canonical form) is Atoll's to set, if it is.
fn managed_reason(key: &str) -> Option<&'static str> {
    MANAGED.iter().find_map(|(pattern, why)| {
        let hit = match pattern.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => key == *pattern,
        };
        hit.then_some(*why)
    })
}

/// Every problem in `params` at once: unknown or managed keys, keys given
/// twice in different spellings, values of the wrong shape or out of range,
/// and settings the durability profile forbids.
pub fn check(params: &BTreeMap<String, String>, durability: Durability) -> Vec<ParamProblem> {
    let mut problems = Vec::new();
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for (key, value) in params {
        let canon = normalize_key(key);
        if let Some(first) = seen.insert(canon.clone(), key) {
            problems.push(ParamProblem::new(key, format!("parameter {canon} is given twice (as {first} and {key}): keep one")));
            continue;
        }
        if let Some(why) = managed_reason(&canon) {
            problems.push(ParamProblem::new(key, format!("parameter {canon} is managed by atoll: {why}")));
            continue;
        }
        let Some(def) = lookup(&canon) else {
            problems.push(ParamProblem::new(key, unknown_message(&canon)));
            continue;
        };
        if let Err(why) = check_value(def, value) {
            problems.push(ParamProblem::new(key, why));
            continue;
        }
        if durability == Durability::Durable
            && let Some(p) = durable_problem(def.name, value)
        {
            problems.push(ParamProblem::new(key, p));
        }
    }
    let named = |canon: &str| value_of(params, canon).filter(|v| lookup(canon).is_some_and(|d| check_value(d, v).is_ok()));
    if let (Some(cs), Some(coll)) = (named("character_set_server"), named("collation_server"))
        && !collation_fits(cs, coll)
    {
        let key = params.keys().find(|k| normalize_key(k) == "collation_server").map_or("collation_server", |k| k.as_str());
        problems.push(ParamProblem::new(
            key,
            format!("collation_server {coll} does not belong to character_set_server {cs}: use a collation named {cs}_…"),
        ));
    }
    problems
}

/// The value of a canonical key in user input, whatever its spelling.
pub(crate) fn value_of<'a>(params: &'a BTreeMap<String, String>, canon: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| normalize_key(k) == canon).map(|(_, v)| v.as_str())
}

/// The durable profile promises that an acknowledged commit is on disk;
/// these two settings would silently break that promise.
fn durable_problem(name: &str, value: &str) -> Option<String> {
    let broken = match name {
        "innodb_flush_log_at_trx_commit" => value.trim() != "1",
        "sync_binlog" => value.trim() != "1",
        _ => false,
    };
    broken.then(|| {
        format!(
            "{name}={value} is refused by the durable profile, which acknowledges a commit only once it is on disk (Galera has lost acknowledged writes without it): to trade that for speed, choose the fast durability profile"
        )
    })
}

/// utf8 is an alias of utf8mb3, and collations may use either name; the
/// Unicode 14 collations of MariaDB 11 name no character set.
fn collation_fits(charset: &str, collation: &str) -> bool {
    let charset = charset.to_ascii_lowercase();
    let collation = collation.to_ascii_lowercase();
    let aliases: &[&str] = if charset == "utf8" || charset == "utf8mb3" { &["utf8", "utf8mb3"] } else { &[charset.as_str()] };
    collation.starts_with("uca1400_")
        || (charset == "binary" && collation == "binary")
        || aliases.iter().any(|a| collation.strip_prefix(a).is_some_and(|rest| rest.starts_with('_')))
}

fn unknown_message(key: &str) -> String {
    match closest(key) {
        Some(best) => format!("unknown parameter {key}: did you mean {best}?"),
        None => {
            let names: Vec<&str> = CATALOG.iter().map(|d| d.name).collect();
            format!("unknown parameter {key}: Atoll knows {}", names.join(", "))
        }
    }
}

/// The catalog key nearest to `key` by edit distance, when near enough to be
/// a plausible typo (at most a third of the key's length, and 3 at most).
fn closest(key: &str) -> Option<&'static str> {
    let limit = (key.chars().count() / 3).clamp(1, 3);
    CATALOG.iter().map(|d| (edit_distance(key, d.name), d.name)).filter(|(d, _)| *d <= limit).min_by_key(|(d, _)| *d).map(|(_, n)| n)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut row = Vec::with_capacity(b.len() + 1);
        row.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            row.push(substitute.min(prev[j + 1] + 1).min(row[j] + 1));
        }
        prev = row;
    }
    prev[b.len()]
}

/// Characters that would change how `my.cnf` is read (a new line or group, a
/// comment, quoting, escapes): refused rather than escaped, since no
/// parameter in the catalog needs them.
fn unsafe_char(value: &str) -> Option<char> {
    value.chars().find(|c| c.is_control() || matches!(c, '#' | '[' | ']' | '"' | '\'' | '`' | '\\'))
}

/// Checks one value against its definition; the error names the key, the
/// value and what would be accepted.
pub fn check_value(def: &ParamDef, value: &str) -> Result<(), String> {
    let name = def.name;
    if let Some(c) = unsafe_char(value) {
        return Err(format!("value of {name} contains {c:?}: new lines, #, [, ], quotes and backslashes are not allowed"));
    }
    let note = if def.note.is_empty() { String::new() } else { format!(" ({})", def.note) };
    match def.kind {
        Kind::Int { min, max } => match value.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(()),
            Ok(_) => Err(format!("{name}={value} is out of range: use {}{note}", range_words(min, max, |n| n.to_string()))),
            Err(_) => Err(format!("{name}={value} is not a whole number: use {}{note}", range_words(min, max, |n| n.to_string()))),
        },
        Kind::Size { min, max } => match parse_size(value) {
            Some(n) if (min..=max).contains(&n) => Ok(()),
            Some(_) => Err(format!("{name}={value} is out of range: use {}{note}", range_words(min, max, size_words))),
            None => Err(format!(
                "{name}={value} is not a size: use bytes or a number with K, M, G or T, {}{note}",
                range_words(min, max, size_words)
            )),
        },
        Kind::Seconds { min, max } => match parse_seconds(value) {
            Some((whole, frac)) if whole >= min && (whole < max || (whole == max && !frac)) => Ok(()),
            Some(_) => Err(format!("{name}={value} is out of range: use {} seconds{note}", range_words(min, max, |n| n.to_string()))),
            None => Err(format!("{name}={value} is not a number of seconds (e.g. 2 or 0.5){note}")),
        },
        Kind::Bool => {
            if ["ON", "OFF", "1", "0"].iter().any(|b| value.eq_ignore_ascii_case(b)) {
                Ok(())
            } else {
                Err(format!("{name}={value} is not a switch: use ON or OFF{note}"))
            }
        }
        Kind::Enum(choices) => {
            if choices.iter().any(|c| value.eq_ignore_ascii_case(c)) {
                Ok(())
            } else if let [only] = choices {
                Err(format!("{name}={value} is refused: only {only} is allowed{note}"))
            } else {
                Err(format!("{name}={value} is refused: use one of {}{note}", choices.join(", ")))
            }
        }
        Kind::Name => {
            if !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                Ok(())
            } else {
                Err(format!("{name}={value} is not a character set or collation name (letters, digits and _){note}"))
            }
        }
        Kind::SqlModes => {
            let bad: Vec<&str> = value
                .split(',')
                .filter(|m| !value.is_empty() && (m.is_empty() || !m.chars().all(|c| c.is_ascii_alphabetic() || c == '_')))
                .collect();
            if bad.is_empty() {
                Ok(())
            } else {
                Err(format!("{name}={value} is not a comma-separated list of SQL modes (e.g. STRICT_TRANS_TABLES,NO_ZERO_DATE){note}"))
            }
        }
        Kind::LogBin => {
            let basename = !value.is_empty()
                && !value.starts_with('.')
                && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if basename {
                Ok(())
            } else {
                Err(format!(
                    "{name}={value} is refused: use ON or a base name for the binary log files (letters, digits, _ - .), kept in the data directory{note}"
                ))
            }
        }
    }
}

/// "between A and B", or "exactly A" / "at least A" when the range says so.
fn range_words(min: u64, max: u64, show: impl Fn(u64) -> String) -> String {
    if min == max {
        format!("exactly {}", show(min))
    } else if max == u64::MAX {
        format!("at least {}", show(min))
    } else {
        format!("between {} and {}", show(min), show(max))
    }
}

/// A byte count the way a person would write it in `my.cnf`.
fn size_words(n: u64) -> String {
    for (unit, suffix) in [(T, "T"), (G, "G"), (M, "M"), (K, "K")] {
        if n >= unit && n.is_multiple_of(unit) {
            return format!("{}{suffix}", n / unit);
        }
    }
    n.to_string()
}

/// Reads a size as MariaDB does: digits, then an optional K, M, G or T (either
/// case) multiplying by powers of 1024. `None` for anything else, including
/// decimals and values that overflow.
pub fn parse_size(value: &str) -> Option<u64> {
    let (digits, factor) = match value.chars().last()?.to_ascii_uppercase() {
        'K' => (&value[..value.len() - 1], K),
        'M' => (&value[..value.len() - 1], M),
        'G' => (&value[..value.len() - 1], G),
        'T' => (&value[..value.len() - 1], T),
        _ => (value, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(factor)
}

/// Whole seconds, and whether a non-zero fraction follows.
fn parse_seconds(value: &str) -> Option<(u64, bool)> {
    let (whole, frac) = value.split_once('.').unwrap_or((value, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 6 || (value.contains('.') && frac.is_empty()) {
        return None;
    }
    Some((whole.parse().ok()?, frac.bytes().any(|b| b != b'0')))
}

/// Whether changing `key` needs a restart; `None` when it is not a parameter
/// users may set (unknown, or managed by Atoll).
pub fn needs_restart(key: &str) -> Option<bool> {
    lookup(key).map(|d| d.restart)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn problems(pairs: &[(&str, &str)]) -> Vec<ParamProblem> {
        check(&params(pairs), Durability::Durable)
    }

    #[test]
    fn catalog_is_sorted_unique_and_has_what_users_tune() {
        let names: Vec<&str> = catalog().iter().map(|d| d.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
        for needed in [
            "innodb_buffer_pool_size",
            "max_connections",
            "innodb_log_file_size",
            "innodb_flush_log_at_trx_commit",
            "sync_binlog",
            "log_bin",
            "binlog_format",
            "wait_timeout",
            "interactive_timeout",
            "max_allowed_packet",
            "innodb_io_capacity",
            "tmp_table_size",
            "max_heap_table_size",
            "table_open_cache",
            "thread_cache_size",
            "long_query_time",
            "slow_query_log",
            "character_set_server",
            "collation_server",
            "sql_mode",
            "wsrep_slave_threads",
            "wsrep_sync_wait",
            "read_only",
            "innodb_lock_wait_timeout",
            "query_cache_size",
            "performance_schema",
        ] {
            assert!(lookup(needed).is_some(), "{needed} missing from the catalog");
        }
        // No catalog key may also be managed: it could never be set.
        for d in catalog() {
            assert!(managed_reason(d.name).is_none(), "{} is both tunable and managed", d.name);
        }
    }

    #[test]
    fn sound_params_pass_in_either_spelling() {
        let p = params(&[
            ("innodb-buffer-pool-size", "256M"),
            ("max_connections", "500"),
            ("slow_query_log", "on"),
            ("long_query_time", "0.5"),
            ("sql_mode", "STRICT_TRANS_TABLES,NO_ZERO_DATE"),
            ("character_set_server", "utf8mb4"),
            ("collation_server", "utf8mb4_unicode_ci"),
            ("log_bin", "ON"),
            ("binlog_format", "row"),
            ("query_cache_size", "0"),
            ("wsrep_sync_wait", "15"),
        ]);
        assert_eq!(check(&p, Durability::Durable), vec![]);
        assert_eq!(check(&params(&[("sql_mode", "")]), Durability::Durable), vec![]);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Some(64 * M));
        assert_eq!(parse_size("1G"), Some(G));
        assert_eq!(parse_size("5m"), Some(5 * M));
        assert_eq!(parse_size("2k"), Some(2 * K));
        assert_eq!(parse_size("1T"), Some(T));
        assert_eq!(parse_size("4096"), Some(4096));
        for bad in ["abc", "", "M", "1.5G", "-1M", "64MB", " 64M", "99999999999999999999", "20000000T"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
        let buffer_pool = lookup("innodb_buffer_pool_size").unwrap();
        assert!(check_value(buffer_pool, "5m").is_ok());
        assert!(check_value(buffer_pool, "1T").is_ok());
        let low = check_value(buffer_pool, "4M").unwrap_err();
        assert!(low.contains("between 5M and 1T"), "{low}");
        assert!(check_value(buffer_pool, "2T").unwrap_err().contains("out of range"));
        let abc = check_value(buffer_pool, "abc").unwrap_err();
        assert!(abc.contains("not a size") && abc.contains("between 5M and 1T"), "{abc}");
    }

    #[test]
    fn ranges_are_named() {
        let p = problems(&[("max_connections", "0"), ("wsrep_slave_threads", "1000"), ("max_allowed_packet", "2G"), ("wait_timeout", "x")]);
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p.iter().any(|p| p.key == "max_connections" && p.message.contains("between 1 and 100000")));
        assert!(p.iter().any(|p| p.key == "wsrep_slave_threads" && p.message.contains("between 1 and 512")));
        assert!(p.iter().any(|p| p.key == "max_allowed_packet" && p.message.contains("between 1K and 1G")));
        assert!(p.iter().any(|p| p.key == "wait_timeout" && p.message.contains("not a whole number")));
        assert!(problems(&[("innodb_io_capacity", "50")])[0].message.contains("at least 100"));
        assert!(problems(&[("long_query_time", "31536000.5")])[0].message.contains("out of range"));
        assert!(problems(&[("long_query_time", "1.")])[0].message.contains("not a number of seconds"));
    }

    #[test]
    fn galera_only_values() {
        let p = problems(&[("binlog_format", "STATEMENT"), ("query_cache_size", "64M")]);
        assert_eq!(p.len(), 2);
        assert!(p[0].message.contains("only ROW") && p[0].message.contains("Galera replicates row events only"), "{}", p[0]);
        assert!(p[1].message.contains("exactly 0") && p[1].message.contains("query cache"), "{}", p[1]);
        assert!(problems(&[("slow_query_log", "yes")])[0].message.contains("ON or OFF"));
        assert!(problems(&[("innodb_flush_log_at_trx_commit", "3")])[0].message.contains("one of 0, 1, 2"));
        assert!(problems(&[("log_bin", "/var/log/bin")]).len() == 1);
        assert!(problems(&[("log_bin", "mysql-bin")]).is_empty());
        assert!(problems(&[("sql_mode", "STRICT,,X")]).len() == 1);
    }

    #[test]
    fn managed_keys_are_refused() {
        for key in [
            "datadir",
            "socket",
            "pid-file",
            "log_error",
            "bind-address",
            "port",
            "user",
            "wsrep_cluster_address",
            "wsrep_cluster_name",
            "wsrep_node_name",
            "wsrep_provider",
            "wsrep_provider_options",
            "wsrep-sst-method",
            "wsrep_on",
            "server_id",
            "innodb_autoinc_lock_mode",
        ] {
            let p = problems(&[(key, "x")]);
            assert_eq!(p.len(), 1, "{key}: {p:?}");
            assert_eq!(p[0].key, key);
            assert!(p[0].message.contains("managed by atoll"), "{key}: {}", p[0]);
            assert_eq!(needs_restart(key), None);
        }
    }

    #[test]
    fn unknown_keys_get_a_suggestion() {
        let p = problems(&[("max_conections", "10")]);
        assert_eq!(p[0].message, "unknown parameter max_conections: did you mean max_connections?");
        let p = problems(&[("Innodb-Bufer-Pool-Size", "1G")]);
        assert!(p[0].message.contains("did you mean innodb_buffer_pool_size?"), "{}", p[0]);
        assert_eq!(p[0].key, "Innodb-Bufer-Pool-Size");
        let far = problems(&[("completely_different", "1")]);
        assert!(
            far[0].message.starts_with("unknown parameter completely_different: Atoll knows binlog_expire_logs_seconds, binlog_format, "),
            "{}",
            far[0]
        );
        assert!(far[0].message.contains("max_connections"));
    }

    #[test]
    fn every_problem_at_once() {
        let p = problems(&[("max-connections", "10"), ("max_connections", "20"), ("datadir", "/x"), ("nope", "1"), ("read_only", "maybe")]);
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p.iter().any(|p| p.message.contains("given twice")));
    }

    #[test]
    fn durable_profile_refuses_unsafe_flushing() {
        let p = problems(&[("innodb_flush_log_at_trx_commit", "2"), ("sync_binlog", "0"), ("log_bin", "ON")]);
        assert_eq!(p.len(), 2, "{p:?}");
        for p in &p {
            assert!(p.message.contains("durable profile") && p.message.contains("fast durability profile"), "{p}");
        }
        assert!(problems(&[("innodb_flush_log_at_trx_commit", "1"), ("sync_binlog", "1")]).is_empty());
        let fast = check(&params(&[("innodb_flush_log_at_trx_commit", "0"), ("sync_binlog", "0")]), Durability::Fast);
        assert!(fast.is_empty(), "{fast:?}");
    }

    #[test]
    fn values_that_would_break_the_file() {
        for bad in ["1\n[mysqld]", "10 # comment", "\"quoted\"", "'q'", "a\\b", "[x]"] {
            let p = problems(&[("sql_mode", bad)]);
            assert_eq!(p.len(), 1, "{bad:?}");
            assert!(p[0].message.contains("not allowed"), "{bad:?}: {}", p[0]);
        }
    }

    #[test]
    fn charset_and_collation_must_match() {
        assert_eq!(problems(&[("character_set_server", "latin1"), ("collation_server", "utf8mb4_bin")]).len(), 1);
        assert!(problems(&[("character_set_server", "utf8"), ("collation_server", "utf8mb3_general_ci")]).is_empty());
        assert!(problems(&[("character_set_server", "utf8mb4"), ("collation_server", "uca1400_ai_ci")]).is_empty());
        // utf8mb4 is not a prefix match for utf8 collations.
        assert_eq!(problems(&[("character_set_server", "utf8mb4"), ("collation_server", "utf8_bin")]).len(), 1);
    }

    #[test]
    fn restart_knowledge() {
        assert_eq!(needs_restart("innodb_buffer_pool_size"), Some(false));
        assert_eq!(needs_restart("performance-schema"), Some(true));
        assert_eq!(needs_restart("log_bin"), Some(true));
        assert_eq!(needs_restart("max_connections"), Some(false));
        assert_eq!(needs_restart("no_such_thing"), None);
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
