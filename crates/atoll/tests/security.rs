//! Findings of the security review (issue 12) that live in the server:
//! secrets at rest, login lockout, what unauthenticated calls may cost.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use atoll_core::HostStatus;
use atoll_testkit::{Platform, ServerOpts, wait_for};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Finding 4: MetaDB and the platform key are private from the start, the
/// token that commands a host's agent is not in MetaDB in clear, and a
/// server without its key (or with another one) refuses to start, naming
/// the fix, instead of making a new key that strands every secret.
#[tokio::test]
async fn secrets_at_rest_are_private_and_a_lost_key_is_refused() {
    let mut p = Platform::start(ServerOpts::default()).await.unwrap();
    p.login_admin().await.unwrap();
    let dir = p.dir.path().join("server");
    assert_eq!(mode(&dir), 0o700, "server data directory");
    assert_eq!(mode(&dir.join("meta.db")), 0o600, "meta.db");
    assert_eq!(mode(&dir.join("platform.key")), 0o600, "platform.key");

    let join = p.join_token().await.unwrap();
    let agent = p.start_agent("s1", "127.0.0.23", None, &join).unwrap();
    wait_for("host online", Duration::from_secs(20), || async {
        let hs: Vec<atoll_api::v1::HostListItem> = p.client().get("/api/v1/hosts").await.ok()?;
        hs.iter().any(|h| h.status == HostStatus::Online).then_some(())
    })
    .await
    .unwrap();
    // What a copy of meta.db shows of the host's token: sealed only.
    let url = format!("sqlite://{}?mode=ro", dir.join("meta.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let stored: Option<String> = sqlx::query_scalar("SELECT server_token FROM hosts").fetch_one(&pool).await.unwrap();
    pool.close().await;
    let stored = stored.unwrap();
    assert!(stored.starts_with("xc20p1:"), "the server's token for the agent is stored in clear: {stored}");
    let on_agent = std::fs::read_to_string(agent.data_dir.join("identity.json")).unwrap();
    let hash = serde_json::from_str::<serde_json::Value>(&on_agent).unwrap()["server_token_hash"].as_str().unwrap().to_string();
    assert!(!stored.contains(&hash));
    // The platform still commands the agent with it.
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/hosts/127.0.0.23/metrics", p.url))
        .bearer_auth(p.token.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().await.unwrap().contains("atoll_host_memory_total_bytes"));
    drop(agent);

    // Key gone: refused with the fix, and no new key is made.
    let key = std::fs::read(dir.join("platform.key")).unwrap();
    std::fs::remove_file(dir.join("platform.key")).unwrap();
    let err = p.restart_server(ServerOpts::default()).await.unwrap_err().to_string();
    assert!(err.contains("platform.key") && err.contains("is missing") && err.contains("copy platform.key"), "{err}");
    assert!(!dir.join("platform.key").exists(), "a new key was made");
    // Another key: refused too.
    std::fs::write(dir.join("platform.key"), [7u8; 32]).unwrap();
    let err = p.restart_server(ServerOpts::default()).await.unwrap_err().to_string();
    assert!(err.contains("is not the key this MetaDB's secrets were sealed with"), "{err}");
    // A token an older version kept in clear (the server is down now).
    let rw = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("meta.db").display())).await.unwrap();
    sqlx::query("UPDATE hosts SET server_token = 'clear-token-of-an-older-version'").execute(&rw).await.unwrap();
    rw.close().await;
    // The right key back: the server starts, opens its secrets, and seals
    // the clear token.
    std::fs::write(dir.join("platform.key"), &key).unwrap();
    p.restart_server(ServerOpts::default()).await.unwrap();
    let me: atoll_api::v1::Me = p.client().get("/api/v1/auth/me").await.unwrap();
    assert_eq!(me.user, "admin");
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let stored: Option<String> = sqlx::query_scalar("SELECT server_token FROM hosts").fetch_one(&pool).await.unwrap();
    pool.close().await;
    let stored = stored.unwrap();
    assert!(stored.starts_with("xc20p1:") && !stored.contains("clear-token"), "left in clear: {stored}");
    p.server.stop();
}

