//! A network namespace joined to this one by a veth pair, so a process
//! inside is a machine of its own on the network: its link to the rest can
//! be cut (nftables rules inside) while everything else runs on. Removed
//! when dropped, with both veth ends. Addresses are a /30 of 10.254.N.0
//! that exists only on this pair (a /29: room for more addresses on this side).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

pub struct Netns {
    pub name: String,
    /// This side's end of the pair.
    host_if: String,
    /// This side's address on the pair.
    pub host_ip: String,
    /// The namespace's address on the pair.
    pub ns_ip: String,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip (package iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// `program` run inside namespace `name`.
pub fn exec(name: &str, program: &Path) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", name]).arg(program);
    cmd
}

const CUT_TABLE: &str = "atoll_cut";

impl Netns {
    /// A namespace `atoll-TAG-PID` with addresses 10.254.`octet`.1 (here)
    /// and .2 (inside).
    pub fn create(tag: &str, octet: u8) -> Result<Netns> {
        let pid = std::process::id() % 100_000;
        let name = format!("atoll-{tag}-{pid}");
        let (here, there) = (format!("at{tag}{pid}h"), format!("at{tag}{pid}n"));
        if here.len() > 15 {
            bail!("interface name {here} is too long: use a shorter tag");
        }
        let ns =
            Netns { name: name.clone(), host_if: here.clone(), host_ip: format!("10.254.{octet}.1"), ns_ip: format!("10.254.{octet}.2") };
        // Left over from a run that was killed: start clean.
        let _ = ip(&["netns", "del", &name]);
        ip(&["netns", "add", &name])?;
        ip(&["link", "add", &here, "type", "veth", "peer", "name", &there, "netns", &name])?;
        ip(&["addr", "add", &format!("{}/29", ns.host_ip), "dev", &here])?;
        ip(&["link", "set", &here, "up"])?;
        ip(&["-n", &name, "addr", "add", &format!("{}/29", ns.ns_ip), "dev", &there])?;
        ip(&["-n", &name, "link", "set", &there, "up"])?;
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// One more address on this side of the pair (10.254.N.`last`, 3–6), so
    /// several "hosts" outside the namespace reach the one inside.
    pub fn add_host_ip(&self, last: u8) -> Result<String> {
        let prefix = self.host_ip.rsplit_once('.').map(|(p, _)| p).unwrap_or_default();
        let address = format!("{prefix}.{last}");
        ip(&["addr", "add", &format!("{address}/29"), "dev", &self.host_if])?;
        Ok(address)
    }

    /// Cuts the namespace off the network but for connections to its TCP
    /// `port` (so a test can still ask the isolated process what it
    /// thinks): every other packet in or out vanishes. Traffic within the
    /// namespace (its loopback, its own address) still flows.
    pub fn isolate_except(&self, port: u16) -> Result<()> {
        self.apply(&format!(
            "table inet {CUT_TABLE} {{\n  chain in {{\n    type filter hook input priority 0; policy drop;\n    iif lo accept\n    tcp dport {port} accept\n  }}\n  chain out {{\n    type filter hook output priority 0; policy drop;\n    oif lo accept\n    tcp sport {port} accept\n  }}\n}}\n"
        ))
    }

    /// Drops every TCP packet the namespace sends to `ip:port` (new and
    /// established connections alike), as a cut link would: nothing is
    /// refused, the packets just vanish.
    pub fn cut_tcp_to(&self, ip: &str, port: u16) -> Result<()> {
        self.apply(&format!(
            "table inet {CUT_TABLE} {{\n  chain out {{\n    type filter hook output priority 0; policy accept;\n    ip daddr {ip} tcp dport {port} drop\n  }}\n}}\n"
        ))
    }

    fn apply(&self, rules: &str) -> Result<()> {
        let mut child = exec(&self.name, Path::new("nft"))
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("running nft (package nftables)")?;
        if let Some(mut stdin) = child.stdin.take() {
            std::io::Write::write_all(&mut stdin, rules.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("nft -f -: {}\n{rules}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    pub fn heal(&self) -> Result<()> {
        self.nft(&["delete", "table", "inet", CUT_TABLE])
    }

    fn nft(&self, args: &[&str]) -> Result<()> {
        let mut cmd = exec(&self.name, Path::new("nft"));
        let out = cmd.args(args).output().context("running nft (package nftables)")?;
        if !out.status.success() {
            bail!("nft {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace removes its veth end, and so the pair.
        let _ = ip(&["netns", "del", &self.name]);
    }
}
