//! Nodes that fail in the middle of something, as the fault campaign found
//! them: a node that Galera votes out of its group keeps its `mariadbd`
//! running, disconnected, until someone restarts it; its agent is that
//! someone now, and the node rejoins with a state transfer that also
//! discards the divergent data that got it voted out. And a planned writer
//! move whose target dies once proxies hold new writes for it must end the
//! hold, or every proxy refuses writes while the cluster is healthy.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::time::{Duration, Instant};

use atoll_api::routing::RoutingTable;
use atoll_api::v1::{ClusterCredentials, ClusterView, TaskView};
use atoll_core::{ServerState, TaskStatus};
use atoll_testkit::{Platform, ServerOpts, mariadb, output_text, wait_for};
use serde_json::json;
use sqlx::{Connection, Executor, MySqlConnection};

const IPS: [&str; 3] = ["127.0.0.161", "127.0.0.162", "127.0.0.163"];

fn sql(cr: &ClusterCredentials, ip: &str, statements: &str) -> String {
    let out = mariadb(cr, ip, 3306, statements).unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{ip}: {statements}: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_voted_out_rejoins_and_a_move_to_a_dying_node_releases_the_writes() {
    // The writer move pauses once proxies hold writes for the target.
    let mut opts = ServerOpts::default();
    opts.env.push(("FAILPOINTS".into(), "writer::after_announce=return(4000)".into()));
    let (p, mut agents) = Platform::with_prepared_hosts_using(opts, &IPS).await.unwrap();
    let c = p.client();
    let spec = json!({
        "name": "rj",
        "servers": IPS.iter().enumerate().map(|(i, ip)| json!({ "name": format!("rj-{}", i + 1), "zone": format!("z{}", i + 1), "host": ip })).collect::<Vec<_>>(),
    });
    let t: TaskView = c.post("/api/v1/clusters", &spec).await.unwrap();
    let t = p.wait_task(&t.id, Duration::from_secs(240)).await.unwrap();
    assert_eq!(t.status, TaskStatus::Succeeded, "{:#?}", t.steps);
    let cr: ClusterCredentials = c.get("/api/v1/clusters/rj/credentials").await.unwrap();
    sql(&cr, IPS[0], "CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY)");
    wait_for("the table on rj-3", Duration::from_secs(10), || async {
        mariadb(&cr, IPS[2], 3306, "SELECT COUNT(*) FROM d.t").ok().filter(|o| o.status.success()).map(drop)
    })
    .await
    .unwrap();

    // rj-3 gets a row nobody else has; the same key written through rj-1
    // then cannot be applied there, and the others vote it inconsistent.
    sql(&cr, IPS[2], "SET SESSION wsrep_on = OFF; INSERT INTO d.t VALUES (42)");
    let voted = Instant::now();
    sql(&cr, IPS[0], "INSERT INTO d.t VALUES (42), (43)");
    let state = |v: &ClusterView| v.zones.iter().flat_map(|z| &z.servers).find(|s| s.name == "rj-3").map(|s| s.state);
    wait_for("rj-3 out of the group", Duration::from_secs(20), || async {
        let v: ClusterView = c.get("/api/v1/clusters/rj").await.ok()?;
        (state(&v) != Some(ServerState::Synced)).then_some(())
    })
    .await
    .unwrap();

    // Its agent restarts it; it rejoins by a full state transfer, which
    // leaves exactly what the group has.
    wait_for("rj-3 synced again", Duration::from_secs(120), || async {
        let v: ClusterView = c.get("/api/v1/clusters/rj").await.ok()?;
        (state(&v) == Some(ServerState::Synced)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nagent:\n{}", agents[2].proc.output()));
    eprintln!("rj-3 voted out and back in the group {:.1} s later", voted.elapsed().as_secs_f64());
    let log = agents[2].proc.output();
    assert!(log.contains("out of its group") && log.contains("restarting it so it rejoins"), "{log}");
    assert_eq!(sql(&cr, IPS[2], "SELECT GROUP_CONCAT(id ORDER BY id) FROM d.t").trim(), "42,43");
    assert_eq!(
        sql(&cr, IPS[2], "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_CLUSTER_SIZE'").trim(),
        "3"
    );

    // A planned move to rj-2, whose host dies (agent and mariadbd SIGKILLed)
    // while proxies hold new writes for it: the move fails, and the hold
    // ends with it.
    let routing = || async { c.get::<RoutingTable>("/api/v1/clusters/rj/routing").await.unwrap() };
    assert_eq!(routing().await.writer.as_deref(), Some("rj-1"));
    let t: TaskView = c.post("/api/v1/clusters/rj/writer", &json!({ "server": "rj-2" })).await.unwrap();
    wait_for("proxies told to hold writes for rj-2", Duration::from_secs(10), || async {
        (routing().await.moving_to.as_deref() == Some("rj-2")).then_some(())
    })
    .await
    .unwrap();
    // Its host's agent dies first, so nothing brings it back meanwhile.
    agents[1].proc.kill();
    let rj2 = atoll_agent::processes_under(&p.dir.path().join("hosts-db/rj/rj-2"));
    assert!(!rj2.is_empty(), "rj-2's mariadbd");
    for pid in rj2 {
        let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    let t = p.wait_task(&t.id, Duration::from_secs(120)).await.unwrap();
    assert_eq!(t.status, TaskStatus::Failed, "{:#?}", t.steps);
    let table = routing().await;
    assert_eq!((table.writer.as_deref(), table.moving_to.as_deref()), (Some("rj-1"), None), "the hold ended with the move");
    // A write through a proxy goes to rj-1 at once, not held, not refused.
    let url = format!("mysql://{}:{}@{}:6033/", cr.user, cr.password, IPS[2]);
    let written = tokio::time::timeout(Duration::from_secs(5), async {
        let mut conn = MySqlConnection::connect(&url).await?;
        conn.execute("INSERT INTO d.t VALUES (44)").await
    })
    .await;
    assert!(matches!(written, Ok(Ok(_))), "a write after the failed move: {written:?}");
}
