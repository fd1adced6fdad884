//! `atoll alert`: alarms, rules, silences and notification channels.

use atoll_alert::{Channel, ChannelKind, Condition, Rule, Severity, Silence};
use atoll_api::alerts::{AlarmView, ChannelTest, ChannelView, CreateSilence};
use atoll_core::time::now_ms;
use clap::{Args, Subcommand};

use crate::cli::{Conn, Res, client};
use crate::output::{self, Exit, encode, fail};

#[derive(Debug, Subcommand)]
pub enum AlertCmd {
    /// Alarms: the active ones (pending and firing) unless --state says.
    List {
        /// active, firing, pending, resolved or all.
        #[arg(long, default_value = "active")]
        state: String,
        #[arg(long)]
        rule: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        conn: Conn,
    },
    /// Alert rules: list, show, add, set, enable, disable, delete.
    #[command(subcommand)]
    Rules(RuleCmd),
    /// Silences: list, add, expire.
    #[command(subcommand)]
    Silence(SilenceCmd),
    /// Notification channels: list, add, delete, test.
    #[command(subcommand)]
    Channels(ChannelCmd),
}

#[derive(Debug, Subcommand)]
pub enum RuleCmd {
    List {
        #[command(flatten)]
        conn: Conn,
    },
    Show {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Add a rule, e.g. `atoll alert rules add slow-queries --metric
    /// atoll_db_slow_queries_total --rate --agg sum --by cluster --when
    /// '> 1' --for 5m --severity warning`.
    Add {
        name: String,
        #[command(flatten)]
        def: RuleDef,
        #[command(flatten)]
        conn: Conn,
    },
    /// Change a rule: only the options given change.
    Set {
        name: String,
        #[command(flatten)]
        def: RuleDef,
        #[command(flatten)]
        conn: Conn,
    },
    Enable {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    Disable {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    Delete {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

/// A rule's settings as flags.
#[derive(Debug, Args)]
pub struct RuleDef {
    #[arg(long)]
    metric: Option<String>,
    /// Label matcher (repeat): name=value, name!=value, name=~re, name!~re.
    #[arg(long = "match")]
    matchers: Vec<String>,
    /// Per-second rate of a counter.
    #[arg(long)]
    rate: bool,
    /// sum, avg, max or min across series.
    #[arg(long)]
    agg: Option<String>,
    /// Labels the aggregation keeps apart (comma-separated).
    #[arg(long, value_delimiter = ',')]
    by: Vec<String>,
    /// The condition on each series' latest value: `> 0.85`, `== 0`, `abs > 1`.
    #[arg(long)]
    when: Option<String>,
    /// How long the condition must hold before the alarm fires (`30s`, `5m`).
    #[arg(long = "for")]
    for_: Option<String>,
    /// info, warning or critical.
    #[arg(long)]
    severity: Option<String>,
    /// What an alarm says; `{label}` and `{value}` are filled in.
    #[arg(long)]
    summary: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SilenceCmd {
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Silence alarms whose labels match, e.g. `atoll alert silence add
    /// --match host=db1 --for 2h --comment "disk swap"`.
    Add {
        /// Label matcher (repeat); `rule` and `severity` match too.
        #[arg(long = "match", required = true)]
        matchers: Vec<String>,
        #[arg(long = "for")]
        duration: String,
        #[arg(long)]
        comment: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// End a silence now.
    Expire {
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChannelCmd {
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Add a channel: `--webhook URL` posts JSON there, `--email ADDRESS`
    /// (repeat) mails through the server's SMTP relay; with neither, the
    /// channel writes to the server's log.
    Add {
        name: String,
        #[arg(long, conflicts_with = "email")]
        webhook: Option<String>,
        #[arg(long)]
        email: Vec<String>,
        /// Send only alarms at least this severe (info, warning, critical).
        #[arg(long, default_value = "info")]
        min_severity: String,
        #[command(flatten)]
        conn: Conn,
    },
    Delete {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Send a test notification now and say how it went.
    Test {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn run(cmd: AlertCmd) -> Res {
    match cmd {
        AlertCmd::List { state, rule, limit, conn } => {
            let mut path = format!("/api/v1/alerts/alarms?state={}&limit={limit}", encode(&state));
            if let Some(r) = rule {
                path.push_str(&format!("&rule={}", encode(&r)));
            }
            let alarms: Vec<AlarmView> = client(&conn)?.get(&path).await?;
            if conn.json {
                output::print_json(&alarms)?;
                return Ok(Exit::Ok);
            }
            if alarms.is_empty() {
                println!("no {state} alarms");
                return Ok(Exit::Ok);
            }
            let now = now_ms();
            let mut t = output::table(&["state", "severity", "rule", "summary", "since", "ended", "value"]);
            for v in &alarms {
                let a = &v.alarm;
                let state = match &v.silenced_by {
                    Some(_) => format!("{} (silenced)", a.state.as_str()),
                    None => a.state.as_str().to_string(),
                };
                t.add_row(vec![
                    state,
                    a.severity.as_str().to_string(),
                    a.rule.clone(),
                    a.summary.clone(),
                    output::ago(Some(a.started_ms), now),
                    output::time(a.ended_ms),
                    atoll_alert::rule::format_value(a.value),
                ]);
            }
            println!("{t}");
            Ok(Exit::Ok)
        }
        AlertCmd::Rules(c) => rules(c).await,
        AlertCmd::Silence(c) => silences(c).await,
        AlertCmd::Channels(c) => channels(c).await,
    }
}

async fn rules(cmd: RuleCmd) -> Res {
    match cmd {
        RuleCmd::List { conn } => {
            let rules: Vec<Rule> = client(&conn)?.get("/api/v1/alerts/rules").await?;
            if conn.json {
                output::print_json(&rules)?;
                return Ok(Exit::Ok);
            }
            let mut t = output::table(&["name", "severity", "when", "for", "enabled", "query"]);
            for r in &rules {
                t.add_row(vec![
                    if r.builtin { format!("{} (built-in)", r.name) } else { r.name.clone() },
                    r.severity.as_str().to_string(),
                    r.condition.to_string(),
                    format!("{}s", r.for_s),
                    if r.enabled { "yes".into() } else { "no".into() },
                    r.describe(),
                ]);
            }
            println!("{t}");
            Ok(Exit::Ok)
        }
        RuleCmd::Show { name, conn } => {
            let r: Rule = client(&conn)?.get(&format!("/api/v1/alerts/rules/{}", encode(&name))).await?;
            print_rule(&r, conn.json)
        }
        RuleCmd::Add { name, def, conn } => {
            let (Some(metric), Some(when), Some(severity)) = (&def.metric, &def.when, &def.severity) else {
                return Err(fail(Exit::Error, "a new rule needs --metric, --when and --severity"));
            };
            let mut r = Rule {
                name,
                summary: String::new(),
                metric: metric.clone(),
                matchers: Vec::new(),
                rate: false,
                agg: None,
                by: Vec::new(),
                condition: parse_condition(when)?,
                for_s: 0,
                severity: parse_severity(severity)?,
                enabled: true,
                builtin: false,
            };
            apply(&mut r, def)?;
            let r: Rule = client(&conn)?.post("/api/v1/alerts/rules", &r).await?;
            print_rule(&r, conn.json)
        }
        RuleCmd::Set { name, def, conn } => update(&conn, &name, |r| apply(r, def)).await,
        RuleCmd::Enable { name, conn } => {
            update(&conn, &name, |r| {
                r.enabled = true;
                Ok(())
            })
            .await
        }
        RuleCmd::Disable { name, conn } => {
            update(&conn, &name, |r| {
                r.enabled = false;
                Ok(())
            })
            .await
        }
        RuleCmd::Delete { name, conn } => {
            client(&conn)?.delete::<()>(&format!("/api/v1/alerts/rules/{}", encode(&name))).await?;
            println!("rule {name} deleted; its alarms resolve within a scrape interval");
            Ok(Exit::Ok)
        }
    }
}

/// Reads the rule, changes it, writes it back.
async fn update(conn: &Conn, name: &str, change: impl FnOnce(&mut Rule) -> Result<(), crate::output::CliError>) -> Res {
    let c = client(conn)?;
    let path = format!("/api/v1/alerts/rules/{}", encode(name));
    let mut r: Rule = c.get(&path).await?;
    change(&mut r)?;
    let r: Rule = c.put(&path, &r).await?;
    print_rule(&r, conn.json)
}

fn apply(r: &mut Rule, def: RuleDef) -> Result<(), crate::output::CliError> {
    if let Some(m) = def.metric {
        r.metric = m;
    }
    if !def.matchers.is_empty() {
        r.matchers = def.matchers;
    }
    if def.rate {
        r.rate = true;
    }
    if let Some(a) = def.agg {
        r.agg = Some(a.parse().map_err(|e: atoll_monitor::QueryError| fail(Exit::Error, e.to_string()))?);
    }
    if !def.by.is_empty() {
        r.by = def.by;
    }
    if let Some(w) = def.when {
        r.condition = parse_condition(&w)?;
    }
    if let Some(f) = def.for_ {
        let ms = atoll_core::time::parse_duration_ms(&f).map_err(|e| fail(Exit::Error, format!("--for: {e}")))?;
        r.for_s = u64::try_from(ms / 1000).unwrap_or(0);
    }
    if let Some(s) = def.severity {
        r.severity = parse_severity(&s)?;
    }
    if let Some(s) = def.summary {
        r.summary = s;
    }
    Ok(())
}

fn parse_condition(text: &str) -> Result<Condition, crate::output::CliError> {
    text.parse().map_err(|e: atoll_alert::RuleError| fail(Exit::Error, format!("--when: {e}")))
}

fn parse_severity(text: &str) -> Result<Severity, crate::output::CliError> {
    text.parse().map_err(|e: atoll_alert::RuleError| fail(Exit::Error, format!("--severity: {e}")))
}

fn print_rule(r: &Rule, json: bool) -> Res {
    if json {
        output::print_json(r)?;
    } else {
        println!(
            "rule {}{}  [{}]  {}",
            r.name,
            if r.builtin { " (built-in)" } else { "" },
            r.severity.as_str(),
            if r.enabled { "enabled" } else { "disabled" }
        );
        println!("  when  {} {} for {}s", r.describe(), r.condition, r.for_s);
        if !r.summary.is_empty() {
            println!("  says  {}", r.summary);
        }
    }
    Ok(Exit::Ok)
}

async fn silences(cmd: SilenceCmd) -> Res {
    match cmd {
        SilenceCmd::List { conn } => {
            let all: Vec<Silence> = client(&conn)?.get("/api/v1/alerts/silences").await?;
            if conn.json {
                output::print_json(&all)?;
                return Ok(Exit::Ok);
            }
            let now = now_ms();
            let mut t = output::table(&["id", "match", "active", "ends", "by", "comment"]);
            for s in &all {
                t.add_row(vec![
                    s.id.clone(),
                    s.matchers.join(", "),
                    if s.is_active(now) { "yes".into() } else { "no".into() },
                    output::time(Some(s.ends_ms)),
                    s.created_by.clone(),
                    s.comment.clone(),
                ]);
            }
            println!("{t}");
            Ok(Exit::Ok)
        }
        SilenceCmd::Add { matchers, duration, comment, conn } => {
            let req = CreateSilence { matchers, duration: Some(duration), ends_ms: None, comment };
            let s: Silence = client(&conn)?.post("/api/v1/alerts/silences", &req).await?;
            if conn.json {
                output::print_json(&s)?;
            } else {
                println!(
                    "silence {} until {} (end it early with `atoll alert silence expire {}`)",
                    s.id,
                    output::time(Some(s.ends_ms)),
                    s.id
                );
            }
            Ok(Exit::Ok)
        }
        SilenceCmd::Expire { id, conn } => {
            client(&conn)?.delete::<()>(&format!("/api/v1/alerts/silences/{}", encode(&id))).await?;
            println!("silence {id} ended");
            Ok(Exit::Ok)
        }
    }
}

async fn channels(cmd: ChannelCmd) -> Res {
    match cmd {
        ChannelCmd::List { conn } => {
            let all: Vec<ChannelView> = client(&conn)?.get("/api/v1/alerts/channels").await?;
            if conn.json {
                output::print_json(&all)?;
                return Ok(Exit::Ok);
            }
            let now = now_ms();
            let mut t = output::table(&["name", "type", "to", "min severity", "delivered", "failed", "last ok", "last error"]);
            for v in &all {
                let c = &v.channel;
                let last_error = match (&v.status.last_error, v.status.last_error_ms) {
                    (Some(e), at) => format!("{} ({e})", output::ago(at, now)),
                    _ => "-".into(),
                };
                t.add_row(vec![
                    c.name.clone(),
                    c.kind.as_str().to_string(),
                    c.destination(),
                    c.min_severity.as_str().to_string(),
                    v.status.delivered.to_string(),
                    v.status.failed.to_string(),
                    output::ago(v.status.last_ok_ms, now),
                    last_error,
                ]);
            }
            println!("{t}");
            Ok(Exit::Ok)
        }
        ChannelCmd::Add { name, webhook, email, min_severity, conn } => {
            let kind = match (&webhook, email.is_empty()) {
                (Some(_), _) => ChannelKind::Webhook,
                (None, false) => ChannelKind::Email,
                (None, true) => ChannelKind::Log,
            };
            let ch = Channel { name, kind, url: webhook, to: email, min_severity: parse_severity(&min_severity)?, enabled: true };
            let ch: Channel = client(&conn)?.post("/api/v1/alerts/channels", &ch).await?;
            if conn.json {
                output::print_json(&ch)?;
            } else {
                println!("channel {} added; try it with `atoll alert channels test {}`", ch.name, ch.name);
            }
            Ok(Exit::Ok)
        }
        ChannelCmd::Delete { name, conn } => {
            client(&conn)?.delete::<()>(&format!("/api/v1/alerts/channels/{}", encode(&name))).await?;
            println!("channel {name} deleted");
            Ok(Exit::Ok)
        }
        ChannelCmd::Test { name, conn } => {
            let r: ChannelTest =
                client(&conn)?.post(&format!("/api/v1/alerts/channels/{}/test", encode(&name)), &serde_json::json!({})).await?;
            if conn.json {
                output::print_json(&r)?;
            }
            match r.error {
                None => {
                    if !conn.json {
                        println!("delivered");
                    }
                    Ok(Exit::Ok)
                }
                Some(e) => Err(fail(Exit::Failed, format!("not delivered: {e}"))),
            }
        }
    }
}
