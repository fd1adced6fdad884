//! A full disk on one node: its data directory is a small tmpfs mounted
//! before the cluster is made, so filling it takes seconds and touches no
//! real disk. Filling writes one file until the kernel says ENOSPC;
//! freeing deletes it. Unmounted on drop (lazily if a process still holds
//! a file there).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The filler's name: no database or table of MariaDB's looks like it.
const FILLER: &str = "campaign-disk-filler.bin";

pub struct Tmpfs {
    pub path: PathBuf,
    mounted: bool,
}

fn run(cmd: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(cmd).args(args).output().with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!("{cmd} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_mib` at `path` (made if missing).
    pub fn mount(path: &Path, size_mib: u64) -> Result<Tmpfs> {
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        let p = path.display().to_string();
        run("mount", &["-t", "tmpfs", "-o", &format!("size={size_mib}m,mode=0750"), "tmpfs", &p])?;
        Ok(Tmpfs { path: path.to_path_buf(), mounted: true })
    }

    /// Writes until the file system is full; the bytes it took.
    pub fn fill(&self) -> Result<u64> {
        let path = self.path.join(FILLER);
        let mut f = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let chunk = vec![0x5a_u8; 1 << 20];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(e).with_context(|| format!("filling {}", path.display())),
            }
        }
        // The last partial page too: tmpfs counts pages.
        let small = [0x5a_u8; 512];
        while let Ok(n) = f.write(&small) {
            if n == 0 {
                break;
            }
            written += n as u64;
        }
        Ok(written)
    }

    /// Deletes the filler (no error if a state transfer already removed it).
    pub fn free(&self) -> Result<()> {
        match std::fs::remove_file(self.path.join(FILLER)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).context("removing the disk filler"),
            _ => Ok(()),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if self.mounted {
            let p = self.path.display().to_string();
            if run("umount", &[&p]).is_err() {
                let _ = run("umount", &["-l", &p]);
            }
            self.mounted = false;
        }
    }
}
