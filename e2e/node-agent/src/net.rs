//! Loopback addresses for nodes and pods, and name resolution through `/etc/hosts`.
//!
//! # Addresses
//!
//! All of `127.0.0.0/8` is local on Linux, so every pod gets its own address there and many pods
//! can listen on the same port. An agent claims a whole `/16`, `127.B.0.0/16`, by holding an
//! exclusive `flock` on `<lock dir>/block-B.lock` for its lifetime ([`AddressBlock::claim`]).
//! The kernel releases the lock when the agent exits, however it exits, so a crashed agent's
//! block becomes free again and two agents (e.g. several test binaries at once) never hand out
//! the same address. Nodes get `127.B.0.N`; pods get addresses from `127.B.1.1` upwards, never
//! reused while the agent runs (until the 65 000 addresses wrap around).
//!
//! # Names
//!
//! Every process on the machine — operator, test binaries, pd-server, tikv-sim — resolves
//! names through the system resolver, which reads `/etc/hosts` first when
//! `/etc/nsswitch.conf` says `hosts: files ...` ([`nsswitch_uses_files`]). The agent keeps its
//! names in a block of that file delimited by `# BEGIN node-agent <id>` / `# END node-agent
//! <id>` ([`HostsFile`]). Each rewrite takes an exclusive lock on `<lock dir>/hosts.lock`,
//! reads the file, replaces only this agent's block (dropping blocks of agents that are gone,
//! recognised by their free address-block lock), writes a temporary file next to it and renames
//! it over `/etc/hosts`, so readers never see a half-written file. The block is removed when the
//! agent shuts down (and by the next agent if it was killed).
//!
//! Limits: there is no DNS server, so no SRV records, no search domains (short names such as
//! `pd-peer` or `pd-peer.ns` do not resolve; use `.svc` or `.svc.cluster.local` names), a
//! ClusterIP Service resolves to its ready pods' addresses rather than to a virtual IP (there is
//! no kube-proxy, so a Service's `port` must equal its `targetPort`), and Go programs cache
//! `/etc/hosts` for up to 5 seconds.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Service;

/// Address blocks an agent may claim: `127.100.0.0/16` to `127.199.0.0/16`.
pub const BLOCKS: std::ops::RangeInclusive<u8> = 100..=199;

/// Errors of address and hosts-file management.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// All address blocks are held by running agents.
    #[error(
        "no free loopback address block 127.{first}.0.0/16..127.{last}.0.0/16 (locks in {dir})"
    )]
    NoFreeBlock {
        /// First block.
        first: u8,
        /// Last block.
        last: u8,
        /// The lock directory.
        dir: PathBuf,
    },
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let context = context.into();
    move |source| NetError::Io { context, source }
}

fn block_lock_path(dir: &Path, block: u8) -> PathBuf {
    dir.join(format!("block-{block}.lock"))
}

/// A claimed `127.B.0.0/16` block. The claim lasts as long as this value (and the process).
#[derive(Debug)]
pub struct AddressBlock {
    block: u8,
    _lock: File,
    next: u32,
    in_use: BTreeSet<u32>,
}

impl AddressBlock {
    /// Claims the first free block in [`BLOCKS`], using lock files in `lock_dir`.
    pub fn claim(lock_dir: &Path) -> Result<AddressBlock, NetError> {
        std::fs::create_dir_all(lock_dir)
            .map_err(io(format!("creating {}", lock_dir.display())))?;
        for block in BLOCKS {
            let path = block_lock_path(lock_dir, block);
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io(format!("opening {}", path.display())))?;
            if file.try_lock().is_ok() {
                return Ok(AddressBlock {
                    block,
                    _lock: file,
                    next: 0,
                    in_use: BTreeSet::new(),
                });
            }
        }
        Err(NetError::NoFreeBlock {
            first: *BLOCKS.start(),
            last: *BLOCKS.end(),
            dir: lock_dir.to_path_buf(),
        })
    }

    /// The block number `B`.
    pub fn block(&self) -> u8 {
        self.block
    }

    /// Address of node `index` (0-based): `127.B.0.(index+1)`.
    pub fn node_ip(&self, index: usize) -> Ipv4Addr {
        Ipv4Addr::new(127, self.block, 0, (index % 254) as u8 + 1)
    }

    /// Allocates a pod address: `127.B.x.y` with `x >= 1` and `y` in `1..=254`, not in use.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let usable = |n: u32| n >= 256 && !n.is_multiple_of(256) && n % 256 != 255;
        for _ in 0..=65_536u32 {
            self.next = (self.next + 1) % 65_536;
            let n = self.next;
            if usable(n) && !self.in_use.contains(&n) {
                self.in_use.insert(n);
                return Some(Ipv4Addr::new(
                    127,
                    self.block,
                    (n >> 8) as u8,
                    (n & 255) as u8,
                ));
            }
        }
        None
    }

    /// Returns an address to the pool.
    pub fn release(&mut self, ip: Ipv4Addr) {
        let [_, b, x, y] = ip.octets();
        if b == self.block {
            self.in_use.remove(&(u32::from(x) << 8 | u32::from(y)));
        }
    }
}

