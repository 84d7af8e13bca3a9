//! Reading the files an operator points the adapter at (configurations, CA bundles, inventory snapshots)
//! with a size cap, so that a wrong path (`/dev/zero`, a log file) ends in a clear error instead of
//! exhausting memory; and watching a configuration file for changes.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The cap for configuration files and CA bundles: four times what a ConfigMap can hold.
pub const CONFIG_LIMIT: u64 = 4 * 1024 * 1024;

/// The cap for inventory snapshots: a `kubectl get -o yaml` of 10,000 pods is about 60 MiB.
pub const SNAPSHOT_LIMIT: u64 = 512 * 1024 * 1024;

/// The bytes of `path`, refused when longer than `limit`.
pub fn read_bytes(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("larger than {} (is this the right file?)", size(limit)),
        ));
    }
    Ok(bytes)
}

/// `path` as UTF-8 text, refused when longer than `limit` bytes.
pub fn read_text(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read_bytes(path, limit)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Calls `on_change` with the text of `path` each time it changes (checked every `every`) and on each SIGHUP,
/// changed or not; not at the start. A read that fails is retried at the next check: a mounted ConfigMap is
/// updated by swapping a symlink, and one read can fall in between.
pub fn watch<F, Fut>(path: PathBuf, every: Duration, mut on_change: F)
where
    F: FnMut(String) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut hangups = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::hangup(),
        ) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, file = %path.display(), "cannot listen for SIGHUP; the file is re-read when it changes only");
                None
            }
        };
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = read_text(&path, CONFIG_LIMIT).ok();
        loop {
            let hangup = tokio::select! {
                _ = interval.tick() => false,
                Some(()) = async { hangups.as_mut()?.recv().await } => true,
            };
            let text = match read_text(&path, CONFIG_LIMIT) {
                Ok(text) => text,
                Err(error) => {
                    tracing::debug!(%error, file = %path.display(), "cannot read the file now");
                    continue;
                }
            };
            if !hangup && seen.as_ref() == Some(&text) {
                continue;
            }
            seen = Some(text.clone());
            on_change(text).await;
        }
    });
}

fn size(bytes: u64) -> String {
    format!("{} MiB", bytes / (1024 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_file_is_refused_after_the_cap() {
        let error = read_text(Path::new("/dev/zero"), 1024 * 1024).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(
            error.to_string(),
            "larger than 1 MiB (is this the right file?)"
        );
    }

    #[test]
    fn a_file_up_to_the_cap_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "a: 1\n").unwrap();
        assert_eq!(read_text(&path, 5).unwrap(), "a: 1\n");
        assert!(read_text(&path, 4).is_err());
    }
}
