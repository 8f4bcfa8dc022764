//! The environment's network: a namespace per node, the control-plane host's bridge that joins
//! them, addresses and routes from the [`Plan`]. No namespace gets a default route, so nothing
//! can leave the machine; nothing is added to the host's own namespace.

use crate::Error;
use crate::cmd::{ip, run};
use crate::plan::{BRIDGE, FABRIC_PREFIX, NodePlan, Plan, Role, Route};

/// Creates every namespace, the bridge, each worker's veth pair, addresses, routes and the
/// per-namespace sysctls. Fails if a namespace of this environment already exists (a previous
/// one was not torn down: `tikv-env down` removes it).
pub fn create(plan: &Plan) -> Result<(), Error> {
    let cp = plan.control_plane();
    for node in &plan.nodes {
        run("ip", ["netns", "add", node.netns.as_str()])?;
        ip(&node.netns, ["link", "set", "lo", "up"])?;
    }
    ip(&cp.netns, ["link", "add", BRIDGE, "type", "bridge"])?;
    ip(
        &cp.netns,
        [
            "addr",
            "add",
            &format!("{}/{FABRIC_PREFIX}", cp.ip),
            "dev",
            BRIDGE,
        ],
    )?;
    ip(&cp.netns, ["link", "set", BRIDGE, "up"])?;
    for node in plan.workers() {
        let port = bridge_port(node)?;
        ip(
            &cp.netns,
            [
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &node.netns,
            ],
        )?;
        ip(&cp.netns, ["link", "set", port, "master", BRIDGE, "up"])?;
        ip(
            &node.netns,
            [
                "addr",
                "add",
                &format!("{}/{FABRIC_PREFIX}", node.ip),
                "dev",
                "eth0",
            ],
        )?;
        ip(&node.netns, ["link", "set", "eth0", "up"])?;
    }
    for node in &plan.nodes {
        for (dst, route) in plan.routes(node) {
            match route {
                Route::Via(gw) => ip(&node.netns, ["route", "add", &dst, "via", &gw.to_string()])?,
                Route::Dev(dev) => ip(&node.netns, ["route", "add", &dst, "dev", &dev])?,
            };
        }
        sysctls(node)?;
    }
    Ok(())
}

/// Per-namespace kernel settings: forwarding (a node routes its pods' traffic), and bridged pod
/// traffic through iptables on workers (kube-proxy needs it for a pod reaching a Service whose
/// endpoint is on the same bridge). Off on the control-plane host, whose bridge only switches
/// between nodes: their traffic must not meet its kube-proxy's rules.
fn sysctls(node: &NodePlan) -> Result<(), Error> {
    let bridged = if node.role == Role::Worker { 1 } else { 0 };
    run(
        "ip",
        [
            "netns",
            "exec",
            &node.netns,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
            &format!("net.bridge.bridge-nf-call-iptables={bridged}"),
        ],
    )?;
    Ok(())
}

fn bridge_port(node: &NodePlan) -> Result<&str, Error> {
    node.bridge_port
        .as_deref()
        .ok_or_else(|| Error::NotFound(format!("node {} has no bridge port", node.name)))
}

/// Unplugs a worker from the bridge: it can reach no other node, the control plane or DNS, and
/// nothing reaches it; its links stay up and its routes stay, as when a switch port dies.
pub fn cut(plan: &Plan, node: &NodePlan) -> Result<(), Error> {
    ip(
        &plan.control_plane().netns,
        ["link", "set", bridge_port(node)?, "nomaster"],
    )?;
    Ok(())
}

/// Plugs a worker back into the bridge.
pub fn restore(plan: &Plan, node: &NodePlan) -> Result<(), Error> {
    ip(
        &plan.control_plane().netns,
        ["link", "set", bridge_port(node)?, "master", BRIDGE],
    )?;
    Ok(())
}

/// Whether the named network namespace exists.
pub fn exists(netns: &str) -> bool {
    std::path::Path::new("/run/netns").join(netns).exists()
}

/// Deletes the namespaces that exist (their devices go with them); every process in them must
/// be gone already.
pub fn delete(plan: &Plan) -> Result<(), Error> {
    for node in &plan.nodes {
        if exists(&node.netns) {
            run("ip", ["netns", "del", node.netns.as_str()])?;
        }
    }
    Ok(())
}
