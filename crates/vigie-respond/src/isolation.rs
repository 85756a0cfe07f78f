//! Network isolation with nftables: one table, `inet vigie`, that an admin
//! reads with `nft list table inet vigie`.
//!
//! The table drops everything on input, output and forward, IPv4 and IPv6,
//! except: loopback; sockets carrying the agent's mark [`AGENT_MARK`] (the
//! agent sets it with `SO_MARK` on its connections to the manager, so they
//! keep working when the manager's address changes); DHCP and DHCPv6;
//! IPv6 neighbour discovery; DNS to the configured resolvers only; the
//! allow-list. Rules are stateless on purpose: nothing depends on conntrack,
//! so flushing conntrack and killing sockets (to cut established flows)
//! can never cut an allowed flow.
//!
//! The ruleset is generated as text and loaded with `nft -f` in one
//! transaction (create, delete, create: atomic and idempotent).

use std::io::Write;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The socket mark (`SO_MARK`) of the agent's own connections: "VIGE".
pub const AGENT_MARK: u32 = 0x5649_4745;
/// The nftables family and table name.
pub const TABLE_FAMILY: &str = "inet";
pub const TABLE_NAME: &str = "vigie";

/// What an isolation lets through, as the admin or the policy gave it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IsolationSpec {
    /// Allowed destinations: `IP`, `CIDR`, `IP:port`, `[IPv6]:port` or
    /// `host:port` (a name is resolved when the isolation is applied).
    pub allow: Vec<String>,
    /// The only DNS servers the host may query while isolated.
    pub resolvers: Vec<IpAddr>,
    /// The manager, `host:port`: checked reachable after isolating (with the
    /// agent's mark) and also allowed by its address at apply time.
    pub manager: Option<String>,
    /// Destinations that must NOT be reachable once isolated (self-check).
    /// Empty: documentation addresses 203.0.113.1:443 and [2001:db8::1]:443.
    pub probes: Vec<SocketAddr>,
}

/// One allow-list entry after parsing and resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    pub net: IpNet,
    pub port: Option<u16>,
}

impl AllowEntry {
    /// Parse one entry; a `host:port` name is resolved (all its addresses).
    pub fn parse(s: &str) -> Result<Vec<AllowEntry>> {
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(vec![AllowEntry {
                net: net.trunc(),
                port: None,
            }]);
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(vec![AllowEntry {
                net: IpNet::from(ip),
                port: None,
            }]);
        }
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok(vec![AllowEntry {
                net: IpNet::from(sa.ip()),
                port: Some(sa.port()),
            }]);
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            bail!("allow entry {s:?}: expected IP, CIDR, IP:port, [IPv6]:port or host:port");
        };
        let port: u16 = port
            .parse()
            .with_context(|| format!("allow entry {s:?}: bad port {port:?}"))?;
        if host.is_empty() || host.contains('/') {
            bail!("allow entry {s:?}: expected IP, CIDR, IP:port, [IPv6]:port or host:port");
        }
        let addrs: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .with_context(|| format!("allow entry {s:?}: cannot resolve {host:?}"))?
            .collect();
        if addrs.is_empty() {
            bail!("allow entry {s:?}: {host:?} has no address");
        }
        Ok(addrs
            .into_iter()
            .map(|a| AllowEntry {
                net: IpNet::from(a.ip()),
                port: Some(port),
            })
            .collect())
    }
}

impl IsolationSpec {
    /// Every allow-list entry parsed (plus the manager's current address).
    pub fn entries(&self) -> Result<Vec<AllowEntry>> {
        let mut out = Vec::new();
        for a in &self.allow {
            out.extend(AllowEntry::parse(a)?);
        }
        if let Some(m) = &self.manager {
            // The mark is what keeps the manager reachable; the address rule
            // only helps a client that did not mark its socket. A manager
            // that does not resolve right now must not prevent isolation.
            match AllowEntry::parse(m) {
                Ok(e) => out.extend(e),
                Err(e) => tracing::warn!("manager {m:?} not resolved: {e:#}"),
            }
        }
        Ok(out)
    }

    /// Check everything parses, without touching the system.
    pub fn validate(&self) -> Result<()> {
        for a in &self.allow {
            AllowEntry::parse(a)?;
        }
        if let Some(m) = &self.manager {
            m.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .with_context(|| format!("manager {m:?}: expected host:port"))?;
        }
        Ok(())
    }

