//! The web console in a real headless Chromium (Debian's chromium and
//! chromium-driver): first login with the generated password, the forced
//! password change, the three hosts, a task's live DAG and logs, the audit
//! log.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use atoll_api::v1::TaskView;
use atoll_testkit::browser::{text_of, until};
use atoll_testkit::{Platform, ServerOpts};
use serde_json::json;
use thirtyfour::prelude::*;

#[tokio::test]
async fn log_in_see_three_hosts_and_follow_a_task() {
    let mut p = Platform::start(ServerOpts::default()).await.unwrap();
    let (_chromedriver, d) = atoll_testkit::browser::browser(p.dir.path()).await.unwrap();
    let base = p.url.clone();

    // Anything asks for a login first.
    d.goto(format!("{base}/hosts")).await.unwrap();
    until("the login page", || async { d.current_url().await.ok().filter(|u| u.path() == "/login") }).await;
    d.find(By::Id("username")).await.unwrap().send_keys("admin").await.unwrap();
    d.find(By::Id("password")).await.unwrap().send_keys("not the password").await.unwrap();
    d.find(By::Id("login-submit")).await.unwrap().click().await.unwrap();
    let err = until("the login error", || async {
        let e = d.find(By::Id("login-error")).await.ok()?;
        e.is_displayed().await.ok()?.then_some(())?;
        e.text().await.ok().filter(|t| !t.is_empty())
    })
    .await;
    assert!(err.contains("wrong username or password"), "{err}");

    // The generated password works once, and leads to the password change.
    let password = d.find(By::Id("password")).await.unwrap();
    password.clear().await.unwrap();
    password.send_keys(&p.admin_password).await.unwrap();
    d.find(By::Id("login-submit")).await.unwrap().click().await.unwrap();
    until("the password page", || async { d.current_url().await.ok().filter(|u| u.path() == "/password") }).await;
    let new = "browser-chosen-password";
    d.find(By::Id("current-password")).await.unwrap().send_keys(&p.admin_password).await.unwrap();
    d.find(By::Id("new-password")).await.unwrap().send_keys(new).await.unwrap();
    d.find(By::Id("confirm-password")).await.unwrap().send_keys(new).await.unwrap();
    d.find(By::Id("password-submit")).await.unwrap().click().await.unwrap();
    until("the hosts page", || async { d.current_url().await.ok().filter(|u| u.path() == "/hosts") }).await;

    // Three hosts join; the page shows them online without a reload.
    p.admin_password = new.into();
    p.login_admin().await.unwrap();
    let join = p.join_token().await.unwrap();
    let _agents: Vec<_> = ["127.0.0.41", "127.0.0.42", "127.0.0.43"]
        .iter()
        .enumerate()
        .map(|(i, ip)| p.start_agent(&format!("b{i}"), ip, Some(&format!("z{}", i + 1)), &join).unwrap())
        .collect();
    p.wait_hosts_online(3).await.unwrap();
    let rows = until("three online hosts in the table", || async {
        let rows = d.find_all(By::Css("#hosts tr[data-host]")).await.ok()?;
        let mut online = 0;
        for r in &rows {
            if r.find(By::Css(".status")).await.ok()?.text().await.ok()?.contains("online") {
                online += 1;
            }
        }
        (online == 3).then_some(rows.len())
    })
    .await;
    assert_eq!(rows, 3);
    let summary = text_of(&d, By::Id("hosts-summary")).await.unwrap();
    assert!(summary.contains("3 hosts") && summary.contains("3 online"), "{summary}");

    // A host's page shows its facts.
    d.goto(format!("{base}/hosts/127.0.0.42")).await.unwrap();
    let body = until("host facts", || async { text_of(&d, By::Tag("body")).await.filter(|t| t.contains("127.0.0.42")) }).await;
    assert!(body.contains("z2"), "zone shown");

    // A task: its page shows every step and follows it to the end.
    let data_dir = p.host_data_dir().display().to_string();
    let t: TaskView = p
        .client()
        .post(
            "/api/v1/hosts/prepare",
            &json!({ "hosts": ["127.0.0.41", "127.0.0.42", "127.0.0.43"], "profile": "sandbox", "data_dir": data_dir }),
        )
        .await
        .unwrap();
    d.goto(format!("{base}/tasks")).await.unwrap();
    let link = until("the task in the list", || async { d.find(By::Css(format!("#tasks tr[data-task='{}'] a", t.id))).await.ok() }).await;
    link.click().await.unwrap();
    until("the task page", || async { d.current_url().await.ok().filter(|u| u.path() == format!("/tasks/{}", t.id)) }).await;
    let steps = d.find_all(By::Css("#dag .step")).await.unwrap();
    assert_eq!(steps.len(), 6, "two steps per host");
    until("the task to succeed on the page", || async { text_of(&d, By::Id("task-status")).await.filter(|s| s == "succeeded") }).await;
    until("every step succeeded on the page", || async {
        let statuses = d.find_all(By::Css("#dag .step .step-status")).await.ok()?;
        let mut n = 0;
        for s in statuses {
            if s.text().await.ok()? == "succeeded" {
                n += 1;
            }
        }
        (n == 6).then_some(())
    })
    .await;
    let logs = until("step logs", || async { text_of(&d, By::Id("logs")).await.filter(|l| l.contains("done")) }).await;
    assert!(logs.contains("dirs@"), "{logs}");

    // The audit log shows who did what.
    d.goto(format!("{base}/audit")).await.unwrap();
    let audit = until("the audit table", || async { text_of(&d, By::Id("audit")).await }).await;
    for action in ["auth.login", "auth.password", "host.prepare"] {
        assert!(audit.contains(action), "audit page lacks {action}");
    }
    d.quit().await.unwrap();
}
