//! The CLI as a user drives it: login (with the forced password change),
//! tables and `--json`, exit codes, and removing a host end to end.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use atoll_api::v1::HostListItem;
use atoll_core::HostStatus;
use atoll_testkit::{Platform, ServerOpts, atoll_bin, wait_for};

fn atoll(p: &Platform, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(atoll_bin())
        .args(args)
        .env("ATOLL_CONFIG_DIR", p.dir.path().join("cli"))
        .env_remove("ATOLL_SERVER")
        .env_remove("ATOLL_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[tokio::test]
async fn login_tables_json_exit_codes_and_host_removal() {
    let p = Platform::start(ServerOpts::default()).await.unwrap();
    // Not logged in yet.
    let o = atoll(&p, &["host", "list"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("atoll login"), "{}", text(&o));

    // First login: the generated password, then the new one.
    let input = format!("{}\nthe-new-admin-password\n", p.admin_password);
    let o = atoll(&p, &["login", "--server", &p.url, "--password-stdin"], Some(&input));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("must choose a new password"));
    // The old password no longer works.
    let o = atoll(&p, &["login", "--server", &p.url, "--password-stdin"], Some(&format!("{}\n", p.admin_password)));
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("wrong username or password"));

    // Add a host; the command prints how to start its agent.
    let o = atoll(&p, &["host", "add", "127.0.0.51", "--name", "db1", "--zone", "z1"], None);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("atoll agent --server") && out.contains("--listen 127.0.0.51:7070"), "{out}");
    let o = atoll(&p, &["host", "add", "127.0.0.51"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("127.0.0.51"), "{}", text(&o));

    // The agent joins and claims the pending host; the table and JSON agree.
    let saved = std::fs::read_to_string(p.dir.path().join("cli/credentials.toml")).unwrap();
    let token = saved.lines().find_map(|l| l.strip_prefix("token = ")).unwrap().trim_matches('"').to_string();
    let client = atoll_client::Client::new(&p.url, Some(token));
    let join = out.split_whitespace().find_map(|w| w.strip_prefix("ATOLL_JOIN_TOKEN=")).unwrap().to_string();
    let mut agent = p.start_agent("db1", "127.0.0.51", None, &join).unwrap();
    wait_for("db1 online", Duration::from_secs(20), || async {
        let hs: Vec<HostListItem> = client.get("/api/v1/hosts").await.ok()?;
        hs.iter().any(|h| h.name == "db1" && h.status == HostStatus::Online && h.cpu_cores.is_some()).then_some(())
    })
    .await
    .unwrap();
    let o = atoll(&p, &["host", "list"], None);
    let out = text(&o);
    assert!(out.contains("NAME") && out.contains("db1") && out.contains("online") && out.contains("1 hosts: 1 online"), "{out}");
    let o = atoll(&p, &["host", "list", "--json"], None);
    let hosts: Vec<HostListItem> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].zone.as_deref(), Some("z1"), "the zone given at `host add` is kept");
    let cores = std::thread::available_parallelism().unwrap().get() as u32;
    assert_eq!(hosts[0].cpu_cores, Some(cores), "the summary carries the cores");

    // Prepare, then remove with purge: a task each, followed to the end.
    let data_dir = p.host_data_dir().display().to_string();
    let o = atoll(&p, &["host", "prepare", "db1", "--profile", "sandbox", "--data-dir", &data_dir], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::path::Path::new(&data_dir).is_dir());
    let o = atoll(&p, &["host", "remove", "db1", "--purge"], None);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("succeeded"), "{out}");
    let o = atoll(&p, &["host", "list", "--json"], None);
    assert_eq!(serde_json::from_slice::<Vec<HostListItem>>(&o.stdout).unwrap().len(), 0);
    // The agent learns at its next heartbeat, says so and stops.
    let out = wait_for("the removed host's agent to stop", Duration::from_secs(10), || {
        let done = agent.proc.exited();
        let out = agent.proc.output();
        async move { done.then_some(out) }
    })
    .await
    .unwrap();
    assert!(out.contains("no longer knows this host"), "{out}");
    // The prepare task's directory was created by atoll, so the purge removed it.
    assert!(!std::path::Path::new(&data_dir).exists(), "purge removes what prepare created");

    // Unknown things and a stopped server.
    let o = atoll(&p, &["task", "show", "no-such-task"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("atoll task list"));
    let o = atoll(&p, &["host", "check", "--profile", "prod"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("production, sandbox"));
    let mut p = p;
    p.server.stop();
    let o = atoll(&p, &["host", "list"], None);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("cannot reach"), "{}", text(&o));
}