    fn probes_or_default(&self) -> Vec<SocketAddr> {
        if self.probes.is_empty() {
            vec![
                "203.0.113.1:443".parse().expect("literal"),
                "[2001:db8::1]:443".parse().expect("literal"),
            ]
        } else {
            self.probes.clone()
        }
    }
}

/// The `table inet vigie { ... }` block for a spec.
pub fn render_table(spec: &IsolationSpec) -> Result<String> {
    let entries = spec.entries()?;
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    let mut ports = Vec::new();
    for e in &entries {
        match (e.port, e.net) {
            (None, IpNet::V4(n)) => v4.push(n.to_string()),
            (None, IpNet::V6(n)) => v6.push(n.to_string()),
            (Some(p), n) => ports.push((n, p)),
        }
    }
    let r4: Vec<String> = spec
        .resolvers
        .iter()
        .filter(|r| r.is_ipv4())
        .map(|r| r.to_string())
        .collect();
    let r6: Vec<String> = spec
        .resolvers
        .iter()
        .filter(|r| r.is_ipv6())
        .map(|r| r.to_string())
        .collect();

    // nft refuses duplicate elements in a plain set.
    let (mut r4, mut r6) = (r4, r6);
    for l in [&mut v4, &mut v6, &mut r4, &mut r6] {
        l.sort();
        l.dedup();
    }
    ports.sort();
    ports.dedup();

    let mut t = String::new();
    let w = &mut t;
    let set = |w: &mut String, name: &str, ty: &str, interval: bool, elems: &[String]| {
        w.push_str(&format!("\tset {name} {{\n\t\ttype {ty}\n"));
        if interval {
            w.push_str("\t\tflags interval\n\t\tauto-merge\n");
        }
        if !elems.is_empty() {
            w.push_str(&format!("\t\telements = {{ {} }}\n", elems.join(", ")));
        }
        w.push_str("\t}\n");
    };
    w.push_str(&format!("table {TABLE_FAMILY} {TABLE_NAME} {{\n"));
    w.push_str("\tcomment \"Vigie network isolation. Release: vigie agent release --code CODE\"\n");
    set(w, "allow4", "ipv4_addr", true, &v4);
    set(w, "allow6", "ipv6_addr", true, &v6);
    set(w, "resolvers4", "ipv4_addr", false, &r4);
    set(w, "resolvers6", "ipv6_addr", false, &r6);

    let mark = format!("0x{AGENT_MARK:08x}");
    // input
    w.push_str("\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n");
    w.push_str("\t\tiif \"lo\" accept comment \"loopback\"\n");
    w.push_str(&format!(
        "\t\tsocket mark {mark} accept comment \"agent to manager (socket mark)\"\n"
    ));
    w.push_str("\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, packet-too-big } accept comment \"IPv6 neighbour discovery\"\n");
    w.push_str("\t\tudp sport 67 udp dport 68 accept comment \"DHCP\"\n");
    w.push_str("\t\tudp sport 547 udp dport 546 accept comment \"DHCPv6\"\n");
    w.push_str(
        "\t\tip saddr @resolvers4 meta l4proto { tcp, udp } th sport 53 accept comment \"DNS answers\"\n",
    );
    w.push_str(
        "\t\tip6 saddr @resolvers6 meta l4proto { tcp, udp } th sport 53 accept comment \"DNS answers\"\n",
    );
    w.push_str("\t\tip saddr @allow4 accept comment \"allow-list\"\n");
    w.push_str("\t\tip6 saddr @allow6 accept comment \"allow-list\"\n");
    for (n, p) in &ports {
        let fam = if n.addr().is_ipv4() { "ip" } else { "ip6" };
        w.push_str(&format!(
            "\t\t{fam} saddr {n} meta l4proto {{ tcp, udp }} th sport {p} accept comment \"allow-list\"\n"
        ));
    }
    w.push_str("\t}\n");
    // output
    w.push_str("\tchain output {\n\t\ttype filter hook output priority filter; policy drop;\n");
    w.push_str("\t\toif \"lo\" accept comment \"loopback\"\n");
    w.push_str(&format!(
        "\t\tmeta mark {mark} accept comment \"agent to manager (socket mark)\"\n"
    ));
    w.push_str("\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, packet-too-big } accept comment \"IPv6 neighbour discovery\"\n");
    w.push_str("\t\tudp sport 68 udp dport 67 accept comment \"DHCP\"\n");
    w.push_str("\t\tudp sport 546 udp dport 547 accept comment \"DHCPv6\"\n");
    w.push_str(
        "\t\tip daddr @resolvers4 meta l4proto { tcp, udp } th dport 53 accept comment \"DNS to configured resolvers only\"\n",
    );
    w.push_str(
        "\t\tip6 daddr @resolvers6 meta l4proto { tcp, udp } th dport 53 accept comment \"DNS to configured resolvers only\"\n",
    );
    w.push_str("\t\tip daddr @allow4 accept comment \"allow-list\"\n");
    w.push_str("\t\tip6 daddr @allow6 accept comment \"allow-list\"\n");
    for (n, p) in &ports {
        let fam = if n.addr().is_ipv4() { "ip" } else { "ip6" };
        w.push_str(&format!(
            "\t\t{fam} daddr {n} meta l4proto {{ tcp, udp }} th dport {p} accept comment \"allow-list\"\n"
        ));
    }
    w.push_str("\t}\n");
    w.push_str(
        "\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n\t}\n",
    );
    w.push_str("}\n");
    Ok(t)
}

