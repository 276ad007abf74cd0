//! The node's facts for `summary.json`: what a reader needs to judge the numbers.

use crate::target::ResolvedTarget;
use bounce_wire::NodeFacts;

pub fn node_hostname() -> String {
    sysinfo::System::host_name().unwrap_or_else(|_| "unknown".into())
}

pub fn gather(docker: Option<(String, String)>) -> NodeFacts {
    let memory_bytes = sysinfo::System::new()
        .map(|mut sys| {
            sys.refresh_memory();
            sys.total_memory()
        })
        .unwrap_or(0);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let (docker_version, docker_api_version) = match docker {
        Some((v, a)) => (Some(v), Some(a)),
        None => (None, None),
    };
    NodeFacts {
        hostname: node_hostname(),
        kernel: sysinfo::System::kernel_version().ok(),
        os: sysinfo::System::long_os_version().ok(),
        cpus,
        memory_bytes,
        docker_version,
        docker_api_version,
        ceph_version: None,
        images: Default::default(),
    }
}

/// What the targets themselves tell about versions: each container's image
/// (a kolla tag names the release) and Ceph's version from an OSD's admin
/// socket, each asked through its own driver. Best effort: a fact that
/// cannot be read is left out, not guessed.
pub async fn of_targets(facts: &mut NodeFacts, targets: &[ResolvedTarget]) {
    for t in targets {
        t.handle.facts(&t.service, facts).await;
    }
}