fn saved_token(p: &Platform) -> String {
    let saved = std::fs::read_to_string(p.dir.path().join("cli/credentials.toml")).unwrap();
    saved.lines().find_map(|l| l.strip_prefix("token = ")).unwrap_or_default().trim_matches('"').to_string()
}

/// One machine keeps one live CLI token: a second `atoll login` deletes the
/// first, `atoll logout` deletes the last; tokens expire, and a token past
/// its end is refused with the way out in the message.
#[tokio::test]
async fn login_replaces_its_token_logout_deletes_it_and_tokens_expire() {
    use atoll_api::v1::{CreateTokenRequest, CreatedToken, TokenView};
    let p = Platform::start(ServerOpts::default()).await.unwrap();
    let o = atoll(&p, &["login", "--server", &p.url, "--password-stdin"], Some(&format!("{}\nthe-new-admin-password\n", p.admin_password)));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("valid until"), "{}", text(&o));
    let first = saved_token(&p);
    let o = atoll(&p, &["login", "--server", &p.url, "--password-stdin", "--ttl-days", "7"], Some("the-new-admin-password\n"));
    assert!(o.status.success(), "{}", text(&o));
    let second = saved_token(&p);
    assert_ne!(first, second);

    let old = atoll_client::Client::new(&p.url, Some(first));
    let e = old.get::<Vec<TokenView>>("/api/v1/tokens").await.unwrap_err();
    assert!(matches!(e, atoll_client::ClientError::Api { status: 401, .. }), "{e}");
    let c = atoll_client::Client::new(&p.url, Some(second.clone()));
    let tokens: Vec<TokenView> = c.get("/api/v1/tokens").await.unwrap();
    assert_eq!(tokens.iter().filter(|t| t.name.starts_with("cli@")).count(), 1, "{tokens:?}");
    let week = tokens[0].expires_at_ms.unwrap() - tokens[0].created_at_ms;
    assert_eq!(week, 7 * 86_400_000);

    // Out of range: refused, naming the field and the range.
    let e = c.post::<_, CreatedToken>("/api/v1/tokens", &CreateTokenRequest { name: "x".into(), ttl_days: Some(0) }).await.unwrap_err();
    assert!(e.to_string().contains("ttl_days 0 is out of range: give 1 to 3650"), "{e}");
    // A token past its end (its row changed the way time would change it).
    let script: CreatedToken = c.post("/api/v1/tokens", &CreateTokenRequest { name: "nightly".into(), ttl_days: None }).await.unwrap();
    assert!(script.expires_at_ms - atoll_core::time::now_ms() > 89 * 86_400_000);
    let db = format!("sqlite://{}", p.dir.path().join("server/meta.db").display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db).await.unwrap();
    sqlx::query("UPDATE api_tokens SET expires_at_ms = 1000 WHERE id = ?").bind(&script.id).execute(&mut conn).await.unwrap();
    let e = atoll_client::Client::new(&p.url, Some(script.token)).get::<Vec<TokenView>>("/api/v1/tokens").await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("\"nightly\"") && msg.contains("expired at 1970-01-01") && msg.contains("atoll login"), "{msg}");

    let o = atoll(&p, &["logout"], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("deleted on the platform"), "{}", text(&o));
    assert_eq!(saved_token(&p), "");
    let e = c.get::<Vec<TokenView>>("/api/v1/tokens").await.unwrap_err();
    assert!(matches!(e, atoll_client::ClientError::Api { status: 401, .. }), "{e}");
    let o = atoll(&p, &["host", "list"], None);
    assert!(text(&o).contains("not logged in"), "{}", text(&o));
}