/// Whether the owner of address block `block` is gone (its lock can be taken).
fn block_is_free(lock_dir: &Path, block: u8) -> bool {
    File::options()
        .write(true)
        .open(block_lock_path(lock_dir, block))
        .is_ok_and(|f| f.try_lock().is_ok())
}

/// What the hosts block knows about a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRecord {
    /// Namespace.
    pub namespace: String,
    /// `spec.hostname`.
    pub hostname: Option<String>,
    /// `spec.subdomain`.
    pub subdomain: Option<String>,
    /// Labels (for Service selectors).
    pub labels: BTreeMap<String, String>,
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// Whether the pod is Ready.
    pub ready: bool,
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Computes the hosts entries (address → names) for `pods` and `services`. Pure.
///
/// - `<svc>.<ns>.svc` and `<svc>.<ns>.svc.<domain>` → the selected pods that are ready (all of
///   them when `publishNotReadyAddresses`);
/// - `<hostname>.<subdomain>.<ns>.svc[.<domain>]` → the pod, when a headless Service named
///   `<subdomain>` in its namespace selects it and it is ready (or the Service publishes
///   not-ready addresses) — the same condition under which cluster DNS has the record.
pub fn compute_entries(
    pods: &[PodRecord],
    services: &[Service],
    domain: &str,
) -> BTreeMap<Ipv4Addr, BTreeSet<String>> {
    let mut out: BTreeMap<Ipv4Addr, BTreeSet<String>> = BTreeMap::new();
    for svc in services {
        let (Some(name), Some(ns)) = (
            svc.metadata.name.as_deref(),
            svc.metadata.namespace.as_deref(),
        ) else {
            continue;
        };
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let selector = spec.selector.clone().unwrap_or_default();
        let headless = spec.cluster_ip.as_deref() == Some("None");
        let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
        for pod in pods
            .iter()
            .filter(|p| p.namespace == ns && selects(&selector, &p.labels))
        {
            if !(pod.ready || publish_not_ready) {
                continue;
            }
            let names = out.entry(pod.ip).or_default();
            names.insert(format!("{name}.{ns}.svc"));
            names.insert(format!("{name}.{ns}.svc.{domain}"));
            if headless
                && pod.subdomain.as_deref() == Some(name)
                && let Some(h) = pod.hostname.as_deref().filter(|h| !h.is_empty())
            {
                names.insert(format!("{h}.{name}.{ns}.svc"));
                names.insert(format!("{h}.{name}.{ns}.svc.{domain}"));
            }
        }
    }
    out
}

