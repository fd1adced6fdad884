//! A network namespace joined to this one by a veth pair, so a process
//! inside is a machine of its own on the network: its link to the rest can
//! be cut (nftables rules inside) while everything else runs on. Removed
//! when dropped, with both veth ends. Addresses are a /30 of 10.254.N.0
//! that exists only on this pair.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

pub struct Netns {
    pub name: String,
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
        let ns = Netns { name: name.clone(), host_ip: format!("10.254.{octet}.1"), ns_ip: format!("10.254.{octet}.2") };
        // Left over from a run that was killed: start clean.
        let _ = ip(&["netns", "del", &name]);
        ip(&["netns", "add", &name])?;
        ip(&["link", "add", &here, "type", "veth", "peer", "name", &there, "netns", &name])?;
        ip(&["addr", "add", &format!("{}/30", ns.host_ip), "dev", &here])?;
        ip(&["link", "set", &here, "up"])?;
        ip(&["-n", &name, "addr", "add", &format!("{}/30", ns.ns_ip), "dev", &there])?;
        ip(&["-n", &name, "link", "set", &there, "up"])?;
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Drops every TCP packet the namespace sends to `ip:port` (new and
    /// established connections alike), as a cut link would: nothing is
    /// refused, the packets just vanish.
    pub fn cut_tcp_to(&self, ip: &str, port: u16) -> Result<()> {
        let rules = format!(
            "table inet {CUT_TABLE} {{\n  chain out {{\n    type filter hook output priority 0; policy accept;\n    ip daddr {ip} tcp dport {port} drop\n  }}\n}}\n"
        );
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