fn nft(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run nft (is the nftables package installed?)")?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .context("cannot write to nft")?;
    let out = child.wait_with_output().context("nft did not finish")?;
    if !out.status.success() {
        bail!(
            "nft refused the ruleset: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Load the table in one transaction, replacing any previous one.
pub fn apply_table(table: &str) -> Result<()> {
    // "table" then "delete table" makes the delete valid whether or not the
    // table exists; the whole file is one atomic transaction.
    nft(&format!(
        "table {TABLE_FAMILY} {TABLE_NAME}\ndelete table {TABLE_FAMILY} {TABLE_NAME}\n{table}"
    ))
}

/// Remove the table (no error if absent).
pub fn delete_table() -> Result<()> {
    nft(&format!(
        "table {TABLE_FAMILY} {TABLE_NAME}\ndelete table {TABLE_FAMILY} {TABLE_NAME}\n"
    ))
}

/// `nft list table inet vigie` as text, `None` when the table does not exist.
pub fn current_listing() -> Result<Option<String>> {
    let out = Command::new("nft")
        .args(["list", "table", TABLE_FAMILY, TABLE_NAME])
        .stdin(Stdio::null())
        .output()
        .context("cannot run nft")?;
    if out.status.success() {
        return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("No such file") || err.contains("does not exist") {
        return Ok(None);
    }
    bail!("nft list table failed: {}", err.trim())
}

pub fn listing_hash(listing: &str) -> String {
    hex::encode(Sha256::digest(listing.as_bytes()))
}

/// Cut established flows that the isolation does not allow: destroy local
/// TCP/UDP sockets (`ss -K`, SOCK_DESTROY) so applications see the cut at
/// once, then flush conntrack (safe: the table's rules are stateless).
pub fn cut_flows(spec: &IsolationSpec) -> Result<String> {
    let mut keep = vec![
        format!("fwmark = 0x{AGENT_MARK:08x}/0xffffffff"),
        "dst 127.0.0.0/8".to_string(),
        "dst [::1]".to_string(),
    ];
    for e in spec.entries()? {
        let addr = match e.net {
            IpNet::V4(n) => n.to_string(),
            IpNet::V6(n) => format!("[{}/{}]", n.addr(), n.prefix_len()),
        };
        match e.port {
            None => keep.push(format!("dst {addr}")),
            Some(p) => keep.push(format!("( dst {addr} and dport = {p} )")),
        }
    }
    for r in &spec.resolvers {
        let addr = match r {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        };
        keep.push(format!("( dst {addr} and dport = 53 )"));
    }
    let filter = format!("! ( {} )", keep.join(" or "));
    let out = Command::new("ss")
        .args(["-K", "-n", "-H", "-t", "-u", "state", "connected", &filter])
        .stdin(Stdio::null())
        .output()
        .context("cannot run ss (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ss -K failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let killed = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    // conntrack may not be loaded at all in this namespace: not an error.
    let ct = Command::new("conntrack")
        .arg("-F")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    Ok(format!(
        "{killed} open connection(s) cut{}",
        if ct { ", conntrack flushed" } else { "" }
    ))
}

/// What the self-check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfCheck {
    /// `None`: no manager configured.
    pub manager_reachable: Option<bool>,
    /// Each forbidden probe and whether it was (wrongly) reachable.
    pub probes: Vec<(SocketAddr, String)>,
    pub ok: bool,
}

impl SelfCheck {
    pub fn describe(&self) -> String {
        let m = match self.manager_reachable {
            None => "no manager configured".to_string(),
            Some(true) => "manager reachable".to_string(),
            Some(false) => "MANAGER NOT REACHABLE".to_string(),
        };
        let p: Vec<String> = self
            .probes
            .iter()
            .map(|(a, r)| format!("{a}: {r}"))
            .collect();
        format!("self-check: {m}; forbidden probes: {}", p.join(", "))
    }
}

/// Give a socket the agent's mark, so isolation lets it through: the agent
/// calls this on every socket to its manager (before `connect`).
pub fn mark_socket(sock: &impl std::os::fd::AsFd) -> std::io::Result<()> {
    nix::sys::socket::setsockopt(sock, nix::sys::socket::sockopt::Mark, &AGENT_MARK)
        .map_err(std::io::Error::from)
}

/// A TCP connection attempt, optionally with the agent's mark.
pub fn try_connect(addr: SocketAddr, marked: bool, timeout: Duration) -> std::io::Result<()> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if marked {
        mark_socket(&sock)?;
    }
    sock.connect_timeout(&addr.into(), timeout)
}

/// After applying: the manager must be reachable (marked socket) and every
/// forbidden probe must not be.
pub fn self_check(spec: &IsolationSpec) -> SelfCheck {
    let timeout = Duration::from_millis(1500);
    let manager_reachable = spec.manager.as_ref().map(|m| {
        let addrs: Vec<SocketAddr> = m.to_socket_addrs().map(|a| a.collect()).unwrap_or_default();
        addrs.iter().any(|a| try_connect(*a, true, timeout).is_ok())
    });
    let mut ok = manager_reachable != Some(false);
    let mut probes = Vec::new();
    for p in spec.probes_or_default() {
        let verdict = match try_connect(p, false, Duration::from_millis(500)) {
            Ok(()) => {
                ok = false;
                "REACHABLE".to_string()
            }
            // A refusal came back from the far end: packets pass.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                ok = false;
                "REACHABLE (refused by peer)".to_string()
            }
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => "blocked".to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => "blocked (timeout)".to_string(),
            Err(e) => format!("blocked ({e})"),
        };
        probes.push((p, verdict));
    }
    SelfCheck {
        manager_reachable,
        probes,
        ok,
    }
}

/// The nameservers of /etc/resolv.conf (the default resolvers of a manual
/// isolation, so the host's DNS keeps working). 127.0.0.53-style local stubs
/// are kept too: loopback is always allowed anyway.
pub fn system_resolvers() -> Vec<IpAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().split('%').next()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_entries_parse() {
        let e = AllowEntry::parse("10.1.2.3/8").unwrap();
        assert_eq!(e[0].net.to_string(), "10.0.0.0/8");
        let e = AllowEntry::parse("[2001:db8::5]:443").unwrap();
        assert_eq!(e[0].port, Some(443));
        assert_eq!(e[0].net.to_string(), "2001:db8::5/128");
        let e = AllowEntry::parse("localhost:22").unwrap();
        assert!(e.iter().all(|e| e.port == Some(22)));
        assert!(AllowEntry::parse("not an address").is_err());
        assert!(AllowEntry::parse("1.2.3.4:99999").is_err());
    }

    #[test]
    fn ruleset_has_no_port_53_to_anywhere() {
        let spec = IsolationSpec {
            resolvers: vec!["192.0.2.53".parse().unwrap(), "192.0.2.53".parse().unwrap()],
            allow: vec!["198.51.100.7:443".into(), "198.51.100.7:443".into()],
            ..Default::default()
        };
        let t = render_table(&spec).unwrap();
        assert_eq!(t.matches("192.0.2.53").count(), 1, "deduplicated");
        for line in t.lines().filter(|l| l.contains("dport 53")) {
            assert!(line.contains("@resolvers"), "unrestricted DNS rule: {line}");
        }
        assert!(t.contains("192.0.2.53"));
        assert!(t.contains("policy drop"));
    }
}