/// Renders the managed block for `id`. Pure.
pub fn render_block(id: &str, entries: &BTreeMap<Ipv4Addr, BTreeSet<String>>) -> String {
    let mut s = format!("# BEGIN node-agent {id} (managed by node-agent; do not edit)\n");
    for (ip, names) in entries {
        // One line per name keeps lines short; resolvers return every matching line.
        for name in names {
            s.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    s.push_str(&format!("# END node-agent {id}\n"));
    s
}

fn begin_id(line: &str) -> Option<&str> {
    line.strip_prefix("# BEGIN node-agent ")
        .map(|r| r.split_whitespace().next().unwrap_or_default())
}

/// Ids of all node-agent blocks in `content`. Pure.
pub fn block_ids(content: &str) -> Vec<String> {
    content
        .lines()
        .filter_map(begin_id)
        .map(str::to_string)
        .collect()
}

/// Replaces (or removes, when `block` is `None`) the block of `id` and removes the blocks whose
/// ids satisfy `drop_id`. The new block goes at the end. Pure.
pub fn splice(
    content: &str,
    id: &str,
    block: Option<&str>,
    drop_id: &dyn Fn(&str) -> bool,
) -> String {
    let mut out = String::with_capacity(content.len());
    let mut skipping: Option<String> = None;
    for line in content.lines() {
        if let Some(current) = &skipping {
            if line.strip_prefix("# END node-agent ").map(str::trim) == Some(current.as_str()) {
                skipping = None;
            }
            continue;
        }
        if let Some(bid) = begin_id(line)
            && (bid == id || drop_id(bid))
        {
            skipping = Some(bid.to_string());
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(b) = block {
        out.push_str(b);
    }
    out
}

/// The block number encoded in an agent id (`b<block>-p<pid>-<n>`).
pub fn id_block(id: &str) -> Option<u8> {
    id.strip_prefix('b')?.split('-').next()?.parse().ok()
}

/// The hosts file and its lock.
#[derive(Debug, Clone)]
pub struct HostsFile {
    /// The file, normally `/etc/hosts`.
    pub path: PathBuf,
    /// Directory of the lock files (`hosts.lock`, `block-*.lock`).
    pub lock_dir: PathBuf,
}

impl HostsFile {
    /// Writes (or with `None` removes) the block of `id`, and removes blocks of agents that are
    /// gone. Blocking; takes the hosts lock.
    pub fn update(&self, id: &str, block: Option<&str>) -> Result<(), NetError> {
        let lock_path = self.lock_dir.join("hosts.lock");
        std::fs::create_dir_all(&self.lock_dir)
            .map_err(io(format!("creating {}", self.lock_dir.display())))?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(format!("opening {}", lock_path.display())))?;
        lock.lock()
            .map_err(io(format!("locking {}", lock_path.display())))?;
        let content = match std::fs::read_to_string(&self.path) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(format!("reading {}", self.path.display()))(e)),
        };
        let my_block = id_block(id);
        let stale = |other: &str| match id_block(other) {
            Some(b) if Some(b) == my_block => other != id,
            Some(b) => block_is_free(&self.lock_dir, b),
            None => false,
        };
        let new = splice(&content, id, block, &stale);
        if new != content {
            self.write_atomically(&new)?;
        }
        drop(lock);
        Ok(())
    }

    fn write_atomically(&self, content: &str) -> Result<(), NetError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.node-agent.{}.tmp", std::process::id()));
        let mode = std::fs::metadata(&self.path)
            .map(|m| m.permissions().mode())
            .unwrap_or(0o644);
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(content.as_bytes())?;
            f.sync_all()?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
            std::fs::rename(&tmp, &self.path)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            // A bind-mounted hosts file cannot be replaced by rename (EBUSY); write in place.
            if e.raw_os_error() == Some(16) || e.raw_os_error() == Some(18) {
                std::fs::write(&self.path, content)
                    .map_err(io(format!("writing {}", self.path.display())))?;
            } else {
                return Err(io(format!("replacing {}", self.path.display()))(e));
            }
        }
        Ok(())
    }
}

