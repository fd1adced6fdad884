//! A clock jump on one host, with libfaketime (Debian package `faketime`):
//! that host's agent starts with it preloaded, and so do the `mariadbd`
//! and proxy it starts (they inherit the environment). The offset is read
//! from a file at most once a second, so writing the file steps the
//! host's wall clock the way an NTP step would. The monotonic clock is left
//! alone (`FAKETIME_DONT_FAKE_MONOTONIC`), as a real step leaves it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Where Debian's package puts the library, per architecture.
fn find_library() -> Option<PathBuf> {
    let lib = std::fs::read_dir("/usr/lib").ok()?;
    lib.flatten().map(|e| e.path().join("faketime/libfaketime.so.1")).find(|p| p.is_file())
}

pub struct Clock {
    library: PathBuf,
    file: PathBuf,
}

impl Clock {
    /// `Err` says why clock jumps cannot be done here.
    pub fn new(dir: &Path) -> Result<Clock> {
        let library = find_library().context("libfaketime is not installed (apt-get install faketime)")?;
        let c = Clock { library, file: dir.join("faketime-offset") };
        c.set(0)?;
        Ok(c)
    }

    /// The environment the host's agent starts with.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), self.library.display().to_string()),
            ("FAKETIME_TIMESTAMP_FILE".into(), self.file.display().to_string()),
            ("FAKETIME_CACHE_DURATION".into(), "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ]
    }

    /// Sets the host's clock `offset_s` seconds away from the real one.
    pub fn set(&self, offset_s: i64) -> Result<()> {
        // Readable by `mysql`, which runs the host's `mariadbd`.
        std::fs::write(&self.file, format!("{offset_s:+}\n")).with_context(|| format!("writing {}", self.file.display()))?;
        std::fs::set_permissions(&self.file, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        Ok(())
    }
}
