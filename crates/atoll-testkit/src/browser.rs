//! A headless Chromium driven through Debian's chromedriver, for tests of
//! the console as users see it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use thirtyfour::prelude::*;

use crate::{Proc, free_port, wait_for};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Starts chromedriver (killed when the returned `Proc` drops) and a
/// headless browser with its profile under `dir`.
pub async fn browser(dir: &Path) -> anyhow::Result<(Proc, WebDriver)> {
    anyhow::ensure!(
        Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
        "browser tests need Debian's chromium and chromium-driver: run scripts/test.sh, which installs them"
    );
    let port = free_port("127.0.0.1");
    let mut cmd = Command::new(CHROMEDRIVER);
    cmd.arg(format!("--port={port}"));
    let driver_proc = Proc::spawn("chromedriver", cmd, dir.join("chromedriver.log"))?;
    let url = format!("http://127.0.0.1:{port}");
    wait_for("chromedriver", Duration::from_secs(20), || {
        let status = format!("{url}/status");
        async move { reqwest::get(&status).await.ok().filter(|r| r.status().is_success()).map(|_| ()) }
    })
    .await?;
    let mut caps = DesiredCapabilities::chrome();
    caps.set_binary(CHROMIUM)?;
    for arg in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,800",
    ] {
        caps.add_arg(arg)?;
    }
    caps.add_arg(&format!("--user-data-dir={}", dir.join("chromium-profile").display()))?;
    let driver = WebDriver::new(&url, caps).await?;
    Ok((driver_proc, driver))
}

/// Polls the page until `f` finds what it wants (20 s at most).
pub async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn text_of(d: &WebDriver, by: By) -> Option<String> {
    d.find(by).await.ok()?.text().await.ok()
}

/// Signs in through the login form as `user` (whose password was changed
/// already) and waits for the hosts page.
pub async fn sign_in(d: &WebDriver, base: &str, user: &str, password: &str) -> anyhow::Result<()> {
    d.goto(format!("{base}/login")).await?;
    d.find(By::Id("username")).await?.send_keys(user).await?;
    d.find(By::Id("password")).await?.send_keys(password).await?;
    d.find(By::Id("login-submit")).await?.click().await?;
    until("the hosts page after signing in", || async { d.current_url().await.ok().filter(|u| u.path() == "/hosts") }).await;
    Ok(())
}