/// Whether `nsswitch.conf` content makes the resolver read `/etc/hosts` (`hosts:` lists
/// `files`; a missing line means glibc's default, which includes it). Pure.
pub fn nsswitch_uses_files(content: &str) -> bool {
    let line = content
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .find(|l| l.starts_with("hosts:"));
    match line {
        None => true,
        Some(l) => l
            .trim_start_matches("hosts:")
            .split_whitespace()
            .any(|s| s == "files"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServiceSpec;

    fn pod(hostname: &str, ip: [u8; 4], ready: bool) -> PodRecord {
        PodRecord {
            namespace: "ns".into(),
            hostname: Some(hostname.into()),
            subdomain: Some("pd-peer".into()),
            labels: [("app".to_string(), "pd".to_string())].into(),
            ip: ip.into(),
            ready,
        }
    }

    fn svc(name: &str, headless: bool, publish: bool) -> Service {
        let mut s = Service::default();
        s.metadata.name = Some(name.into());
        s.metadata.namespace = Some("ns".into());
        s.spec = Some(ServiceSpec {
            selector: Some([("app".to_string(), "pd".to_string())].into()),
            cluster_ip: Some(if headless {
                "None".into()
            } else {
                "10.0.0.7".into()
            }),
            publish_not_ready_addresses: Some(publish),
            ..Default::default()
        });
        s
    }

    #[test]
    fn entries_follow_dns_rules() {
        let pods = [
            pod("pd-0", [127, 100, 1, 1], true),
            pod("pd-1", [127, 100, 1, 2], false),
        ];
        let e = compute_entries(
            &pods,
            &[svc("pd-peer", true, true), svc("pd", false, false)],
            "cluster.local",
        );
        let a = &e[&Ipv4Addr::new(127, 100, 1, 1)];
        assert!(a.contains("pd-0.pd-peer.ns.svc"));
        assert!(a.contains("pd-0.pd-peer.ns.svc.cluster.local"));
        assert!(a.contains("pd.ns.svc") && a.contains("pd.ns.svc.cluster.local"));
        let b = &e[&Ipv4Addr::new(127, 100, 1, 2)];
        assert!(
            b.contains("pd-1.pd-peer.ns.svc"),
            "published although not ready"
        );
        assert!(
            !b.contains("pd.ns.svc"),
            "not-ready pod is not behind the ClusterIP service"
        );
        // Without publishNotReadyAddresses the not-ready pod has no record at all.
        let e = compute_entries(&pods, &[svc("pd-peer", true, false)], "cluster.local");
        assert!(!e.contains_key(&Ipv4Addr::new(127, 100, 1, 2)));
        // A non-headless service of the subdomain's name gives no pod host names.
        let e = compute_entries(&pods, &[svc("pd-peer", false, false)], "cluster.local");
        assert!(!e[&Ipv4Addr::new(127, 100, 1, 1)].contains("pd-0.pd-peer.ns.svc"));
        // Other namespaces are not selected.
        let mut other = svc("pd", false, false);
        other.metadata.namespace = Some("x".into());
        assert!(compute_entries(&pods, &[other], "cluster.local").is_empty());
    }

    #[test]
    fn splice_replaces_only_own_block_and_drops_stale_ones() {
        let base = "127.0.0.1 localhost\n";
        let mut entries = BTreeMap::new();
        entries.insert(
            Ipv4Addr::new(127, 100, 1, 1),
            BTreeSet::from(["a.ns.svc".to_string()]),
        );
        let b1 = render_block("b100-p1", &entries);
        let with = splice(base, "b100-p1", Some(&b1), &|_| false);
        assert_eq!(with, format!("{base}{b1}"));
        let other = render_block("b101-p2", &entries);
        let both = splice(&with, "b101-p2", Some(&other), &|_| false);
        assert_eq!(block_ids(&both), vec!["b100-p1", "b101-p2"]);
        let removed = splice(&both, "b100-p1", None, &|_| false);
        assert_eq!(removed, format!("{base}{other}"));
        let cleaned = splice(&both, "b102-p3", None, &|id| id == "b101-p2");
        assert_eq!(cleaned, format!("{base}{b1}"));
        assert_eq!(id_block("b123-p45"), Some(123));
        assert_eq!(id_block("zzz"), None);
    }

    #[test]
    fn hosts_file_update_round_trip() {
        let dir = std::env::temp_dir().join(format!("node-agent-hosts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hosts");
        std::fs::write(&path, "127.0.0.1 localhost\n").unwrap();
        let hosts = HostsFile {
            path: path.clone(),
            lock_dir: dir.join("locks"),
        };
        hosts
            .update(
                "b199-p1",
                Some("# BEGIN node-agent b199-p1\n127.199.1.1\tx\n# END node-agent b199-p1\n"),
            )
            .unwrap();
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("127.199.1.1\tx")
        );
        hosts.update("b199-p1", None).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "127.0.0.1 localhost\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn blocks_are_exclusive_and_addresses_unique() {
        let dir = std::env::temp_dir().join(format!("node-agent-blocks-{}", std::process::id()));
        let mut a = AddressBlock::claim(&dir).unwrap();
        let b = AddressBlock::claim(&dir).unwrap();
        assert_ne!(a.block(), b.block());
        assert!(!block_is_free(&dir, a.block()));
        let ips: BTreeSet<Ipv4Addr> = (0..600).map(|_| a.allocate().unwrap()).collect();
        assert_eq!(ips.len(), 600);
        assert!(
            ips.iter()
                .all(|ip| ip.octets()[2] >= 1 && ip.octets()[3] != 0 && ip.octets()[3] != 255)
        );
        assert_eq!(a.node_ip(0), Ipv4Addr::new(127, a.block(), 0, 1));
        let freed = a.block();
        drop(a);
        // A child forked by a concurrent test holds a copy of the descriptor (and so the
        // lock) until it execs, so allow a moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while !block_is_free(&dir, freed) {
            assert!(
                std::time::Instant::now() < deadline,
                "block {freed} still locked"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        drop(b);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nsswitch_parsing() {
        assert!(nsswitch_uses_files(
            "passwd: files\nhosts:          files dns\n"
        ));
        assert!(!nsswitch_uses_files("hosts: dns myhostname\n"));
        assert!(nsswitch_uses_files("# hosts: dns\n"));
    }
}
