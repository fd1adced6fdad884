//! Security review, issue 12, findings 2 and 8, through the platform's own
//! processes (a server and an agent with a data root of its own):
//! preparing a host refuses system paths and owners other than the
//! database user or root; the agent refuses directories outside its data
//! root or through a link, naming the root and the flag; packages are for
//! admins only, an upload over the size limit is refused with 413 before
//! anything is stored, and both are audited.
//!
//! Needs root and the `mysql` account (directories are given to it).

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use atoll_api::v1::{AuditView, TaskView};
use atoll_core::TaskStatus;
use atoll_testkit::{Platform, ServerOpts};
use serde_json::json;

/// This test's host; other tests use other addresses.
const IP: &str = "127.0.0.65";

fn mysql_ids() -> Option<(u32, u32)> {
    std::fs::read_to_string("/etc/passwd").ok()?.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == "mysql").then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?))).flatten()
    })
}

async fn prepare(p: &Platform, data_dir: &Path) -> TaskView {
    let t: TaskView = p
        .client()
        .post("/api/v1/hosts/prepare", &json!({ "hosts": [IP], "profile": "sandbox", "data_dir": data_dir.display().to_string() }))
        .await
        .unwrap();
    p.wait_task(&t.id, Duration::from_secs(30)).await.unwrap()
}

fn step_error(t: &TaskView) -> String {
    t.steps.iter().filter_map(|s| s.error.clone()).collect::<Vec<_>>().join("; ")
}

#[tokio::test]
async fn directories_stay_in_the_data_root_and_packages_are_for_admins() {
    let Some(mysql) = mysql_ids() else {
        eprintln!("skipped: no mysql user");
        return;
    };
    let mut opts = ServerOpts::default();
    opts.extra_args.extend(["--profile", "sandbox"].map(String::from));
    let mut p = Platform::start(opts).await.unwrap();
    p.login_admin().await.unwrap();
    let join = p.join_token().await.unwrap();
    let root = p.dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let _agent = p.start_agent_in("sec", IP, None, &join, &root).unwrap();
    p.wait_hosts_online(1).await.unwrap();
    let c = p.client();

    // The server refuses system paths and other owners before any task.
    let body = |data_dir: &str, owner: Option<&str>| json!({ "hosts": [IP], "profile": "sandbox", "data_dir": data_dir, "owner": owner });
    let err = c.post::<_, TaskView>("/api/v1/hosts/prepare", &body("/etc", None)).await.unwrap_err().to_string();
    assert!(err.contains("data_dir /etc is a system directory"), "{err}");
    let inside = root.join("db").display().to_string();
    let err = c.post::<_, TaskView>("/api/v1/hosts/prepare", &body(&inside, Some("nobody"))).await.unwrap_err().to_string();
    assert!(err.contains("owner \"nobody\"") && err.contains("mysql"), "{err}");

    // The agent refuses what lies outside its root, naming root and flag.
    let outside = p.host_data_dir();
    let t = prepare(&p, &outside).await;
    assert_eq!(t.status, TaskStatus::Failed, "{:#?}", t.steps);
    let err = step_error(&t);
    assert!(
        err.contains(&format!("{} is outside this agent's data root {}", outside.display(), root.display())) && err.contains("--data-root"),
        "{err}"
    );
    assert!(!outside.exists(), "nothing made outside the root");

    // A link the database user put inside the root is not followed.
    let victim = p.dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::os::unix::fs::symlink(&victim, root.join("linked")).unwrap();
    std::os::unix::fs::lchown(root.join("linked"), Some(mysql.0), Some(mysql.1)).unwrap();
    let t = prepare(&p, &root.join("linked/db")).await;
    assert_eq!(t.status, TaskStatus::Failed, "{:#?}", t.steps);
    let err = step_error(&t);
    assert!(err.contains(&format!("{} is a symbolic link", root.join("linked").display())), "{err}");
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0, "nothing made where the link points");
    assert_eq!(std::fs::metadata(&victim).unwrap().uid(), 0);

    // Inside the root, the directory is made and given to mysql.
    let t = prepare(&p, &root.join("db")).await;
    assert_eq!(t.status, TaskStatus::Succeeded, "{:#?}", t.steps);
    assert_eq!(std::fs::metadata(root.join("db")).unwrap().uid(), mysql.0);

    // Packages: an operator may read them, not add, remove or push them.
    let _: serde_json::Value =
        c.post("/api/v1/users", &json!({ "name": "olga", "password": "olga-password-1", "role": "operator" })).await.unwrap();
    let login = |password: &'static str| {
        let url = p.url.clone();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{url}/api/v1/auth/login"))
                .json(&json!({ "username": "olga", "password": password }))
                .send()
                .await
                .unwrap();
            r.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_string()
        }
    };
    let first = login("olga-password-1").await;
    let _: serde_json::Value = atoll_testkit::atoll_client::Client::new(&p.url, Some(first))
        .post("/api/v1/auth/password", &json!({ "current_password": "olga-password-1", "new_password": "olga-password-2" }))
        .await
        .unwrap();
    let olga = login("olga-password-2").await;
    let http = reqwest::Client::new();
    let as_olga = |req: reqwest::RequestBuilder| req.bearer_auth(&olga).send();
    let r = as_olga(http.get(format!("{}/api/v1/packages", p.url))).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = as_olga(http.post(format!("{}/api/v1/packages?name=mine", p.url)).body(vec![0u8; 64])).await.unwrap();
    assert_eq!(r.status().as_u16(), 403, "{:?}", r.text().await);
    let r = as_olga(http.delete(format!("{}/api/v1/packages/mine", p.url))).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = as_olga(http.post(format!("{}/api/v1/packages/mine/push", p.url)).json(&json!({ "hosts": [IP] }))).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // An admin's upload announcing 3 GiB is refused before a byte is read.
    let token = p.token.clone().unwrap();
    let addr = p.addr;
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "POST /api/v1/packages?name=huge HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/gzip\r\nContent-Length: {}\r\n\r\n",
            3u64 << 30
        )
        .unwrap();
        s.write_all(&[0u8; 4096]).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("larger than this server's limit of 2147483648 bytes (2048 MiB, setting package_max_mb)"), "{answer}");
    let stored: Vec<_> = std::fs::read_dir(p.dir.path().join("server/packages")).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(stored.is_empty(), "nothing stored: {stored:?}");
    let audit: Vec<AuditView> = c.get("/api/v1/audit?limit=50").await.unwrap();
    let refused = audit.iter().find(|a| a.action == "package.add" && a.target == "huge").expect("the refused upload is audited");
    assert!(refused.outcome.starts_with("refused: the upload is larger"), "{refused:?}");
    assert_eq!(refused.actor, "admin");
}
