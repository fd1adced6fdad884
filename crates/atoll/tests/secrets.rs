//! Issue 12, suite 4: secrets never leak. One realistic run (a server,
//! three agents, a three-zone cluster with its proxies, users of every
//! role, API tokens, join tokens, an application account, the console in a
//! real browser) collects every password, token and key it made or was
//! given, then looks for each of them, raw and encoded, in every place a
//! secret could escape to: process logs, task views and step logs, every
//! GET route of the OpenAPI document as admin, operator and viewer, the
//! agents' own API, the console's pages, the command lines and
//! environments of every process the run started, the files the platform
//! writes (the agents' journals among them) and MetaDB's file and WAL.
//!
//! Places whose purpose is to hold or hand out a credential are listed
//! below as exceptions, each with why; the suite checks that they refuse
//! callers who may not see it.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use atoll_api::v1::{
    ClusterCredentials, ClusterView, CreatedToken, HostListItem, JoinTokenRequest, JoinTokenView, LoginResponse, TaskView, TokenView,
};
use atoll_core::TaskStatus;
use atoll_testkit::secrets::{Leak, Scanner};
use atoll_testkit::{Agent, Platform, ServerOpts, wait_for};
use serde_json::{Value, json};
use sqlx::{Connection, Executor, MySqlConnection};

const IPS: [&str; 3] = ["127.0.6.1", "127.0.6.2", "127.0.6.3"];
/// A host declared in advance (its own join token) that never starts.
const DECLARED: &str = "127.0.6.9";
const SERVER_IP: &str = "127.0.6.10";
const CLUSTER: &str = "ledger";

