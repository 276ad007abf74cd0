//! The agent's two ways of asking Ceph, against a real Ceph 16.2 cluster whose
//! OSDs are units of the test systemd manager.

use bounce_agent::ceph::asok::{self, AsokError};
use bounce_agent::ceph::mon::MonClient;
use bounce_tests::*;
use std::time::{Duration, Instant};

fn cli() -> MonClient {
    ceph_up().cli()
}

fn socket(id: u32) -> std::path::PathBuf {
    ceph_up().run_dir.join(format!("ceph-osd.{id}.asok"))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn admin_sockets_and_the_cli_see_the_cluster() {
    // One test at a time on the shared cluster.
    let _one = lock_cluster();
    let env = ceph_up();
    // Not inside the async block: it runs its own runtime.
    env.wait_settled(&[]);
    rt().block_on(async {
        the_cluster_as_seen_through(&cli()).await;
        for id in &env.osds {
            let s = asok::osd_status(&socket(*id), Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(s.whoami, *id);
            assert_eq!(s.state, "active");
            assert!(s.newest_map >= s.oldest_map);
        }
        let err = asok::command(
            &socket(0),
            &serde_json::json!({"prefix": "no such command"}),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(
            !matches!(err, AsokError::Io { .. }),
            "the daemon answered: {err}"
        );
        let missing = asok::osd_status(
            &env.run_dir.join("ceph-osd.99.asok"),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(
            missing.to_string().contains("ceph-osd.99.asok"),
            "{missing}"
        );

        let bad = MonClient::new(vec![
            "ceph".into(),
            "--conf".into(),
            "/nonexistent.conf".into(),
        ]);
        assert!(bad.health().await.is_err());
    });
}

/// What both transports must answer about the settled test cluster.
async fn the_cluster_as_seen_through(c: &MonClient) {
    let env = ceph_up();
    let (epoch, osds) = c.osd_dump().await.unwrap();
    assert!(epoch > 0);
    assert_eq!(osds.len(), env.osds.len());
    assert!(osds.iter().all(|o| o.up && o.up_from > 0));
    assert_eq!(c.health().await.unwrap().status, "HEALTH_OK");
    let pgs = c.pgs().await.unwrap();
    assert!(!pgs.is_empty());
    assert!(pgs.iter().all(|p| p.state == "active+clean"), "{pgs:?}");
    // size 3, min_size 2: one OSD may stop, two may not.
    assert!(c.ok_to_stop(&[0]).await.unwrap());
    assert!(!c.ok_to_stop(&[0, 1]).await.unwrap());
}

#[test]
fn the_cli_and_a_librados_session_answer_alike() {
    let _one = lock_cluster();
    let env = ceph_up();
    env.wait_settled(&[]);
    rt().block_on(async {
        let cli = cli();
        let session = MonClient::open(&env.librados()).await.unwrap();
        the_cluster_as_seen_through(&cli).await;
        the_cluster_as_seen_through(&session).await;
        assert_eq!(
            cli.osd_dump().await.unwrap(),
            session.osd_dump().await.unwrap()
        );

        // What one sets, the other sees; each unsets what the other set.
        session.set_flag("noout").await.unwrap();
        assert!(cli.flags().await.unwrap().contains(&"noout".to_string()));
        cli.unset_flag("noout").await.unwrap();
        assert!(
            !session
                .flags()
                .await
                .unwrap()
                .contains(&"noout".to_string())
        );
        session.add_osd_flag("noout", 2).await.unwrap();
        let osd2 = |osds: Vec<bounce_agent::ceph::mon::OsdState>| {
            osds.into_iter().find(|o| o.id == 2).unwrap().state
        };
        assert!(osd2(cli.osd_dump().await.unwrap().1).contains(&"noout".to_string()));
        session.rm_osd_flag("noout", 2).await.unwrap();
        assert!(!osd2(cli.osd_dump().await.unwrap().1).contains(&"noout".to_string()));

        // A refused command is an error that says what the cluster said.
        let e = session
            .set_flag("not-a-flag")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("EINVAL"), "{e}");
        assert!(e.contains("osd set"), "{e}");
        // A session that cannot start names its configuration.
        let bad =
            bounce_agent::scenario::CephAccess::Librados(bounce_agent::scenario::LibradosAccess {
                conf: "/nonexistent/ceph.conf".into(),
                name: "client.admin".into(),
                keyring: None,
            });
        let e = MonClient::open(&bad).await.unwrap_err().to_string();
        assert!(e.contains("/nonexistent/ceph.conf"), "{e}");
    });
}

#[test]
fn an_osd_restart_over_dbus_is_seen_by_both() {
    // One test at a time on the shared cluster.
    let _one = lock_cluster();
    let env = ceph_up();
    // Not inside the async block: it runs its own runtime.
    env.wait_settled(&[]);
    let id = *env.osds.last().unwrap();
    rt().block_on(async {
        let c = cli();
        c.set_flag("noout").await.unwrap();
        assert!(c.flags().await.unwrap().contains(&"noout".to_string()));
        let (_, before) = c.osd_dump().await.unwrap();
        let up_from_before = before.iter().find(|o| o.id == id).unwrap().up_from;
        let t0 = Instant::now();
        systemctl(&["restart", &format!("ceph-osd@{id}.service")]).unwrap();
        // The OSD's own view: back to `active`.
        let mut active_after = None;
        for _ in 0..600 {
            if let Ok(s) = asok::osd_status(&socket(id), Duration::from_secs(1)).await
                && s.state == "active"
            {
                active_after = Some(t0.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(active_after.is_some(), "osd.{id} became active again");
        // The mon's view: up again, from a newer epoch.
        let mut up_again = false;
        for _ in 0..100 {
            let (_, osds) = c.osd_dump().await.unwrap();
            let o = osds.iter().find(|o| o.id == id).unwrap();
            if o.up && o.up_from > up_from_before {
                up_again = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c.unset_flag("noout").await.unwrap();
        assert!(up_again, "osd.{id} is up from a new epoch");
        assert!(!c.flags().await.unwrap().contains(&"noout".to_string()));
    });
}
