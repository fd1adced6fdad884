//! `atoll package …`: engine builds as tarballs, registered with the
//! platform and pushed to hosts.

use std::path::PathBuf;
use std::time::Duration;

use atoll_api::packages::{PackageView, PushPackageRequest};
use atoll_api::v1::TaskView;
use clap::Subcommand;

use crate::cli::{Conn, Res, client};
use crate::output::{self, Exit, encode, fail};
use crate::tasks::follow_new;

#[derive(Debug, Subcommand)]
pub enum PackageCmd {
    /// Register an engine build (admins only): a .tar.gz with bin/ or
    /// sbin/mariadbd, an install-db script and libgalera_smm.so (a MariaDB
    /// binary tarball with the Galera library added), at most 2 GiB.
    Add {
        file: PathBuf,
        /// Name clusters use (`engine = "NAME"`); default: the file name.
        #[arg(long)]
        name: Option<String>,
        /// Version shown with it; default: taken from the name.
        #[arg(long)]
        version: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    List {
        #[command(flatten)]
        conn: Conn,
    },
    Show {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Forget a package and delete its tarball (admins only; builds on
    /// hosts stay).
    Remove {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Install a package on hosts (admins only; checksum verified on each
    /// host, its programs run there as the database user).
    Push {
        name: String,
        /// Host id, name or address; repeatable.
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn run(cmd: PackageCmd) -> Res {
    match cmd {
        PackageCmd::Add { file, name, version, conn } => {
            let f = tokio::fs::File::open(&file).await.map_err(|e| fail(Exit::Error, format!("cannot read {}: {e}", file.display())))?;
            let len = f.metadata().await.map_err(|e| fail(Exit::Error, format!("cannot read {}: {e}", file.display())))?.len();
            let filename = file.file_name().map(|n| n.to_string_lossy().into_owned());
            let query: Vec<(&str, String)> =
                [("name", name), ("version", version), ("filename", filename)].into_iter().filter_map(|(k, v)| Some((k, v?))).collect();
            let query = query.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect::<Vec<_>>().join("&");
            let c = client(&conn)?.with_request_timeout(Duration::from_secs(3600));
            let p: PackageView = c.post_file(&format!("/api/v1/packages?{query}"), f, len, "application/gzip").await?;
            if conn.json {
                output::print_json(&p)?;
            } else {
                println!("package {} ({}) registered: sha256 {}, {}", p.name, p.version, p.sha256, output::gib(p.size_bytes));
                println!("install it with `atoll package push {} --host HOST…`", p.name);
            }
            Ok(Exit::Ok)
        }
        PackageCmd::List { conn } => {
            let ps: Vec<PackageView> = client(&conn)?.get("/api/v1/packages").await?;
            if conn.json {
                output::print_json(&ps)?;
            } else {
                let mut t = output::table(&["name", "version", "size", "sha256", "hosts", "added"]);
                for p in &ps {
                    t.add_row(vec![
                        p.name.clone(),
                        p.version.clone(),
                        output::gib(p.size_bytes),
                        p.sha256[..12.min(p.sha256.len())].to_string(),
                        p.hosts.join(", "),
                        output::time(Some(p.created_at_ms)),
                    ]);
                }
                println!("{t}");
            }
            Ok(Exit::Ok)
        }
        PackageCmd::Show { name, conn } => {
            let p: PackageView = client(&conn)?.get(&format!("/api/v1/packages/{}", encode(&name))).await?;
            if conn.json {
                output::print_json(&p)?;
            } else {
                println!(
                    "{} ({})  {}  added by {} {}",
                    p.name,
                    p.version,
                    output::gib(p.size_bytes),
                    p.created_by,
                    output::time(Some(p.created_at_ms))
                );
                println!("sha256   {}", p.sha256);
                println!("mariadbd {}\ninstall  {}\ngalera   {}", p.mariadbd, p.install_db, p.galera);
                println!("on hosts {}", if p.hosts.is_empty() { "-".to_string() } else { p.hosts.join(", ") });
            }
            Ok(Exit::Ok)
        }
        PackageCmd::Remove { name, conn } => {
            let p: PackageView = client(&conn)?.delete(&format!("/api/v1/packages/{}", encode(&name))).await?;
            if conn.json {
                output::print_json(&p)?;
            } else {
                println!("package {} removed", p.name);
            }
            Ok(Exit::Ok)
        }
        PackageCmd::Push { name, hosts, no_wait, conn } => {
            let c = client(&conn)?;
            let t: TaskView = c.post(&format!("/api/v1/packages/{}/push", encode(&name)), &PushPackageRequest { hosts }).await?;
            follow_new(&c, t, no_wait, conn.json).await
        }
    }
}