/// A fresh value nobody else writes: a secret that matches only itself.
fn fresh(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Where a secret may be, and why. A leak of `kind` in a place for which
/// `place` holds is expected; anything else fails the suite.
struct Exception {
    kind: &'static str,
    place: fn(&str) -> bool,
    why: &'static str,
    /// A file of ours that holds it must be 0600.
    private: bool,
}

fn exceptions() -> Vec<Exception> {
    vec![
        Exception {
            kind: "first admin password",
            // `server.log` is the first server's stdout.
            place: |p| p.ends_with("/server.log"),
            why: "printed once at the first start so the operator can log in; it works only for the forced password change",
            private: false,
        },
        Exception {
            kind: "cluster admin password",
            place: |p| p == "GET /api/v1/clusters/{name}/credentials as admin",
            why: "the route exists to hand the cluster's administrator account to platform admins (refused to others: checked)",
            private: false,
        },
        Exception {
            kind: "cluster monitor password",
            place: |p| p == "GET /api/v1/clusters/{name}/routing as proxy",
            why: "the routing table hands the read-only monitor account to the cluster's proxies, by their token (operators get it without)",
            private: false,
        },
        Exception {
            kind: "agent token",
            place: |p| p.ends_with("/identity.json"),
            why: "the agent's own credential store (0600: checked)",
            private: true,
        },
        Exception {
            kind: "proxy token",
            place: |p| p.contains("/proxies/") && p.ends_with("/token"),
            why: "the proxy's token file, which the agent writes for the proxy it starts (0600: checked)",
            private: true,
        },
        Exception {
            kind: "cluster admin password",
            place: |p| p.ends_with("/db-servers.json"),
            why: "the agent's server registry keeps the account it runs SQL with, so it can act after a restart (0600: checked)",
            private: true,
        },
        Exception {
            kind: "cluster monitor password",
            place: |p| p.contains("/proxies/") && p.contains("/routing-") && p.ends_with(".json"),
            why: "the proxy's copy of its last routing table, so a proxy started while the platform is down routes and probes (0600: checked)",
            private: true,
        },
        Exception {
            kind: "application account password",
            place: |p| p.ends_with("/data/galera.cache"),
            why: "the application's own CREATE USER, which Galera keeps in its write-set cache as sent; Atoll did not write it",
            private: false,
        },
        Exception {
            kind: "platform key",
            place: |p| p.ends_with("/server/platform.key"),
            why: "the key itself (0600: checked)",
            private: true,
        },
    ]
}

/// Every place scanned, what was found, and the controls that prove the
/// scan reads what it claims to.
struct Sweep {
    secrets: Scanner,
    controls: Scanner,
    exceptions: Vec<Exception>,
    leaks: Vec<Leak>,
    /// Secrets found where an exception allows them, with its reason.
    excused: Vec<(Leak, &'static str, bool)>,
    controls_seen: Vec<Leak>,
    places: BTreeMap<&'static str, usize>,
}

impl Sweep {
    fn check(&mut self, group: &'static str, place: &str, text: &[u8]) {
        *self.places.entry(group).or_default() += 1;
        let leaks = self.secrets.scan(place, text);
        self.sort(leaks);
        self.controls_seen.extend(self.controls.scan(place, text));
    }

    /// Each leak into the excused ones (an exception allows it) or the
    /// leaks.
    fn sort(&mut self, leaks: Vec<Leak>) {
        for leak in leaks {
            match self.exceptions.iter().find(|e| e.kind == leak.kind && (e.place)(&leak.place)) {
                Some(e) => self.excused.push((leak, e.why, e.private)),
                None => self.leaks.push(leak),
            }
        }
    }

    /// Panics unless the control of `kind` was found in a place for which
    /// `place` holds.
    fn assert_control(&self, kind: &str, place: impl Fn(&str) -> bool) {
        assert!(
            self.controls_seen.iter().any(|l| l.kind == kind && place(&l.place)),
            "the scan is blind: control {kind:?} was not found where it must be; seen: {:#?}",
            self.controls_seen.iter().filter(|l| l.kind == kind).map(|l| l.place.as_str()).collect::<Vec<_>>()
        );
    }
}

async fn login(url: &str, user: &str, password: &str) -> LoginResponse {
    let r = reqwest::Client::new()
        .post(format!("{url}/api/v1/auth/login"))
        .json(&json!({ "username": user, "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "login as {user}");
    r.json().await.unwrap()
}

/// A user of `role` made by the admin, who changes the first password and
/// logs in again: returns the API token made with the session, and adds
/// every password and token on the way to `s`.
async fn user(p: &Platform, s: &mut Scanner, name: &str, role: &str) -> String {
    let first = fresh(&format!("{name}-first"));
    let second = fresh(&format!("{name}-second"));
    let _: Value = p.client().post("/api/v1/users", &json!({ "name": name, "password": first, "role": role })).await.unwrap();
    let session = login(&p.url, name, &first).await;
    assert!(session.must_change_password);
    let _: Value = atoll_client::Client::new(&p.url, Some(session.token.clone()))
        .post("/api/v1/auth/password", &json!({ "current_password": first, "new_password": second }))
        .await
        .unwrap();
    let session2 = login(&p.url, name, &second).await;
    let t: CreatedToken =
        atoll_client::Client::new(&p.url, Some(session2.token.clone())).post("/api/v1/tokens", &json!({ "name": "work" })).await.unwrap();
    s.add("login password (changed away)", &first).unwrap();
    s.add("login password", &second).unwrap();
    s.add("session token", &session.token).unwrap();
    s.add("session token", &session2.token).unwrap();
    s.add("API token", &t.token).unwrap();
    t.token
}

/// The join token in an `agent_command` (`ATOLL_JOIN_TOKEN=… atoll agent …`).
fn token_in_command(command: &str) -> String {
    let at = command.find("ATOLL_JOIN_TOKEN=").unwrap_or_else(|| panic!("no ATOLL_JOIN_TOKEN in the agent command"));
    command[at + "ATOLL_JOIN_TOKEN=".len()..]
        .split(|c: char| c.is_whitespace() || c == '\'' || c == '"')
        .find(|t| !t.is_empty())
        .unwrap()
        .to_string()
}

/// The processes this run started: the server, the agents, and whatever
/// runs with a path of the platform's directory on its command line (the
/// proxies, every `mariadbd`).
fn processes(p: &Platform, agents: &[Agent]) -> BTreeSet<u32> {
    let mut pids: BTreeSet<u32> = atoll_agent::processes_under(p.dir.path()).into_iter().collect();
    pids.extend(p.server.pid());
    pids.extend(agents.iter().filter_map(|a| a.proc.pid()));
    pids
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_of_a_full_run_leaks() {
    let started = Instant::now();
    let mut s = Scanner::new();
    let mut ctl = Scanner::new();

    // The platform: an admin who changes the generated password, users of
    // every role, join tokens of both kinds and a declared host.
    let mut opts = ServerOpts::default();
    opts.extra_args.extend(["--profile", "sandbox"].map(String::from));
    opts.listen_ip = Some(SERVER_IP.into());
    let mut p = Platform::start(opts).await.unwrap();
    let first_admin = p.admin_password.clone();
    p.login_admin().await.unwrap();
    s.add("first admin password", &first_admin).unwrap();
    s.add("login password", &p.admin_password).unwrap();
    s.add("API token", p.token.as_deref().unwrap()).unwrap();
    let admin_session = login(&p.url, "admin", &p.admin_password).await;
    s.add("session token", &admin_session.token).unwrap();
    let operator = user(&p, &mut s, "olga", "operator").await;
    let viewer = user(&p, &mut s, "vera", "viewer").await;

    let join = p.join_token().await.unwrap();
    s.add("join token", &join).unwrap();
    let single: JoinTokenView =
        p.client().post("/api/v1/join-tokens", &JoinTokenRequest { ttl_s: Some(3600), single_use: true }).await.unwrap();
    s.add("join token", &single.token).unwrap();
    let declared: atoll_api::v1::AddedHost = p.client().post("/api/v1/hosts", &json!({ "address": DECLARED, "zone": "z9" })).await.unwrap();
    s.add("join token", token_in_command(&declared.agent_command)).unwrap();

    // Three agents, prepared hosts, a cluster with a proxy per zone.
    let agents: Vec<Agent> = IPS
        .iter()
        .enumerate()
        .map(|(i, ip)| p.start_agent(&format!("host{}", i + 1), ip, Some(&format!("z{}", i + 1)), &join).unwrap())
        .collect();
    wait_for("three agents online", Duration::from_secs(30), || async {
        let hs: Vec<HostListItem> = p.client().get("/api/v1/hosts").await.ok()?;
        (hs.iter().filter(|h| h.status == atoll_core::HostStatus::Online).count() == 3).then_some(())
    })
    .await
    .unwrap();
    let t: TaskView = p.client().post("/api/v1/hosts/prepare", &json!({ "hosts": IPS, "profile": "sandbox" })).await.unwrap();
    assert_eq!(p.wait_task(&t.id, Duration::from_secs(60)).await.unwrap().status, TaskStatus::Succeeded);
    let spec = json!({
        "name": CLUSTER,
        "servers": IPS.iter().enumerate().map(|(i, ip)| json!({ "name": format!("{CLUSTER}-{}", i + 1), "zone": format!("z{}", i + 1), "host": ip })).collect::<Vec<_>>(),
    });
    let t: TaskView = p.client().post("/api/v1/clusters", &spec).await.unwrap();
    let done = p.wait_task(&t.id, Duration::from_secs(240)).await.unwrap();
    assert_eq!(done.status, TaskStatus::Succeeded, "{:#?}", done.steps);
    eprintln!("cluster created after {:.1} s", started.elapsed().as_secs_f64());

    // The cluster's administrator account, as an admin gets it.
    let cr: ClusterCredentials = p.client().get(&format!("/api/v1/clusters/{CLUSTER}/credentials")).await.unwrap();
    s.add("cluster admin password", &cr.password).unwrap();

    // What only MetaDB and the agents hold: opened with the platform key.
    let server_dir = p.dir.path().join("server");
    let key_path = server_dir.join("platform.key");
    let key = std::fs::read(&key_path).unwrap();
    s.add("platform key", &key).unwrap();
    let sealed = atoll_server::secrets::SecretBox::load(&key_path).unwrap().unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", server_dir.join("meta.db").display())).await.unwrap();
    let host_tokens: Vec<Option<String>> = sqlx::query_scalar("SELECT server_token FROM hosts").fetch_all(&pool).await.unwrap();
    let cluster_secrets: String =
        sqlx::query_scalar("SELECT secrets_json FROM clusters WHERE name = ?").bind(CLUSTER).fetch_one(&pool).await.unwrap();
    pool.close().await;
    let opened: Vec<String> = host_tokens.iter().flatten().map(|t| sealed.open_stored(t).unwrap()).collect();
    assert_eq!(opened.len(), 3, "a server→agent token per agent");
    for t in &opened {
        s.add("server→agent token", t).unwrap();
    }
    let cluster_secrets: Value = serde_json::from_str(&cluster_secrets).unwrap();
    let mut proxy_token = String::new();
    for (field, kind) in
        [("admin_password", "cluster admin password"), ("monitor_password", "cluster monitor password"), ("proxy_token", "proxy token")]
    {
        let value = sealed.open(cluster_secrets[field].as_str().unwrap()).unwrap();
        s.add(kind, &value).unwrap();
        assert_eq!(s.kind_of(value.as_bytes()), Some(kind), "{field} is one secret: the API handed out the same");
        if field == "proxy_token" {
            proxy_token = value;
        }
    }
    for a in &agents {
        let identity: Value = serde_json::from_slice(&std::fs::read(a.data_dir.join("identity.json")).unwrap()).unwrap();
        s.add("agent token", identity["agent_token"].as_str().unwrap()).unwrap();
    }

    // An application's own account, made and used through the proxies.
    let app_password = fresh("app");
    s.add("application account password", &app_password).unwrap();
    let mut admin_conn = MySqlConnection::connect(&format!("mysql://{}:{}@{}:{}/", cr.user, cr.password, cr.host, cr.port)).await.unwrap();
    admin_conn.execute(sqlx::AssertSqlSafe(format!("CREATE USER 'app'@'%' IDENTIFIED BY '{app_password}'"))).await.unwrap();
    admin_conn.execute("GRANT SELECT ON *.* TO 'app'@'%'").await.unwrap();
    drop(admin_conn);
    let mut app = MySqlConnection::connect(&format!("mysql://app:{app_password}@{}:{}/", cr.host, cr.port)).await.unwrap();
    app.execute("SELECT 1").await.unwrap();
    drop(app);

    // A few more operations that pass secrets through tasks and agents: a
    // parameter change (SQL with the admin account) and a planned writer
    // move (a causal read on the next writer).
    let t: TaskView =
        p.client().post(&format!("/api/v1/clusters/{CLUSTER}/params"), &json!({ "params": { "max_connections": "222" } })).await.unwrap();
    assert_eq!(p.wait_task(&t.id, Duration::from_secs(60)).await.unwrap().status, TaskStatus::Succeeded);
    let t: TaskView =
        p.client().post(&format!("/api/v1/clusters/{CLUSTER}/writer"), &json!({ "server": format!("{CLUSTER}-2") })).await.unwrap();
    assert_eq!(p.wait_task(&t.id, Duration::from_secs(60)).await.unwrap().status, TaskStatus::Succeeded);

    // The console in a real browser (its profile outside the platform's
    // directory: the browser's own cookie store is not the platform's).
    let browser_dir = tempfile::tempdir().unwrap();
    let (_chromedriver, d) = atoll_testkit::browser::browser(browser_dir.path()).await.unwrap();
    atoll_testkit::browser::sign_in(&d, &p.url, "admin", &p.admin_password).await.unwrap();
    let cookie = d.get_named_cookie(atoll_api::SESSION_COOKIE).await.unwrap();
    s.add("console session cookie", cookie.value.as_str()).unwrap();
    eprintln!("secrets collected after {:.1} s: {:?}", started.elapsed().as_secs_f64(), s.kinds());

    // Controls: non-secret values each place must show, so a scan that
    // reads nothing cannot pass.
    let view: ClusterView = p.client().get(&format!("/api/v1/clusters/{CLUSTER}")).await.unwrap();
    let tokens: Vec<TokenView> = p.client().get("/api/v1/tokens").await.unwrap();
    let token_id = tokens.iter().find(|t| t.name == "tests").unwrap().id.clone();
    ctl.add("server address", p.addr.to_string()).unwrap();
    ctl.add("token id", &token_id).unwrap();
    ctl.add("cluster name", format!("{CLUSTER}-1")).unwrap();
    ctl.add("agent data dir", agents[0].data_dir.display().to_string()).unwrap();
    ctl.add("agent address", IPS[0]).unwrap();
    let mut sweep = Sweep {
        secrets: s,
        controls: ctl,
        exceptions: exceptions(),
        leaks: Vec::new(),
        excused: Vec::new(),
        controls_seen: Vec::new(),
        places: BTreeMap::new(),
    };

    // A planted leak: a fake secret written base64-encoded into a scratch
    // file among the logs must be found there, on its line.
    let planted = fresh("planted");
    sweep.secrets.add("planted control", &planted).unwrap();
    let scratch = p.dir.path().join("planted-control.log");
    let out = std::process::Command::new("sh")
        .args(["-c", "printf %s \"$0\" | base64 -w0", &format!("Authorization: {planted}")])
        .output()
        .unwrap();
    let encoded = String::from_utf8(out.stdout).unwrap();
    std::fs::write(&scratch, format!("a line\nanother\nheader: {encoded}\n")).unwrap();

    let scanned_at = Instant::now();
    console_pages(&mut sweep, &d, &p.url).await;
    d.quit().await.unwrap();
    api_answers(&mut sweep, &p, &operator, &viewer, &proxy_token, &view).await;
    agent_answers(&mut sweep, &agents, &opened).await;
    let mut comms = Vec::new();
    for pid in processes(&p, &agents) {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string();
        comms.push(comm.clone());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let role = if p.server.pid() == Some(pid) {
            "server".to_string()
        } else if let Some(a) = agents.iter().find(|a| a.proc.pid() == Some(pid)) {
            format!("agent {}", a.ip)
        } else if cmdline.split(|b| *b == 0).nth(1) == Some(b"proxy") {
            "proxy".to_string()
        } else {
            comm.clone()
        };
        for what in ["cmdline", "environ"] {
            // A process that ended since it was listed has nothing left to leak.
            if let Ok(bytes) = std::fs::read(format!("/proc/{pid}/{what}")) {
                sweep.check("process", &format!("/proc/{pid}/{what} ({role})"), &bytes);
            }
        }
    }
    // The server, three agents, three proxies, three database servers.
    assert_eq!(comms.iter().filter(|c| *c == "mariadbd").count(), 3, "{comms:?}");
    assert!(comms.iter().filter(|c| *c == "atoll").count() >= 7, "{comms:?}");
    // Every file the platform wrote: logs, the agents' journals and
    // registries, proxies' state, MetaDB and its WAL, MonitorDB. Of the
    // database servers' data directories (their own formats, hundreds of
    // MiB) the logs and Galera's write-set cache, which keeps the
    // statements that replicated, account statements among them.
    let (files, found) = sweep
        .secrets
        .scan_tree(p.dir.path(), &|path: &Path| {
            let in_db_data = path.components().any(|c| c.as_os_str() == "data") && path.to_string_lossy().contains("/hosts-db/");
            !in_db_data || path.ends_with("galera.cache") || path.extension().is_some_and(|e| e == "log" || e == "err")
        })
        .unwrap();
    let control_files = sweep.controls.scan_tree(p.dir.path(), &|path: &Path| path.ends_with("server.log")).unwrap().1;
    *sweep.places.entry("file").or_default() += files.len();
    let names: Vec<String> = files.iter().map(|f| f.strip_prefix(p.dir.path()).unwrap_or(f).display().to_string()).collect();
    eprintln!("files scanned: {}", names.join(" "));
    sweep.sort(found);
    sweep.controls_seen.extend(control_files);
    for must in ["meta.db", "meta.db-wal"] {
        assert!(files.iter().any(|f| f.ends_with(format!("server/{must}"))), "{must} was not scanned: {files:#?}");
    }
    assert!(files.iter().any(|f| f.to_string_lossy().contains("/ops/")), "no agent journal was scanned: {files:#?}");
    assert_eq!(files.iter().filter(|f| f.ends_with("galera.cache")).count(), 3, "a write-set cache per server: {files:#?}");
    eprintln!("scanned in {:.1} s: {:?}", scanned_at.elapsed().as_secs_f64(), sweep.places);

    // The controls: each place was read.
    let planted_found: Vec<&Leak> = sweep.leaks.iter().filter(|l| l.kind == "planted control").collect();
    assert!(
        planted_found.iter().any(|l| l.place == scratch.display().to_string() && l.line == 3 && l.encoding == "base64"),
        "the planted secret was not found on line 3 of {}: {planted_found:?}",
        scratch.display()
    );
    sweep.leaks.retain(|l| l.kind != "planted control");
    sweep.assert_control("server address", |p| p.ends_with("/server.log"));
    sweep.assert_control("token id", |p| p == "GET /api/v1/tokens as admin");
    sweep.assert_control("cluster name", |p| p.starts_with("console /clusters"));
    sweep.assert_control("agent data dir", |p| p.ends_with(&format!("/cmdline (agent {})", IPS[0])));
    sweep.assert_control("agent address", |p| p.starts_with("agent "));
    // The routes that hand out a credential were read, and handed it.
    for (kind, place) in [
        ("cluster admin password", "GET /api/v1/clusters/{name}/credentials as admin"),
        ("cluster monitor password", "GET /api/v1/clusters/{name}/routing as proxy"),
    ] {
        assert!(sweep.excused.iter().any(|(l, _, _)| l.kind == kind && l.place == place), "{place} did not hand out the {kind}");
    }

    // Files that hold a secret by design are private.
    let mut private: Vec<PathBuf> =
        sweep.excused.iter().filter(|(_, _, private)| *private).map(|(l, _, _)| PathBuf::from(&l.place)).collect();
    private.sort();
    private.dedup();
    for f in &private {
        assert_eq!(mode(f), 0o600, "{} holds a secret by design and must be 0600", f.display());
    }
    eprintln!("expected holders of secrets ({}):", sweep.excused.len());
    for (l, why, _) in &sweep.excused {
        eprintln!("  {} in {}: {why}", l.kind, l.place);
    }
    eprintln!("run and scan took {:.1} s", started.elapsed().as_secs_f64());

    let mut report: Vec<String> = sweep.leaks.iter().map(|l| l.to_string()).collect();
    report.sort();
    report.dedup();
    assert!(report.is_empty(), "{} secret leak(s):\n{}", report.len(), report.join("\n"));
}

/// Every console page reachable from the navigation, following links from
/// page to page (the page source after its scripts ran).
async fn console_pages(sweep: &mut Sweep, d: &thirtyfour::WebDriver, base: &str) {
    let mut todo = vec!["/hosts".to_string(), "/password".to_string()];
    let mut seen = BTreeSet::new();
    while let Some(path) = todo.pop() {
        if !seen.insert(path.clone()) || seen.len() > 80 {
            continue;
        }
        d.goto(format!("{base}{path}")).await.unwrap();
        // Live parts (task logs, charts, tables) load right after the page.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let source = d.source().await.unwrap();
        sweep.check("console page", &format!("console {path}"), source.as_bytes());
        let links = d
            .execute("return Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))", Vec::new())
            .await
            .unwrap();
        let links: Vec<String> = links.convert().unwrap();
        for l in links {
            let l = l.split('#').next().unwrap_or_default().to_string();
            // The login page would end the session; assets hold no data.
            if l.starts_with('/') && !l.starts_with("/login") && !l.starts_with("/assets/") && !l.starts_with("/api/") {
                todo.push(l);
            }
        }
    }
    assert!(seen.len() >= 8, "the console crawl saw only {seen:?}");
}

/// Every GET route of the OpenAPI document, as admin, operator and viewer,
/// with path parameters from what the run made; and the unauthenticated
/// routes outside it.
async fn api_answers(sweep: &mut Sweep, p: &Platform, operator: &str, viewer: &str, proxy_token: &str, view: &ClusterView) {
    let http = reqwest::Client::new();
    let doc: Value = http.get(format!("{}/api/v1/openapi.json", p.url)).send().await.unwrap().json().await.unwrap();
    let tasks: Vec<TaskView> = p.client().get("/api/v1/tasks?limit=1000").await.unwrap();
    assert!(tasks.len() >= 4, "prepare, create, parameters and the writer move: {} tasks", tasks.len());
    let rules: Vec<Value> = p.client().get("/api/v1/alerts/rules").await.unwrap();
    let hosts: Vec<String> = IPS.iter().chain([&DECLARED]).map(|h| h.to_string()).collect();
    let fill: BTreeMap<&str, Vec<String>> = BTreeMap::from([
        ("/api/v1/clusters/{name}", vec![CLUSTER.to_string()]),
        ("/api/v1/alerts/rules/{name}", rules.iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()),
        ("/api/v1/packages/{name}", vec!["no-such-package".to_string()]),
        ("/api/v1/hosts/{host}", hosts),
        ("/api/v1/tasks/{id}", tasks.iter().map(|t| t.id.clone()).collect()),
    ]);
    // Query strings some routes need to answer with data.
    let queries: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
        ("/api/v1/metrics/query", vec!["?metric=atoll_db_up", "?metric=atoll_proxy_connections"]),
        ("/api/v1/tasks/{id}/logs", vec!["", "?limit=1000"]),
        ("/api/v1/audit", vec!["", "?limit=1000"]),
        ("/api/v1/alerts/alarms", vec!["?state=all&limit=1000"]),
    ]);
    let roles = [("admin", p.token.clone().unwrap()), ("operator", operator.to_string()), ("viewer", viewer.to_string())];
    let mut routes = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        if item.get("get").is_none() {
            continue;
        }
        routes += 1;
        // The template with every parameter filled, each way.
        let mut paths = vec![String::new()];
        let mut so_far = String::new();
        for seg in template.split('/').skip(1) {
            so_far = format!("{so_far}/{seg}");
            if seg.starts_with('{') {
                let values = fill
                    .get(so_far.as_str())
                    .unwrap_or_else(|| panic!("GET {template}: no value for {so_far}; add one to this suite so the route is scanned"));
                paths = paths.iter().flat_map(|p| values.iter().map(move |v| format!("{p}/{v}"))).collect();
            } else {
                paths.iter_mut().for_each(|p| *p = format!("{p}/{seg}"));
            }
        }
        let suffixes = queries.get(template.as_str()).cloned().unwrap_or_else(|| vec![""]);
        for (role, token) in &roles {
            for path in &paths {
                for q in &suffixes {
                    let r = http.get(format!("{}{path}{q}", p.url)).bearer_auth(token).send().await.unwrap();
                    let status = r.status().as_u16();
                    let body = r.bytes().await.unwrap();
                    if *role == "viewer" && (template.ends_with("/credentials") || template.ends_with("/routing")) {
                        assert_eq!(status, 403, "GET {path} hands out a credential and must refuse a viewer");
                    }
                    if *role == "operator" && template.ends_with("/credentials") {
                        assert_eq!(status, 403, "GET {path} hands out the admin account and must refuse an operator");
                    }
                    sweep.check("API answer", &format!("GET {template} as {role}"), &body);
                }
            }
        }
    }
    assert!(routes >= 25, "the OpenAPI document lists only {routes} GET routes");
    // The routing table as the cluster's proxies read it.
    let r = http.get(format!("{}/api/v1/clusters/{CLUSTER}/routing", p.url)).bearer_auth(proxy_token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "the proxy token reads the routing table");
    let body = r.bytes().await.unwrap();
    sweep.check("API answer", "GET /api/v1/clusters/{name}/routing as proxy", &body);
    // Outside the document: what anyone may fetch.
    for path in ["/api/v1/openapi.json", "/metrics", "/healthz", "/readyz", "/ca.pem"] {
        let body = http.get(format!("{}{path}", p.url)).send().await.unwrap().bytes().await.unwrap();
        sweep.check("API answer", &format!("GET {path} unauthenticated"), &body);
    }
    // The proxies' own admin port.
    for px in &view.proxies {
        for path in ["/status", "/metrics"] {
            let body = http.get(format!("http://{}:{}{path}", px.address, px.admin_port)).send().await.unwrap().bytes().await.unwrap();
            sweep.check("proxy answer", &format!("proxy {} GET {path}", px.name), &body);
        }
    }
}

/// Every GET route of each agent, with the token the platform commands it
/// with (the journal among them).
async fn agent_answers(sweep: &mut Sweep, agents: &[Agent], server_tokens: &[String]) {
    let http = reqwest::Client::new();
    for a in agents {
        let mut answered = false;
        for token in server_tokens {
            let probe = http.get(format!("http://{}:{}/agent/v1/status", a.ip, a.port)).bearer_auth(token).send().await.unwrap();
            if !probe.status().is_success() {
                continue;
            }
            answered = true;
            for path in ["/agent/v1/status", "/agent/v1/facts", "/agent/v1/ops", "/agent/v1/db", "/agent/v1/metrics", "/healthz"] {
                let r = http.get(format!("http://{}:{}{path}", a.ip, a.port)).bearer_auth(token).send().await.unwrap();
                assert!(r.status().is_success(), "agent {} GET {path}: {}", a.ip, r.status());
                let body = r.bytes().await.unwrap();
                sweep.check("agent answer", &format!("agent {} GET {path}", a.ip), &body);
            }
        }
        assert!(answered, "no server→agent token opens agent {}", a.ip);
    }
}
