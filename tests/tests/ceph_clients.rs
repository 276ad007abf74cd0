//! The agent's two ways of asking Ceph, against a real Ceph 16.2 cluster whose
//! OSDs are units of the test systemd manager.

use bounce_agent::ceph::asok::{self, AsokError};
use bounce_agent::ceph::cli::CephCli;
use bounce_tests::*;
use std::time::{Duration, Instant};

fn cli() -> CephCli {
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

        let c = cli();
        let (epoch, osds) = c.osd_dump().await.unwrap();
        assert!(epoch > 0);
        assert_eq!(osds.len(), env.osds.len());
        assert!(osds.iter().all(|o| o.up && o.up_from > 0));
        // size 3, min_size 2: one OSD may stop, two may not.
        assert!(c.ok_to_stop(&[0]).await.unwrap());
        assert!(!c.ok_to_stop(&[0, 1]).await.unwrap());
        let bad = CephCli::new(vec![
            "ceph".into(),
            "--conf".into(),
            "/nonexistent.conf".into(),
        ]);
        assert!(bad.health().await.is_err());
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