/// A login from `source` (a loopback address the client binds to).
async fn login_from(p: &Platform, source: [u8; 4], user: &str, password: &str) -> (u16, String) {
    let http = reqwest::Client::builder().local_address(std::net::IpAddr::from(source)).build().unwrap();
    let r = http
        .post(format!("{}/api/v1/auth/login", p.url))
        .json(&serde_json::json!({ "username": user, "password": password }))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Finding 6: failures count per account and per source, and a success
/// clears neither the source's count nor another account's, so guessing
/// one account between logins to another still locks.
#[tokio::test]
async fn failed_logins_lock_the_account_and_the_source() {
    let mut opts = ServerOpts::default();
    opts.extra_args.extend(["--login-max-failures", "3", "--login-lock-s", "60"].map(String::from));
    let mut p = Platform::start(opts).await.unwrap();
    let admin = p.login_admin().await.unwrap();
    let alice = "alice-password-1";
    let _: serde_json::Value =
        admin.post("/api/v1/users", &serde_json::json!({ "name": "alice", "password": alice, "role": "viewer" })).await.unwrap();
    let admin_pw = p.admin_password.clone();
    let a = [127, 0, 0, 41];
    // Guess alice's password, logging in as admin (correctly) in between.
    for _ in 0..2 {
        assert_eq!(login_from(&p, a, "alice", "guess-guess-guess").await.0, 401);
        let (code, body) = login_from(&p, a, "admin", &admin_pw).await;
        assert_eq!(code, 200, "{body}");
    }
    let (code, body) = login_from(&p, a, "alice", "guess-guess-guess").await;
    assert_eq!(code, 429, "the third guess locks: {body}");
    // The account is locked from any address, even with its password...
    let b = [127, 0, 0, 42];
    let (code, body) = login_from(&p, b, "alice", alice).await;
    assert_eq!(code, 429, "{body}");
    assert!(body.contains("for user alice") && body.contains("try again in"), "{body}");
    // ...and the guessing address is locked for every account.
    let (code, body) = login_from(&p, a, "admin", &admin_pw).await;
    assert!(code == 429 && body.contains("from 127.0.0.41"), "{code} {body}");
    // Others still log in.
    let (code, body) = login_from(&p, b, "admin", &admin_pw).await;
    assert_eq!(code, 200, "{body}");
    p.server.stop();
}

/// A tmpfs mounted at `path`, unmounted when dropped (also on failure).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &std::path::Path, size: &str) -> Tmpfs {
        let ok =
            std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(path).status().unwrap();
        assert!(ok.success(), "mount tmpfs on {}", path.display());
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

async fn readyz(p: &Platform, query: &str) -> (u16, String) {
    let r = reqwest::get(format!("{}/readyz{query}", p.url)).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Finding 8: with MetaDB's disk full, changes are refused with 503 naming
/// the cause, reads and token authentication keep working, and readiness
/// says so (`?for=reads` still ready); freed, everything is back.
#[tokio::test]
async fn a_full_metadb_disk_refuses_changes_keeps_reads_and_readiness_tells() {
    let mut opts = ServerOpts::default();
    opts.extra_args.extend(["--leader-lease-ms", "3000"].map(String::from));
    let mut p = Platform::start(opts.clone()).await.unwrap();
    p.login_admin().await.unwrap();
    // Move the server's data onto a small tmpfs of its own.
    p.server.kill();
    let dir = p.dir.path().join("server");
    let saved = p.dir.path().join("server-saved");
    std::fs::rename(&dir, &saved).unwrap();
    std::fs::create_dir(&dir).unwrap();
    let _fs = Tmpfs::mount(&dir, "64m");
    for entry in std::fs::read_dir(&saved).unwrap().flatten() {
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    p.restart_server(opts).await.unwrap();
    assert_eq!(readyz(&p, "").await.0, 200);
    let new_token = |name: String| {
        let c = p.client();
        async move { c.post::<_, serde_json::Value>("/api/v1/tokens", &serde_json::json!({ "name": name })).await }
    };
    new_token("before".into()).await.unwrap();

    // Fill the disk, then write until MetaDB refuses (its journal may have
    // room left for a few).
    let filler = dir.join("filler");
    let _ = std::process::Command::new("dd").args(["if=/dev/zero", "bs=1M", "count=100"]).arg(format!("of={}", filler.display())).output();
    let mut refused = None;
    for i in 0..500 {
        if let Err(e) = new_token(format!("t{i}")).await {
            refused = Some(e);
            break;
        }
    }
    let refused = refused.expect("MetaDB took 500 writes on a full disk");
    assert_eq!(refused.status(), Some(503), "{refused}");
    assert!(refused.to_string().contains("takes no writes") && refused.to_string().contains("disk is full"), "{refused}");
    // Reads, with token authentication, still work.
    let hosts: Vec<serde_json::Value> = p.client().get("/api/v1/hosts").await.unwrap();
    assert!(hosts.is_empty());
    let (code, body) = wait_for("readiness to report refused writes", Duration::from_secs(15), || async {
        let (code, body) = readyz(&p, "").await;
        (code == 503).then_some((code, body))
    })
    .await
    .unwrap();
    assert!(code == 503 && body.contains("takes no writes"), "{body}");
    assert_eq!(readyz(&p, "?for=reads").await.0, 200, "reads are still answered");

    // Space back: ready again, changes accepted.
    std::fs::remove_file(&filler).unwrap();
    let again = wait_for("ready again", Duration::from_secs(15), || async { (readyz(&p, "").await.0 == 200).then_some(()) }).await;
    assert!(again.is_ok(), "{:?}\n{}", readyz(&p, "").await, p.server.output());
    new_token("after".into()).await.unwrap();
    p.server.stop();
}

/// Finding 14: a change made with the session cookie must come from the
/// console's own origin; a password change ends the account's other
/// sessions and tokens.
#[tokio::test]
async fn cookie_changes_need_our_origin_and_a_new_password_ends_other_sessions() {
    let mut p = Platform::start(ServerOpts::default()).await.unwrap();
    let admin = p.login_admin().await.unwrap();
    let _: serde_json::Value = admin
        .post("/api/v1/users", &serde_json::json!({ "name": "carol", "password": "carol-password-1", "role": "operator" }))
        .await
        .unwrap();
    let session = |password: &'static str| {
        let url = p.url.clone();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{url}/api/v1/auth/login"))
                .json(&serde_json::json!({ "username": "carol", "password": password }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            r.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_string()
        }
    };
    // Users an admin makes choose their own password first.
    let first = session("carol-password-1").await;
    let _: serde_json::Value = atoll_client::Client::new(&p.url, Some(first.clone()))
        .post("/api/v1/auth/password", &serde_json::json!({ "current_password": "carol-password-1", "new_password": "carol-password-2" }))
        .await
        .unwrap();
    let host = p.url.trim_start_matches("http://").to_string();
    let post_with_cookie = |token: String, origin: Option<String>| {
        let url = p.url.clone();
        async move {
            let mut r = reqwest::Client::new()
                .post(format!("{url}/api/v1/tokens"))
                .header("cookie", format!("{}={token}", atoll_api::SESSION_COOKIE))
                .json(&serde_json::json!({ "name": "from-cookie" }));
            if let Some(o) = origin {
                r = r.header("origin", o);
            }
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (code, body) = post_with_cookie(first.clone(), Some("http://evil.example".into())).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("cross-site request refused"), "{body}");
    assert_eq!(post_with_cookie(first.clone(), None).await.0, 403, "no Origin or Referer");
    let (code, body) = post_with_cookie(first.clone(), Some(format!("http://{host}"))).await;
    assert_eq!(code, 201, "{body}");
    let cookie_token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"].as_str().unwrap().to_string();

    // A second session changes the password: the first session and the
    // token are gone, the second goes on.
    let second = session("carol-password-2").await;
    let as_second = atoll_client::Client::new(&p.url, Some(second.clone()));
    let _: serde_json::Value = as_second
        .post("/api/v1/auth/password", &serde_json::json!({ "current_password": "carol-password-2", "new_password": "carol-password-3" }))
        .await
        .unwrap();
    for (what, token) in [("first session", &first), ("API token", &cookie_token)] {
        let e = atoll_client::Client::new(&p.url, Some(token.clone())).get::<serde_json::Value>("/api/v1/auth/me").await.unwrap_err();
        assert_eq!(e.status(), Some(401), "{what} outlived the password change: {e}");
    }
    let me: serde_json::Value = as_second.get("/api/v1/auth/me").await.unwrap();
    assert_eq!(me["user"], "carol");
    p.server.stop();
}

/// Finding 5 (first part): with `--tls` the API and console are served
/// over HTTPS with a certificate of the platform's own CA, which clients
/// trust by its PEM (DATA_DIR/ca.pem, /ca.pem) and pin by the fingerprint
/// the server prints; plain HTTP and strangers' trust get nothing, and a
/// restarted server keeps its CA.
#[tokio::test]
async fn tls_serves_https_with_the_platforms_own_ca() {
    let opts = ServerOpts::tls();
    let mut p = Platform::start(opts.clone()).await.unwrap();
    assert!(p.url.starts_with("https://"), "{}", p.url);
    p.login_admin().await.unwrap();
    let me: atoll_api::v1::Me = p.client().get("/api/v1/auth/me").await.unwrap();
    assert_eq!(me.user, "admin");

    let ca = std::fs::read_to_string(p.dir.path().join("server/ca.pem")).unwrap();
    // The session cookie is Secure over HTTPS.
    let login = reqwest::Client::builder()
        .tls_backend_preconfigured(atoll_pki::client_config(&[&ca], None).unwrap())
        .build()
        .unwrap()
        .post(format!("{}/api/v1/auth/login", p.url))
        .json(&serde_json::json!({ "username": "admin", "password": p.admin_password }))
        .send()
        .await
        .unwrap();
    let cookie = login.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("; Secure"), "{cookie}");
    let printed = p.server.output();
    let fingerprint = atoll_pki::fingerprint(&ca).unwrap();
    assert!(printed.contains(&fingerprint), "the server prints the CA fingerprint to pin: {printed}");
    // What /ca.pem serves is that CA.
    let served = p.client().get_streaming("/ca.pem").await.unwrap().text().await.unwrap();
    assert_eq!(served, ca);

    // The CLI: no pin is refused with the way out, a wrong one names both
    // fingerprints, the right one logs in and later commands trust the
    // saved CA without being told again.
    let login = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(atoll_testkit::atoll_bin());
        cmd.args(["login", "--server", &p.url, "--password-stdin"])
            .args(extra)
            .env("ATOLL_CONFIG_DIR", p.dir.path().join("cli"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(format!("{}\n", p.admin_password).as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let o = login(&[]);
    assert!(!o.status.success() && atoll_testkit::output_text(&o).contains("pass --ca-fingerprint"), "{}", atoll_testkit::output_text(&o));
    let other = atoll_pki::fingerprint(atoll_pki::Ca::generate("other").unwrap().cert_pem()).unwrap();
    let o = login(&["--ca-fingerprint", &other]);
    assert!(
        atoll_testkit::output_text(&o).contains(&format!("offered the CA {fingerprint}, not the pinned {other}")),
        "{}",
        atoll_testkit::output_text(&o)
    );
    let o = login(&["--ca-fingerprint", &fingerprint.to_uppercase().replace("SHA256:", "sha256:")]);
    assert!(o.status.success(), "{}", atoll_testkit::output_text(&o));
    let o = std::process::Command::new(atoll_testkit::atoll_bin())
        .args(["host", "list"])
        .env("ATOLL_CONFIG_DIR", p.dir.path().join("cli"))
        .env_remove("ATOLL_SERVER")
        .env_remove("ATOLL_TOKEN")
        .output()
        .unwrap();
    assert!(o.status.success() && atoll_testkit::output_text(&o).contains("0 hosts"), "{}", atoll_testkit::output_text(&o));

    // Plain HTTP on the TLS port gets no answer, and a client that trusts
    // only the system's roots refuses the certificate.
    let plain = reqwest::Client::new().get(format!("http://{}/healthz", p.addr)).send().await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    let stranger = reqwest::Client::builder()
        .tls_backend_preconfigured(atoll_pki::client_config(&[atoll_pki::Ca::generate("other").unwrap().cert_pem()], None).unwrap())
        .build()
        .unwrap();
    let e = stranger.get(format!("{}/healthz", p.url)).send().await.unwrap_err();
    assert!(format!("{e:?}").contains("UnknownIssuer") || format!("{e:?}").to_lowercase().contains("certificate"), "{e:?}");

    // Restarted, the server keeps the platform's CA (it lives in MetaDB).
    p.restart_server(opts).await.unwrap();
    assert_eq!(std::fs::read_to_string(p.dir.path().join("server/ca.pem")).unwrap(), ca);
    let me: atoll_api::v1::Me = p.client().get("/api/v1/auth/me").await.unwrap();
    assert_eq!(me.user, "admin");
    p.server.stop();
}

/// Agents of an HTTPS platform: they pin its CA by fingerprint at join (a
/// wrong pin or none is refused before anything is sent), keep their own
/// key and get a certificate at registration, serve their API over TLS,
/// and take commands only from a holder of a platform certificate (mutual
/// TLS) that also has the platform's token. A cluster made through them
/// works, and its proxy reads its routing table over HTTPS.
#[tokio::test]
async fn agents_pin_the_ca_and_take_commands_only_over_mutual_tls() {
    use atoll_api::v1::{ClusterCredentials, HostListItem, TaskView};
    const IP: &str = "127.0.0.24";
    let mut opts = ServerOpts::tls();
    opts.extra_args.extend(["--profile", "sandbox"].map(String::from));
    let mut p = Platform::start(opts).await.unwrap();
    p.login_admin().await.unwrap();
    let join = p.join_token().await.unwrap();
    let ca = std::fs::read_to_string(p.dir.path().join("server/ca.pem")).unwrap();

    // The command `atoll host add` prints pins the CA.
    let added: atoll_api::v1::AddedHost =
        p.client().post("/api/v1/hosts", &serde_json::json!({ "address": IP, "name": "t1", "zone": "z1" })).await.unwrap();
    let fingerprint = atoll_pki::fingerprint(&ca).unwrap();
    assert!(added.agent_command.contains(&format!("--ca-fingerprint {fingerprint}")), "{}", added.agent_command);

    // No pin, or another CA's: the agent stops before it registers.
    let refused = |pin: Option<&str>| {
        let dir = p.dir.path().join(format!("agent-refused-{}", pin.is_some()));
        let mut cmd = std::process::Command::new(atoll_testkit::atoll_bin());
        cmd.args(["agent", "--server", &p.url, "--listen", &format!("{IP}:7999")])
            .arg("--data-dir")
            .arg(&dir)
            .arg("--data-root")
            .arg(p.dir.path())
            .env("ATOLL_JOIN_TOKEN", &join);
        if let Some(pin) = pin {
            cmd.args(["--ca-fingerprint", pin]);
        }
        atoll_testkit::output_text(&cmd.output().unwrap())
    };
    let out = refused(None);
    assert!(out.contains("give its CA with --ca-fingerprint"), "{out}");
    let other = atoll_pki::fingerprint(atoll_pki::Ca::generate("other").unwrap().cert_pem()).unwrap();
    let out = refused(Some(&other));
    assert!(out.contains(&format!("offered the CA {fingerprint}, not the pinned {other}")), "{out}");

    let host_token = added.agent_command.split_whitespace().find_map(|w| w.strip_prefix("ATOLL_JOIN_TOKEN=")).unwrap();
    let agent = p.start_agent("t1", IP, Some("z1"), host_token).unwrap();
    let hosts = p.wait_hosts_online(1).await.unwrap();
    let h: &HostListItem = &hosts[0];
    assert!(h.agent_url.as_deref().is_some_and(|u| u.starts_with(&format!("https://{IP}:"))), "{:?}", h.agent_url);
    let mode = |f: &str| std::fs::metadata(agent.data_dir.join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("agent.key"), 0o600, "the agent's key is its own");
    assert_eq!(std::fs::read_to_string(agent.data_dir.join("ca.pem")).unwrap(), ca, "the pinned CA is kept");
    assert!(!agent.proc.output().contains("PRIVATE KEY"));

    // Straight at the agent: without a certificate, refused with the
    // reason; with a stranger's, no handshake; with a platform certificate
    // but no token, still refused. Metrics need the token, not a certificate.
    let agent_url = h.agent_url.clone().unwrap();
    let http = |own: Option<&atoll_pki::CertKey>| {
        reqwest::Client::builder().tls_backend_preconfigured(atoll_pki::client_config(&[&ca], own).unwrap()).build().unwrap()
    };
    let r = http(None).get(format!("{agent_url}/agent/v1/status")).send().await.unwrap();
    let (status, body) = (r.status().as_u16(), r.text().await.unwrap());
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("mutual TLS"), "{body}");
    let other_ca = atoll_pki::Ca::generate("other").unwrap();
    let stranger = other_ca
        .issue(&atoll_pki::LeafRequest {
            common_name: "intruder".into(),
            ips: vec![],
            dns: vec![],
            usage: atoll_pki::Usage::Client,
            lifetime: atoll_pki::LEAF_LIFETIME,
        })
        .unwrap();
    let e = http(Some(&stranger)).get(format!("{agent_url}/agent/v1/status")).send().await;
    assert!(e.is_err(), "a stranger's certificate must not pass the handshake: {e:?}");
    let own = atoll_pki::CertKey {
        cert_pem: std::fs::read_to_string(agent.data_dir.join("agent.crt")).unwrap(),
        key_pem: std::fs::read_to_string(agent.data_dir.join("agent.key")).unwrap(),
    };
    let r = http(Some(&own)).get(format!("{agent_url}/agent/v1/status")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "a platform certificate alone is not the platform's token");
    let r = http(None).get(format!("{agent_url}/agent/v1/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // The other way: the platform takes heartbeats only with the agent's
    // certificate; its token alone (read from its identity file) is refused.
    let identity: serde_json::Value = serde_json::from_slice(&std::fs::read(agent.data_dir.join("identity.json")).unwrap()).unwrap();
    let agent_token = identity["agent_token"].as_str().unwrap();
    let r = http(None)
        .post(format!("{}/agent/v1/heartbeat", p.url))
        .bearer_auth(agent_token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    let (status, body) = (r.status().as_u16(), r.text().await.unwrap());
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("mutual TLS"), "{body}");

    // The server's commands pass: prepare the host, make a cluster, and
    // reach it through its proxy, which routes with a table read over HTTPS.
    let c = p.client();
    let t: TaskView = c.post("/api/v1/hosts/prepare", &serde_json::json!({ "hosts": [IP], "profile": "sandbox" })).await.unwrap();
    let t = p.wait_task(&t.id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(t.status, atoll_core::TaskStatus::Succeeded, "{:#?}", t.steps);
    let spec = serde_json::json!({ "name": "sec", "allow_single_zone": true, "servers": [{ "name": "sec-1", "zone": "z1", "host": IP }] });
    let t: TaskView = c.post("/api/v1/clusters", &spec).await.unwrap();
    let t = p.wait_task(&t.id, Duration::from_secs(180)).await.unwrap();
    assert_eq!(t.status, atoll_core::TaskStatus::Succeeded, "{:#?}", t.steps);
    let cr: ClusterCredentials = c.get("/api/v1/clusters/sec/credentials").await.unwrap();
    let out = wait_for("a query through the proxy", Duration::from_secs(20), || async {
        let o = atoll_testkit::mariadb(&cr, &cr.host, cr.port, "SELECT @@wsrep_node_name").ok()?;
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).to_string())
    })
    .await
    .unwrap();
    assert_eq!(out.trim(), "sec-1");
    let proxy_dirs: Vec<std::path::PathBuf> =
        std::fs::read_dir(agent.data_dir.join("proxies")).unwrap().filter_map(|e| Some(e.ok()?.path())).filter(|p| p.is_dir()).collect();
    let proxy_log = proxy_dirs.iter().filter_map(|d| std::fs::read_to_string(d.join("proxy.log")).ok()).collect::<String>();
    assert!(!proxy_log.contains("cannot get the routing table"), "the proxy trusts the platform's CA and is trusted: {proxy_log}");
    // Proxy→server is mutual TLS too: the proxy token alone, without the
    // host's certificate, is refused, naming the fix; with it, answered.
    let proxy_token = std::fs::read_to_string(proxy_dirs[0].join("token")).unwrap();
    let url = format!("{}/api/v1/clusters/sec/routing", p.url);
    let r = http(None).get(&url).bearer_auth(proxy_token.trim()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body = r.text().await.unwrap();
    assert!(body.contains("mutual TLS") && body.contains("--cert-file"), "{body}");
    let r = http(Some(&own)).get(&url).bearer_auth(proxy_token.trim()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap_or_default());

    // Half-way through its life the certificate is renewed while the
    // agent runs (a year-old agent must not lose the platform), and its proxies present
    // the new one from then on.
    let cert_path = agent.data_dir.join("agent.crt");
    let first_cert = std::fs::read_to_string(&cert_path).unwrap();
    let aged = std::process::Command::new("touch").args(["-d", "200 days ago"]).arg(&cert_path).status().unwrap();
    assert!(aged.success());
    wait_for("the agent to renew its certificate", Duration::from_secs(20), || async {
        (std::fs::read_to_string(&cert_path).ok()? != first_cert).then_some(())
    })
    .await
    .unwrap();
    assert!(agent.proc.output().contains("certificate renewed"), "{}", agent.proc.output());
    let proxy_log = || proxy_dirs.iter().filter_map(|d| std::fs::read_to_string(d.join("proxy.log")).ok()).collect::<String>();
    wait_for("the proxy to present the renewed certificate", Duration::from_secs(40), || async {
        proxy_log().contains("using the renewed certificate or CA bundle").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", proxy_log()));
}

/// A TLS platform's cluster: Galera's group traffic runs over TLS with the
/// platform's certificates, the joiners' full state transfers go through
/// stunnel verifying the chain, and clients can verify a node by the
/// platform's CA.
#[tokio::test]
async fn a_tls_platforms_cluster_replicates_and_transfers_state_over_tls() {
    use atoll_api::v1::{ClusterCredentials, TaskView};
    const IPS: [&str; 3] = ["127.0.0.25", "127.0.0.26", "127.0.0.27"];
    let opts = ServerOpts::tls();
    let (p, agents) = Platform::with_prepared_hosts_using(opts, &IPS).await.unwrap();
    let c = p.client();
    let spec = serde_json::json!({
        "name": "tls",
        "servers": IPS.iter().enumerate().map(|(i, ip)| serde_json::json!({ "name": format!("tls-{}", i + 1), "zone": format!("z{}", i + 1), "host": ip })).collect::<Vec<_>>(),
    });
    let t: TaskView = c.post("/api/v1/clusters", &spec).await.unwrap();
    let t = p.wait_task(&t.id, Duration::from_secs(240)).await.unwrap();
    let log = |n: usize| std::fs::read_to_string(p.dir.path().join(format!("hosts-db/tls/tls-{n}/error.log"))).unwrap_or_default();
    assert_eq!(t.status, atoll_core::TaskStatus::Succeeded, "{:#?}\ntls-1 (donor):\n{}\ntls-2:\n{}", t.steps, log(1), log(2));
    let cr: ClusterCredentials = c.get("/api/v1/clusters/tls/credentials").await.unwrap();
    let ca = p.dir.path().join("server/ca.pem");

    // Straight to each node, verifying its certificate by the platform's
    // CA and its address: a TLS session, and the group runs on TLS.
    for ip in IPS {
        let out = std::process::Command::new("mariadb")
            .args(["--no-defaults", "-h", ip, "-P", "3306", "-u", &cr.user, &format!("-p{}", cr.password)])
            .arg(format!("--ssl-ca={}", ca.display()))
            .args(["--ssl-verify-server-cert", "-N", "-B", "-e"])
            .arg("SHOW SESSION STATUS LIKE 'Ssl_cipher'; SELECT @@wsrep_provider_options LIKE '%socket.ssl = YES%', VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_CLUSTER_SIZE'")
            .output()
            .unwrap();
        let text = atoll_testkit::output_text(&out);
        assert!(out.status.success(), "{ip}: {text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("Ssl_cipher\t") && lines[0].len() > "Ssl_cipher\t".len(), "{ip}: {text}");
        assert_eq!(lines[1], "1\t3", "{ip}: group traffic over TLS, three members: {text}");
    }
    // The joiners got their state by rsync through stunnel.
    for n in [2, 3] {
        let text = log(n);
        assert!(text.contains("Using stunnel for SSL encryption"), "tls-{n}'s state transfer was not encrypted:\n{text}");
    }

    // Half-way through its life a database server's certificate is renewed
    // by its agent, for a key made on the host, and taken without a
    // restart: new clients see the new one, and a node that rejoins links
    // to it over TLS.
    let not_before = |ip: &str| {
        let out = std::process::Command::new("mariadb")
            .args(["--no-defaults", "-h", ip, "-P", "3306", "-u", &cr.user, &format!("-p{}", cr.password)])
            .arg(format!("--ssl-ca={}", ca.display()))
            .args(["--ssl-verify-server-cert", "-N", "-B", "-e", "SHOW GLOBAL STATUS LIKE 'Ssl_server_not_before'"])
            .output()
            .unwrap();
        atoll_testkit::output_text(&out)
    };
    let before = not_before(IPS[1]);
    let cert = p.dir.path().join("hosts-db/tls/tls-2/server.crt");
    let (old_cert, old_key) =
        (std::fs::read_to_string(&cert).unwrap(), std::fs::read_to_string(cert.with_file_name("server.key")).unwrap());
    assert!(std::process::Command::new("touch").args(["-d", "200 days ago"]).arg(&cert).status().unwrap().success());
    wait_for("tls-2's certificate renewed and reloaded", Duration::from_secs(40), || async {
        agents[1].proc.output().contains("database certificate renewed and reloaded").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", agents[1].proc.output()));
    assert_ne!(std::fs::read_to_string(&cert).unwrap(), old_cert);
    assert_ne!(std::fs::read_to_string(cert.with_file_name("server.key")).unwrap(), old_key, "a new key, made on the host");
    let after = not_before(IPS[1]);
    assert!(after.starts_with("Ssl_server_not_before") && after != before, "new clients get the new certificate: {before} / {after}");
    let t: TaskView = c.post("/api/v1/clusters/tls/servers/tls-3/restart", &serde_json::json!({})).await.unwrap();
    let t = p.wait_task(&t.id, Duration::from_secs(120)).await.unwrap();
    assert_eq!(t.status, atoll_core::TaskStatus::Succeeded, "{:#?}\ntls-3:\n{}", t.steps, log(3));
    let out = atoll_testkit::mariadb(
        &cr,
        IPS[2],
        3306,
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_CLUSTER_SIZE'",
    )
    .unwrap();
    assert_eq!(atoll_testkit::output_text(&out).trim(), "3", "tls-3 rejoined the group over TLS");
}
