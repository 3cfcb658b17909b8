//! A network namespace for one reader, joined to the host by two veth pairs:
//! one carries its HTTP traffic, the other its Redis traffic. Taking the
//! host end of the Redis pair down drops that traffic silently — packets
//! vanish, nothing is refused or reset — which is what a cut network looks
//! like to the reader: only its PING timeout can notice. The HTTP pair stays
//! up, so the test keeps reading from the reader while it is cut off.
//!
//! Addresses come from 198.18.0.0/15 (reserved for network tests, RFC 2544),
//! a block of eight per test process chosen from its pid and checked free;
//! interface and namespace names carry the pid, so parallel tests never
//! share anything. Needs root and `ip` (iproute2).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

/// Why the network-cut scenario cannot run here.
pub fn unavailable() -> Option<String> {
    // `id -u` rather than an unsafe geteuid call.
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let root = uid.as_deref() == Some("0");
    let ip = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    match (root, ip) {
        (true, true) => None,
        (false, true) => Some("not running as root (network namespaces need it)".into()),
        (true, false) => Some("`ip` is missing: apt-get install iproute2".into()),
        (false, false) => {
            Some("not root and `ip` is missing (apt-get install iproute2, run as root)".into())
        }
    }
}

/// The namespace and its two veth pairs; deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    http_host: String,
    redis_host: String,
    /// The reader's HTTP address inside the namespace.
    pub http_ip: Ipv4Addr,
    /// Redis's address on the host end of the Redis pair.
    pub redis_ip: Ipv4Addr,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip_out(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

impl NetNs {
    /// Creates the namespace and both pairs, with every link up.
    pub fn create() -> NetNs {
        remove_leftovers();
        let pid = std::process::id();
        let used = ip_out(&["-4", "-o", "addr", "show"]);
        // 8192 blocks of 8 addresses in 198.18.0.0/15; start at the pid's and skip used ones.
        let base = (0..64u32)
            .map(|i| (pid.wrapping_add(i * 977)) % 8192)
            .map(|block| {
                let n = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + block * 8;
                Ipv4Addr::from(n)
            })
            .find(|b| {
                let o = b.octets();
                let prefix = format!(" {}.{}.{}.", o[0], o[1], o[2]);
                !(0..8).any(|k| used.contains(&format!("{prefix}{}/", o[3] + k)))
            })
            .expect("a free block of addresses in 198.18.0.0/15");
        let at = |k: u8| {
            let o = base.octets();
            Ipv4Addr::new(o[0], o[1], o[2], o[3] + k)
        };
        let ns = NetNs {
            name: format!("hrst{pid}"),
            http_host: format!("hrh{pid}"),
            redis_host: format!("hrr{pid}"),
            http_ip: at(2),
            redis_ip: at(5),
        };
        if let Err(e) = ns.setup(at(1), at(6)) {
            drop(ns);
            panic!("setting up the network namespace: {e}");
        }
        ns
    }

    fn setup(&self, http_host_ip: Ipv4Addr, redis_ns_ip: Ipv4Addr) -> Result<(), String> {
        let n = self.name.as_str();
        ip(&["netns", "add", n])?;
        ip(&["-n", n, "link", "set", "lo", "up"])?;
        for (host, host_ip, ns_ip) in [
            (&self.http_host, http_host_ip, self.http_ip),
            (&self.redis_host, self.redis_ip, redis_ns_ip),
        ] {
            let host = host.as_str();
            let peer = format!("{host}n");
            ip(&[
                "link", "add", host, "type", "veth", "peer", "name", &peer, "netns", n,
            ])?;
            ip(&["addr", "add", &format!("{host_ip}/30"), "dev", host])?;
            ip(&["link", "set", host, "up"])?;
            ip(&["-n", n, "addr", "add", &format!("{ns_ip}/30"), "dev", &peer])?;
            ip(&["-n", n, "link", "set", &peer, "up"])?;
        }
        Ok(())
    }

    /// The namespace's name, for `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops every packet between the reader and Redis, silently.
    pub fn cut(&self) {
        ip(&["link", "set", &self.redis_host, "down"]).expect("cut the reader's Redis link");
    }

    /// Lets the packets through again.
    pub fn heal(&self) {
        ip(&["link", "set", &self.redis_host, "up"]).expect("heal the reader's Redis link");
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace deletes the inner ends, and with them the pairs.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.http_host]);
        let _ = ip(&["link", "del", &self.redis_host]);
    }
}

/// Namespaces of earlier test processes that died without cleaning up.
fn remove_leftovers() {
    for line in ip_out(&["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name.strip_prefix("hrst") else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
            let _ = ip(&["link", "del", &format!("hrh{pid}")]);
            let _ = ip(&["link", "del", &format!("hrr{pid}")]);
        }
    }
}
