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
