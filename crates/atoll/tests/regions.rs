//! Regions (issue 13): hosts belong to a region as well as a zone, given by
//! the operator (`atoll host add --region`) or the agent (`--region`); a
//! cluster lives in one region, and requests that would spread one over
//! several are refused naming the servers of each.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use atoll_api::v1::{ClusterView, HostListItem, TaskView};
use atoll_core::TaskStatus;
use atoll_testkit::{Platform, ServerOpts};
use serde_json::json;

const R1: [&str; 2] = ["127.0.9.1", "127.0.9.2"];
const R2: &str = "127.0.9.3";

#[tokio::test]
async fn hosts_have_regions_and_a_cluster_lives_in_one() {
    let mut opts = ServerOpts::default();
    opts.extra_args.extend(["--profile", "sandbox"].map(String::from));
    let mut p = Platform::start(opts).await.unwrap();
    p.login_admin().await.unwrap();
    let c = p.client();
    // Region r1 from the operator, before the agents run; r2 from the
    // agent's own flag.
    for (i, ip) in R1.iter().enumerate() {
        let _: serde_json::Value = c
            .post(
                "/api/v1/hosts",
                &json!({ "address": ip, "name": format!("east-{}", i + 1), "zone": format!("z{}", i + 1), "region": "r1" }),
            )
            .await
            .unwrap();
    }
    let bad =
        c.post::<_, serde_json::Value>("/api/v1/hosts", &json!({ "address": "127.0.9.9", "region": "R 1" })).await.unwrap_err().to_string();
    assert!(bad.contains("invalid region"), "{bad}");
    let join = p.join_token().await.unwrap();
    let _agents = [
        p.start_agent("east-1", R1[0], None, &join).unwrap(),
        p.start_agent("east-2", R1[1], None, &join).unwrap(),
        p.start_agent_with("west-1", R2, Some("z1"), &join, p.dir.path(), &["--name", "west-1", "--region", "r2"]).unwrap(),
    ];
    let hosts = p.wait_hosts_online(3).await.unwrap();
    let region_of = |hs: &[HostListItem], name: &str| hs.iter().find(|h| h.name == name).and_then(|h| h.region.clone());
    assert_eq!(region_of(&hosts, "east-1").as_deref(), Some("r1"));
    assert_eq!(region_of(&hosts, "west-1").as_deref(), Some("r2"));
    let out = p.cli(&["host", "list"]).unwrap();
    let text = atoll_testkit::output_text(&out);
    assert!(text.lines().any(|l| l.contains("west-1") && l.contains("r2")), "{text}");
    let t: TaskView =
        c.post("/api/v1/hosts/prepare", &json!({ "hosts": ["east-1", "east-2", "west-1"], "profile": "sandbox" })).await.unwrap();
    assert_eq!(p.wait_task(&t.id, Duration::from_secs(60)).await.unwrap().status, TaskStatus::Succeeded);

    // Spread over two regions: refused, each region's servers named.
    let spread = json!({ "name": "orders", "allow_single_zone": true, "servers": [
        { "name": "orders-1", "zone": "z1", "host": "east-1" },
        { "name": "orders-2", "zone": "z2", "host": "east-2" },
        { "name": "orders-3", "zone": "z3", "host": "west-1" },
    ] });
    let e = c.post::<_, TaskView>("/api/v1/clusters", &spread).await.unwrap_err().to_string();
    assert!(e.contains("would span regions r1 (orders-1, orders-2), r2 (orders-3)"), "{e}");
    // A region asked for that its hosts are not in: refused.
    let e = c
        .post::<_, TaskView>("/api/v1/clusters", &json!({ "name": "orders", "region": "r2", "allow_single_zone": true, "servers": [{ "name": "orders-1", "zone": "z1", "host": "east-1" }] }))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("is in region r2") && e.contains("r1 (orders-1)"), "{e}");
    assert!(c.get::<ClusterView>("/api/v1/clusters/orders").await.is_err(), "nothing was made");

    // One region: made, and it says where it lives; growing into another
    // region is refused.
    let t: TaskView = c
        .post(
            "/api/v1/clusters",
            &json!({ "name": "orders", "allow_single_zone": true, "servers": [{ "name": "orders-1", "zone": "z1", "host": "east-1" }] }),
        )
        .await
        .unwrap();
    let t = p.wait_task(&t.id, Duration::from_secs(120)).await.unwrap();
    assert_eq!(t.status, TaskStatus::Succeeded, "{:#?}", t.steps);
    let v: ClusterView = c.get("/api/v1/clusters/orders").await.unwrap();
    assert_eq!(v.region, "r1");
    let e = c
        .post::<_, TaskView>("/api/v1/clusters/orders/servers", &json!({ "servers": [{ "zone": "z3", "host": "west-1" }] }))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("cluster orders is in region r1") && e.contains("r2 (orders-2)"), "{e}");
    let out = p.cli(&["cluster", "show", "orders"]).unwrap();
    assert!(atoll_testkit::output_text(&out).contains("region r1"), "{}", atoll_testkit::output_text(&out));
}
