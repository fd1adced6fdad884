//! Every route's authentication and authorisation, accounts, and the
//! errors bad input gets.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use atoll_api::v1::*;
use atoll_client::{Client, ClientError};
use atoll_testkit::{Platform, ServerOpts};
use serde_json::{Value, json};
use std::time::Duration;

fn status<T>(r: Result<T, ClientError>) -> (u16, String) {
    match r {
        Ok(_) => (200, String::new()),
        Err(ClientError::Api { status, message, .. }) => (status, message),
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// Sends a raw request, returning status and JSON body.
async fn raw(p: &Platform, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method.parse().unwrap(), format!("{}{}", p.url, path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A new user with `role`: logged in, with a password of their own and an
/// API token (a token, unlike a session, outlives a logout).
async fn user_token(p: &Platform, admin: &Client, name: &str, role: atoll_core::Role) -> String {
    let (c, _) = pending_session(p, admin, name, role).await;
    let _: Value = c
        .post(
            "/api/v1/auth/password",
            &ChangePasswordRequest { current_password: format!("{name}-password-1"), new_password: format!("{name}-password-2") },
        )
        .await
        .unwrap();
    let t: CreatedToken = c.post("/api/v1/tokens", &CreateTokenRequest { name: "tests".into(), ttl_days: None }).await.unwrap();
    t.token
}

/// A new user with `role`, logged in, who has not chosen a password yet,
/// and the session's token.
async fn pending_session(p: &Platform, admin: &Client, name: &str, role: atoll_core::Role) -> (Client, String) {
    let _: UserView =
        admin.post("/api/v1/users", &CreateUserRequest { name: name.into(), password: format!("{name}-password-1"), role }).await.unwrap();
    let mut c = Client::new(&p.url, None);
    let r: LoginResponse =
        c.post("/api/v1/auth/login", &LoginRequest { username: name.into(), password: format!("{name}-password-1") }).await.unwrap();
    assert!(r.must_change_password, "a new user must choose a password");
    c.set_token(Some(r.token.clone()));
    (c, r.token)
}

/// The one public route of the document.
const PUBLIC: &[(&str, &str)] = &[("POST", "/api/v1/auth/login")];
/// Routes outside the document that answer anyone: health, readiness and
/// the document itself.
const PUBLIC_UNDOCUMENTED: &[&str] = &["/healthz", "/readyz", "/api/v1/openapi.json"];
/// The routes a logged-in caller may use before choosing a password (they
/// carry no role in the document).
const BEFORE_NEW_PASSWORD: &[(&str, &str)] =
    &[("GET", "/api/v1/auth/me"), ("POST", "/api/v1/auth/logout"), ("POST", "/api/v1/auth/password")];
/// The writes a viewer may make: to their own session, password and
/// tokens. Every other write needs the operator or admin role.
const VIEWER_WRITES: &[(&str, &str)] =
    &[("POST", "/api/v1/auth/logout"), ("POST", "/api/v1/auth/password"), ("POST", "/api/v1/tokens"), ("DELETE", "/api/v1/tokens/{id}")];

/// Who may call an operation, as its `security` in the document says: a
/// bearer scope names the least role (see `api/mod.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Public,
    /// Any logged-in caller, also one who must still choose a password.
    LoggedIn,
    Role(atoll_core::Role),
}

fn access(op: &Value) -> Access {
    let Some(requirements) = op["security"].as_array() else { return Access::LoggedIn };
    if requirements.iter().any(|r| r.as_object().is_some_and(|o| o.is_empty())) {
        return Access::Public;
    }
    let scopes: Vec<&str> = requirements.iter().filter_map(|r| r["bearer"].as_array()).flatten().filter_map(Value::as_str).collect();
    match scopes.as_slice() {
        [] => Access::LoggedIn,
        [role] => Access::Role(role.parse().unwrap_or_else(|e| panic!("unknown role scope {role:?}: {e}"))),
        more => panic!("several role scopes {more:?}"),
    }
}

/// Every route of the OpenAPI document, with its path parameters filled
/// in: without credentials it is refused (login aside); each role below the
/// one its marker names is refused, each role at or above it is not; a
/// user who must still choose a password is refused everything but the
/// routes to do so. A route added without authentication, or whose marker
/// says other than its extractor, fails here.
#[tokio::test]
async fn every_route_refuses_callers_below_its_documented_role() {
    use atoll_core::Role;
    let mut p = Platform::start(ServerOpts::default()).await.unwrap();
    let admin = p.login_admin().await.unwrap();
    let tokens = [
        (Role::Viewer, user_token(&p, &admin, "vera", Role::Viewer).await),
        (Role::Operator, user_token(&p, &admin, "otto", Role::Operator).await),
        (Role::Admin, p.token.clone().unwrap()),
    ];
    let (_, pending) = pending_session(&p, &admin, "pia", Role::Admin).await;
    let (code, body) = raw(&p, "GET", "/api/v1/hosts", Some(&pending), None).await;
    assert_eq!(code, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("new password"), "{body}");

    for path in PUBLIC_UNDOCUMENTED {
        let resp = reqwest::get(format!("{}{path}", p.url)).await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "GET {path} without credentials");
    }
    let spec: Value = reqwest::get(format!("{}/api/v1/openapi.json", p.url)).await.unwrap().json().await.unwrap();
    let paths = spec["paths"].as_object().expect("openapi paths");
    let mut routes = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                routes.push((method.to_uppercase(), path.clone(), access(op)));
            }
        }
    }
    // The pending caller's logout ends its session: last.
    routes.sort_by_key(|(m, path, _)| (path == "/api/v1/auth/logout", m.clone(), path.clone()));
    let mut seen = std::collections::BTreeMap::new();
    for (m, path, access) in &routes {
        let route = (m.as_str(), path.as_str());
        let is_write = m != "GET";
        assert_eq!(*access == Access::Public, PUBLIC.contains(&route), "{m} {path} is {access:?} in the document");
        assert_eq!(
            *access == Access::LoggedIn,
            BEFORE_NEW_PASSWORD.contains(&route),
            "{m} {path} carries no role: mark it in its #[utoipa::path] with security((\"bearer\" = [\"viewer\"])) (or operator, admin)"
        );
        if is_write && matches!(access, Access::LoggedIn | Access::Role(Role::Viewer)) {
            assert!(VIEWER_WRITES.contains(&route), "{m} {path} is a write a viewer may make: mark it operator or admin");
        }
        let mut concrete = path.clone();
        while let Some(start) = concrete.find('{') {
            let end = concrete[start..].find('}').unwrap() + start;
            concrete.replace_range(start..=end, &format!("no-{}", &path[start + 1..end].replace(['{', '}'], "")));
        }
        let body = is_write.then_some("{}");
        let call = |token: Option<String>| {
            let (m, concrete) = (m.clone(), concrete.clone());
            let p = &p;
            async move { raw(p, &m, &concrete, token.as_deref(), body).await }
        };

        let (code, body) = call(None).await;
        if *access == Access::Public {
            assert_ne!(code, 401, "{m} {path} is public but refused a call without credentials: {body}");
        } else {
            assert_eq!(code, 401, "{m} {path} without credentials answered {code} {body}");
            assert!(body["message"].as_str().is_some_and(|s| !s.is_empty()), "{m} {path}: error without message");
        }
        let (code, body) = call(Some(pending.clone())).await;
        match access {
            Access::Role(_) => assert_eq!(code, 403, "{m} {path} answered {code} to a user who must choose a password: {body}"),
            _ => assert!(![401, 403].contains(&code), "{m} {path} refused a user who must choose a password: {code} {body}"),
        }
        for (role, token) in &tokens {
            let (code, body) = call(Some(token.clone())).await;
            let needed = match access {
                Access::Role(r) => *r,
                _ => Role::Viewer,
            };
            if role.allows(needed) {
                assert!(![401, 403].contains(&code), "{m} {path} is marked {needed} but refused a(n) {role}: {code} {body}");
                assert!(code < 500, "{m} {path} as {role}: {code} {body}");
            } else {
                assert_eq!(code, 403, "{m} {path} is marked {needed} but a(n) {role} got {code} {body}");
            }
        }
        *seen.entry(format!("{access:?}")).or_insert(0) += 1;
    }
    assert!(routes.len() >= 60, "only {} routes documented", routes.len());
    assert!(seen.get("Role(Admin)").is_some_and(|n| *n >= 8), "admin-only routes: {seen:?}");
    assert!(seen.get("Role(Operator)").is_some_and(|n| *n >= 20), "operator routes: {seen:?}");
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_changes_nothing() {
    let mut p = Platform::start(ServerOpts::default()).await.unwrap();
    let admin = p.login_admin().await.unwrap();
    let token = p.token.clone().unwrap();

    // Malformed JSON and unknown fields.
    let (code, body) = raw(&p, "POST", "/api/v1/hosts", Some(&token), Some("{not json")).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("invalid request body"));
    let (code, body) = raw(&p, "POST", "/api/v1/hosts", Some(&token), Some(r#"{"address":"127.0.0.30","colour":"red"}"#)).await;
    assert_eq!(code, 400);
    assert!(body["message"].as_str().unwrap().contains("colour"), "{body}");
    let (code, body) = raw(&p, "POST", "/api/v1/hosts", Some(&token), Some(r#"{"address":"not-an-ip"}"#)).await;
    assert_eq!(code, 400);
    assert!(body["message"].as_str().unwrap().contains("not-an-ip"));

    // Duplicate address: the second add is refused and nothing changes.
    let _: AddedHost = admin
        .post(
            "/api/v1/hosts",
            &AddHostRequest { address: "127.0.0.30".into(), name: Some("db1".into()), zone: Some("z1".into()), region: None },
        )
        .await
        .unwrap();
    let (code, msg) = status(
        admin
            .post::<_, AddedHost>(
                "/api/v1/hosts",
                &AddHostRequest { address: "127.0.0.30".into(), name: Some("db2".into()), zone: None, region: None },
            )
            .await,
    );
    assert_eq!(code, 409);
    assert!(msg.contains("127.0.0.30"), "{msg}");
    let hosts: Vec<HostListItem> = admin.get("/api/v1/hosts").await.unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!((hosts[0].name.as_str(), hosts[0].cpu_cores, hosts[0].checks.as_ref()), ("db1", None, None), "pending: no facts yet");

    // Unknown host, unknown task, unknown profile.
    let (code, msg) = status(admin.get::<HostView>("/api/v1/hosts/nope").await);
    assert_eq!(code, 404);
    assert!(msg.contains("atoll host list"), "{msg}");
    let (code, _) = status(admin.get::<TaskView>("/api/v1/tasks/nope").await);
    assert_eq!(code, 404);
    let (code, msg) = status(admin.post::<_, CheckResponse>("/api/v1/hosts/check", &json!({ "profile": "prod" })).await);
    assert_eq!(code, 400);
    assert!(msg.contains("production, sandbox"), "{msg}");
    // Preparing a host whose agent never registered is refused up front.
    let (code, msg) = status(admin.post::<_, TaskView>("/api/v1/hosts/prepare", &json!({ "hosts": ["db1"] })).await);
    assert_eq!(code, 409, "{msg}");
    let tasks: Vec<TaskView> = admin.get("/api/v1/tasks").await.unwrap();
    assert!(tasks.is_empty(), "a refused request must not leave a task");

    // A host that does not answer fails its check with the reason.
    let r: CheckResponse = admin.post("/api/v1/hosts/check", &json!({ "hosts": ["db1"], "profile": "sandbox" })).await.unwrap();
    assert_eq!(r.worst, atoll_plan::check::CheckStatus::Fail);
    assert_eq!(r.hosts[0].results[0].item, "agent.reachable");

    // Agent endpoints: a wrong agent token is refused.
    let (code, _) = raw(
        &p,
        "POST",
        "/agent/v1/heartbeat",
        Some("wrong"),
        Some(&json!({ "host_id": hosts[0].id, "address": "127.0.0.30", "agent_url": "http://127.0.0.30:1", "facts": null }).to_string()),
    )
    .await;
    assert_eq!(code, 401);
}

#[tokio::test]
async fn idle_sessions_end_and_failed_logins_lock_the_source() {
    let mut opts = ServerOpts::default();
    opts.extra_args.extend(["--login-max-failures", "3", "--login-lock-s", "60", "--session-idle-s", "1"].map(String::from));
    let mut p = Platform::start(opts.clone()).await.unwrap();
    p.login_admin().await.unwrap();

    // A session unused for longer than the idle time ends; API tokens do not.
    let c = Client::new(&p.url, None);
    let r: LoginResponse =
        c.post("/api/v1/auth/login", &LoginRequest { username: "admin".into(), password: p.admin_password.clone() }).await.unwrap();
    let (code, _) = raw(&p, "GET", "/api/v1/auth/me", Some(&r.token), None).await;
    assert_eq!(code, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (code, body) = raw(&p, "GET", "/api/v1/auth/me", Some(&r.token), None).await;
    assert_eq!(code, 401, "{body}");
    assert!(body["message"].as_str().unwrap().contains("expired"), "{body}");
    let (code, _) = raw(&p, "GET", "/api/v1/auth/me", p.token.as_deref(), None).await;
    assert_eq!(code, 200, "API tokens do not idle out");

    // Three failures lock the source address, even for the right password.
    for _ in 0..2 {
        let (code, msg) = status(
            c.post::<_, LoginResponse>("/api/v1/auth/login", &LoginRequest { username: "admin".into(), password: "wrong-password".into() })
                .await,
        );
        assert_eq!((code, msg.as_str()), (401, "wrong username or password"));
    }
    let (code, msg) = status(
        c.post::<_, LoginResponse>("/api/v1/auth/login", &LoginRequest { username: "admin".into(), password: "wrong-password".into() })
            .await,
    );
    assert_eq!(code, 429, "{msg}");
    let (code, msg) = status(
        c.post::<_, LoginResponse>("/api/v1/auth/login", &LoginRequest { username: "admin".into(), password: p.admin_password.clone() })
            .await,
    );
    assert_eq!(code, 429);
    assert!(msg.contains("try again in"), "{msg}");
    let audit: Vec<AuditView> = p.client().get("/api/v1/audit").await.unwrap();
    assert!(audit.iter().any(|a| a.action == "auth.login" && a.outcome.starts_with("refused")));

    // The lock lives in MetaDB: a restarted server keeps it.
    p.restart_server(opts).await.unwrap();
    let (code, _) = status(
        c.post::<_, LoginResponse>("/api/v1/auth/login", &LoginRequest { username: "admin".into(), password: p.admin_password.clone() })
            .await,
    );
    assert_eq!(code, 429, "the lock must survive a server restart");
}

/// Host listings come a page at a time, in name order, with filters; the
/// CLI reads every page (or the one asked for).
#[tokio::test]
async fn host_listings_page_and_filter() {
    let mut p = Platform::start(ServerOpts::default()).await.unwrap();
    let admin = p.login_admin().await.unwrap();
    for (i, (name, zone)) in [("db-a", "z1"), ("db-b", "z2"), ("db-c", "z1"), ("web-a", "z1"), ("web-b", "z2")].iter().enumerate() {
        let _: AddedHost =
            admin.post("/api/v1/hosts", &json!({ "address": format!("127.0.2.{}", i + 1), "name": name, "zone": zone })).await.unwrap();
    }
    let token = p.token.clone().unwrap();
    let get = |path: String| {
        let token = token.clone();
        let url = format!("{}{path}", p.url);
        async move {
            let resp = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap();
            let link = resp.headers().get("link").map(|l| l.to_str().unwrap().to_string()).unwrap_or_default();
            let hosts: Vec<HostListItem> = resp.json().await.unwrap();
            (hosts.into_iter().map(|h| h.name).collect::<Vec<_>>(), link)
        }
    };
    let (names, link) = get("/api/v1/hosts?limit=2".into()).await;
    assert_eq!(names, ["db-a", "db-b"]);
    assert_eq!(link, "</api/v1/hosts?limit=2&after=db-b>; rel=\"next\"");
    let (names, link) = get("/api/v1/hosts?limit=2&after=web-a".into()).await;
    assert_eq!((names, link.as_str()), (vec!["web-b".to_string()], ""), "the last page has no next link");
    let (names, link) = get("/api/v1/hosts?limit=1&zone=z1&name=db".into()).await;
    assert_eq!(names, ["db-a"]);
    assert_eq!(link, "</api/v1/hosts?limit=1&after=db-a&zone=z1&name=db>; rel=\"next\"");
    let (names, _) = get("/api/v1/hosts?status=pending".into()).await;
    assert_eq!(names.len(), 5);
    let (code, body) = raw(&p, "GET", "/api/v1/hosts?limit=0", Some(&token), None).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("limit must be 1 to 1000"), "{body}");

    let out = p.cli(&["host", "list", "--limit", "2", "--after", "db-b"]).unwrap();
    let text = atoll_testkit::output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("db-c") && text.contains("web-a") && !text.contains("web-b") && !text.contains("db-a"), "{text}");
    let out = p.cli(&["host", "list", "--zone", "z2"]).unwrap();
    let text = atoll_testkit::output_text(&out);
    assert!(text.contains("db-b") && text.contains("web-b") && !text.contains("db-a"), "{text}");
}
