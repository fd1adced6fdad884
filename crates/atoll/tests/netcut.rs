//! A server cut off from MetaDB by the network, not killed: it is alive,
//! answers its API, and its packets to MetaDB vanish (no refusal, no
//! reset), as when a link or a switch port fails. It held the controllers.
//! It must stop acting at its own deadline, another server must take over,
//! it must answer in bounded time and say why (a read is retryable; a
//! change has an unknown outcome), and once the link is back it must catch
//! up and serve again without leading.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::time::{Duration, Instant};

use atoll_api::v1::{CreateTokenRequest, CreatedToken, PlatformView};
use atoll_client::{Client, ClientError, Servers};
use atoll_testkit::metadb::MariaDb;
use atoll_testkit::netns::Netns;
use atoll_testkit::prober::Prober;
use atoll_testkit::{Platform, ServerOpts, wait_for};

const LEASE_MS: u64 = 1500;

fn opts(metadb: &str) -> ServerOpts {
    let mut o = ServerOpts::default();
    o.extra_args.extend(["--metadb-url", metadb, "--leader-lease-ms", &LEASE_MS.to_string(), "--profile", "sandbox"].map(String::from));
    o
}

async fn view(c: &Client) -> Option<PlatformView> {
    c.get("/api/v1/platform").await.ok()
}

fn generation(v: &PlatformView) -> i64 {
    v.leader.as_ref().map_or(0, |l| l.generation)
}

async fn leader_gauge(url: &str) -> Option<f64> {
    let text = reqwest::get(format!("{url}/metrics")).await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix("atoll_leader ")).and_then(|v| v.trim().parse().ok())
}

async fn status_of(url: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{url}/readyz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_metadb_stops_leading_answers_in_bounded_time_and_catches_up() {
    let ns = Netns::create("cut", 213).unwrap();
    let metadb = MariaDb::start_on(&ns.host_ip).await.unwrap();

    // The server in the namespace starts first, so it takes the controllers.
    let mut inside = opts(&metadb.url);
    inside.netns = Some(ns.name.clone());
    inside.listen_ip = Some(ns.ns_ip.clone());
    let mut cut = Platform::start(inside).await.unwrap();
    cut.login_admin().await.unwrap();
    let peers = [
        cut.start_peer("a", "127.0.0.135", &opts(&metadb.url)).await.unwrap(),
        cut.start_peer("b", "127.0.0.136", &opts(&metadb.url)).await.unwrap(),
    ];
    let token = cut.token.clone();
    let others = Client::over(&Servers::new(&[&peers[0].url, &peers[1].url]), token.clone(), Duration::from_secs(15));
    let on_cut = Client::new(&cut.url, token.clone());
    let before = wait_for("three live servers, the namespaced one leading", Duration::from_secs(20), || async {
        let v = view(&others).await?;
        let leader = v.servers.iter().find(|s| s.leader)?;
        (v.servers.iter().filter(|s| s.live).count() == 3 && leader.url == cut.url).then_some(v)
    })
    .await
    .unwrap();
    assert_eq!(leader_gauge(&cut.url).await, Some(1.0));

    // A client that knows every server, the cut one first.
    let all = Client::over(&Servers::new(&[&cut.url, &peers[0].url, &peers[1].url]), token.clone(), Duration::from_secs(3));
    let prober = Prober::start(all, "/api/v1/hosts", Duration::from_millis(100));

    ns.cut_tcp_to(&ns.host_ip, metadb.port).unwrap();
    let cut_at = Instant::now();

    // The controllers move to a server that can reach MetaDB, under a new
    // generation; the cut server stopped acting by then.
    let after = wait_for("another server runs the controllers", Duration::from_secs(20), || async {
        let v = view(&others).await?;
        let leader = v.servers.iter().find(|s| s.leader)?;
        (leader.url != cut.url && generation(&v) > generation(&before)).then_some(v)
    })
    .await
    .unwrap();
    let takeover = cut_at.elapsed();
    eprintln!("controllers moved after {takeover:?} (lease {LEASE_MS} ms)");
    assert!(takeover < Duration::from_secs(8), "takeover took {takeover:?}");
    assert_eq!(leader_gauge(&cut.url).await, Some(0.0), "the cut server still says it leads after the takeover");

    // It answers in bounded time, and says why.
    let t = Instant::now();
    assert_eq!(status_of(&cut.url).await, 503, "/readyz on the cut server");
    assert!(t.elapsed() < Duration::from_secs(4), "/readyz took {:?}", t.elapsed());
    let t = Instant::now();
    let read = on_cut.get::<serde_json::Value>("/api/v1/hosts").await.unwrap_err();
    assert!(matches!(&read, ClientError::Api { status: 503, .. }), "{read:?}");
    assert!(read.to_string().contains("metadata store"), "{read}");
    assert!(t.elapsed() < Duration::from_secs(13), "a read took {:?}", t.elapsed());
    let t = Instant::now();
    let write = on_cut
        .post::<_, CreatedToken>("/api/v1/tokens", &CreateTokenRequest { name: "during-the-cut".into(), ttl_days: None })
        .await
        .unwrap_err();
    assert!(matches!(&write, ClientError::Api { status: 503 | 504, .. }), "{write:?}");
    assert!(write.to_string().contains("metadata store"), "{write}");
    assert!(t.elapsed() < Duration::from_secs(13), "a write took {:?}", t.elapsed());
    // The rest of the platform takes changes meanwhile.
    let _: CreatedToken =
        others.post("/api/v1/tokens", &CreateTokenRequest { name: "on-the-others".into(), ttl_days: None }).await.unwrap();

    // The link comes back: the server catches up, serves, and follows.
    ns.heal().unwrap();
    let healed = Instant::now();
    wait_for("the cut server ready again", Duration::from_secs(60), || async { (status_of(&cut.url).await == 200).then_some(()) })
        .await
        .unwrap();
    let v = wait_for("the cut server sees the new leader", Duration::from_secs(30), || async {
        let v = view(&on_cut).await?;
        v.servers.iter().find(|s| s.leader).filter(|l| l.url != cut.url)?;
        v.servers.iter().any(|s| s.url == cut.url && s.live).then_some(v)
    })
    .await
    .unwrap();
    eprintln!("caught up {:?} after the link came back", healed.elapsed());
    assert_eq!(generation(&v), generation(&after), "leadership stayed where it moved");
    let _: CreatedToken =
        on_cut.post("/api/v1/tokens", &CreateTokenRequest { name: "after-the-cut".into(), ttl_days: None }).await.unwrap();
    assert_eq!(leader_gauge(&cut.url).await, Some(0.0));

    let tally = prober.stop().await;
    eprintln!("all-server client: {} asked, {} failed, longest outage {:?}", tally.asked, tally.failed, tally.longest_outage);
    assert_eq!(tally.failed, 0, "a client that knows every server saw failures");
    drop(peers);
    drop(cut);
    drop(metadb);
    drop(ns);
}
