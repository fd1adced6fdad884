//! Alerting as an operator drives it from the CLI, against a real server
//! that scrapes itself: rules added, changed, disabled and deleted; alarms
//! that fire and resolve; silences; a webhook channel (a real HTTP
//! receiver) and one that cannot be reached; bad input named.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::process::Output;
use std::time::Duration;

use atoll_api::alerts::AlarmView;
use atoll_testkit::smtp::SmtpSink;
use atoll_testkit::webhook::Webhook;
use atoll_testkit::{Platform, ServerOpts, wait_for};
use serde_json::Value;

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn ok(p: &Platform, args: &[&str]) -> String {
    let o = p.cli(args).unwrap();
    assert!(o.status.success(), "atoll {args:?}: {}", text(&o));
    text(&o)
}

/// Runs a command that must fail with `code`, and returns what it said.
fn refused(p: &Platform, args: &[&str], code: i32) -> String {
    let o = p.cli(args).unwrap();
    assert_eq!(o.status.code(), Some(code), "atoll {args:?}: {}", text(&o));
    text(&o)
}

fn alarms(p: &Platform, state: &str) -> Vec<AlarmView> {
    serde_json::from_str(&ok(p, &["alert", "list", "--state", state, "--json"])).unwrap()
}

/// Notifications the receiver accepted for `rule` in `state`.
fn heard(hook: &Webhook, rule: &str, state: &str) -> usize {
    hook.received().iter().filter(|(_, n)| n["rule"] == rule && n["status"] == state).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_alarms_silences_and_channels_from_the_cli() {
    let smtp = SmtpSink::start("127.0.0.1").await.unwrap();
    let mut opts = ServerOpts::default();
    opts.extra_args.extend(["--smtp-server".into(), smtp.addr.clone(), "--smtp-from".into(), "atoll@platform.test".into()]);
    let mut p = Platform::start(opts).await.unwrap();
    p.login_admin().await.unwrap();
    let hook = Webhook::start("127.0.0.1", 0).await.unwrap();

    // Every platform starts with the built-in rules and a log channel.
    let rules = ok(&p, &["alert", "rules", "list"]);
    for name in ["host-offline (built-in)", "server-not-synced (built-in)", "cluster-degraded (built-in)", "disk-above-95 (built-in)"] {
        assert!(rules.contains(name), "{rules}");
    }
    assert!(rules.contains("max by (cluster) (atoll_cluster_status{status=degraded})"), "{rules}");
    assert!(ok(&p, &["alert", "channels", "list"]).contains("server log"));

    // Channels: a webhook that works, one that cannot be reached.
    ok(&p, &["alert", "channels", "add", "hook", "--webhook", &hook.url, "--min-severity", "warning"]);
    assert!(ok(&p, &["alert", "channels", "test", "hook"]).contains("delivered"));
    assert_eq!(heard(&hook, "test", "firing"), 1);
    // Email through the configured relay (a real SMTP conversation).
    ok(&p, &["alert", "channels", "add", "mail", "--email", "ops@example.test", "--email", "dba@example.test"]);
    assert!(ok(&p, &["alert", "channels", "test", "mail"]).contains("delivered"));
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(
        (mails[0].from.as_str(), mails[0].to.clone()),
        ("atoll@platform.test", vec!["ops@example.test".to_string(), "dba@example.test".to_string()])
    );
    assert!(mails[0].data.contains("Subject: [TEST] a test notification from Atoll"), "{}", mails[0].data);
    assert!(mails[0].data.contains("FIRING: a test notification; nothing is wrong"), "{}", mails[0].data);
    let out = refused(&p, &["alert", "channels", "add", "bad-mail", "--email", "ops"], 1);
    assert!(out.contains("\"ops\" is not an email address"), "{out}");
    ok(&p, &["alert", "channels", "add", "dead", "--webhook", "http://127.0.0.1:1/x", "--min-severity", "critical"]);
    let out = refused(&p, &["alert", "channels", "test", "dead"], 3);
    assert!(out.contains("not delivered") && out.contains("127.0.0.1:1"), "{out}");
    let list = ok(&p, &["alert", "channels", "list"]);
    let dead = list.lines().find(|l| l.trim_start().starts_with("dead")).unwrap_or_else(|| panic!("{list}"));
    assert!(dead.contains("refused") || dead.contains("onnect"), "the last error is shown: {list}");

    // Bad input is named and changes nothing.
    let out = refused(&p, &["alert", "rules", "add", "Bad Name", "--metric", "up", "--when", "== 0", "--severity", "warning"], 1);
    assert!(out.contains("\"Bad Name\" is not valid"), "{out}");
    let out = refused(&p, &["alert", "rules", "add", "x", "--metric", "up", "--when", "above 3", "--severity", "warning"], 1);
    assert!(out.contains("--when: condition \"above 3\" is not valid"), "{out}");
    let out =
        refused(&p, &["alert", "rules", "add", "x", "--metric", "up", "--match", "job", "--when", "== 0", "--severity", "warning"], 1);
    assert!(out.contains("`job` has no operator"), "{out}");
    let out = refused(&p, &["alert", "rules", "delete", "host-offline"], 1);
    assert!(out.contains("built-in rule") && out.contains("disable it instead"), "{out}");
    let out = refused(&p, &["alert", "silence", "add", "--match", "host", "--for", "1h", "--comment", "x"], 1);
    assert!(out.contains("`host` has no operator"), "{out}");
    let out = refused(&p, &["alert", "silence", "add", "--match", "host=a", "--for", "1h", "--comment", " "], 1);
    assert!(out.contains("needs a comment"), "{out}");
    assert!(!ok(&p, &["alert", "rules", "list"]).contains("\nx "));

    // Two rules that hold at once (this server leads, and scrapes itself);
    // one of them silenced beforehand.
    let silence = ok(&p, &["alert", "silence", "add", "--match", "rule=leader-quiet", "--for", "1h", "--comment", "testing silences"]);
    let silence_id = silence.split_whitespace().nth(1).unwrap().to_string();
    for name in ["leader-loud", "leader-quiet"] {
        ok(
            &p,
            &[
                "alert",
                "rules",
                "add",
                name,
                "--metric",
                "atoll_leader",
                "--when",
                "== 1",
                "--severity",
                "warning",
                "--summary",
                "{instance} leads",
            ],
        );
    }
    let shown = ok(&p, &["alert", "rules", "show", "leader-loud"]);
    assert!(shown.contains("when  atoll_leader == 1 for 0s"), "{shown}");
    let firing = wait_for("both alarms firing", Duration::from_secs(30), || async {
        let a = alarms(&p, "firing");
        (a.len() >= 2).then_some(a)
    })
    .await
    .unwrap();
    let quiet = firing.iter().find(|a| a.alarm.rule == "leader-quiet").unwrap();
    assert_eq!(quiet.silenced_by.as_deref(), Some(silence_id.as_str()));
    let loud = firing.iter().find(|a| a.alarm.rule == "leader-loud").unwrap();
    assert!(loud.silenced_by.is_none() && loud.alarm.summary.ends_with(" leads"), "{loud:?}");
    let table = ok(&p, &["alert", "list"]);
    assert!(table.contains("firing (silenced)") && table.contains("leader-loud"), "{table}");
    wait_for("the loud one notified", Duration::from_secs(10), || async { (heard(&hook, "leader-loud", "firing") == 1).then_some(()) })
        .await
        .unwrap();
    assert_eq!(heard(&hook, "leader-quiet", "firing"), 0, "silenced");

    // Disabled: the alarm resolves, and that is notified once.
    ok(&p, &["alert", "rules", "disable", "leader-loud"]);
    wait_for("resolution notified", Duration::from_secs(10), || async { (heard(&hook, "leader-loud", "resolved") == 1).then_some(()) })
        .await
        .unwrap();
    let history = alarms(&p, "resolved");
    let done = history.iter().find(|a| a.alarm.rule == "leader-loud").unwrap();
    assert!(done.alarm.ended_ms.is_some() && done.alarm.values.iter().all(|s| s.value == 1.0), "{done:?}");

    // The silence ends: the quiet alarm is notified now.
    ok(&p, &["alert", "silence", "expire", &silence_id]);
    wait_for("silenced alarm notified after the silence", Duration::from_secs(10), || async {
        (heard(&hook, "leader-quiet", "firing") == 1).then_some(())
    })
    .await
    .unwrap();
    let silences = ok(&p, &["alert", "silence", "list"]);
    assert!(silences.contains("testing silences") && silences.contains(" no "), "{silences}");

    // Changed, then deleted: a deleted rule's alarm resolves too.
    let shown = ok(&p, &["alert", "rules", "set", "leader-quiet", "--for", "5m", "--severity", "critical"]);
    assert!(shown.contains("[critical]") && shown.contains("for 300s"), "{shown}");
    ok(&p, &["alert", "rules", "delete", "leader-quiet"]);
    wait_for("deleted rule's alarm resolved", Duration::from_secs(10), || async {
        alarms(&p, "active").iter().all(|a| a.alarm.rule != "leader-quiet").then_some(())
    })
    .await
    .unwrap();
    let channels: Value = serde_json::from_str(&ok(&p, &["alert", "channels", "list", "--json"])).unwrap();
    let hook_status = channels.as_array().unwrap().iter().find(|c| c["name"] == "hook").unwrap()["status"].clone();
    assert_eq!(hook_status["delivered"].as_u64(), Some(hook.received().len() as u64), "{hook_status}");
}
