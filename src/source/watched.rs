//! Files a backend's credentials come from (token, password, client secret, certificates), re-read when
//! they change: projected ServiceAccount tokens rotate about hourly and cert-manager renews certificates,
//! while the Prometheus Adapter reads its token once at start and fails after the first rotation.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::config::Material;

/// What tells one version of a file from the next: Kubernetes swaps a Secret volume's symlink, which
/// changes the inode; an edit in place changes the modification time or the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// The stamp of `path` (following symlinks, as a Secret volume needs).
pub(super) fn stamp(path: &Path) -> Result<Stamp, String> {
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

/// A secret kept in a file (or given inline): its text without the trailing newline editors and `kubectl
/// create secret --from-file` leave. Never logged.
pub struct SecretFile {
    material: Material,
    current: Mutex<Option<(Stamp, Arc<str>)>>,
}

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFile")
            .field("material", &self.material)
            .finish_non_exhaustive()
    }
}

impl SecretFile {
    /// Nothing is read until the first use.
    pub fn new(material: Material) -> Self {
        Self {
            material,
            current: Mutex::new(None),
        }
    }

    /// The file's text as it is now: read again only when its stamp changed since the last read.
    pub fn read(&self) -> Result<Arc<str>, String> {
        let path = match &self.material {
            Material::File(path) => path,
            Material::Inline(bytes) => {
                return std::str::from_utf8(bytes)
                    .map(|text| text.trim_end_matches(['\r', '\n']).into())
                    .map_err(|_| "an inline secret is not UTF-8 text".to_owned());
            }
        };
        let stamp = stamp(path)?;
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, text)) = current.as_ref()
            && *seen == stamp
        {
            return Ok(text.clone());
        }
        let text = crate::files::read_text(path, 64 * 1024)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let text: Arc<str> = text.trim_end_matches(['\r', '\n']).into();
        if text.is_empty() {
            return Err(format!("{} is empty", path.display()));
        }
        *current = Some((stamp, text.clone()));
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_secret_is_read_again_and_its_newline_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let secret = SecretFile::new(Material::File(path.clone()));
        assert_eq!(&*secret.read().unwrap(), "first");
        // A Secret volume update: a new file swapped in under the same name.
        let next = dir.path().join("token.new");
        std::fs::write(&next, "second-token\n").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(&*secret.read().unwrap(), "second-token");
    }

    #[test]
    fn a_missing_or_empty_secret_is_an_error_that_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let secret = SecretFile::new(Material::File(path.clone()));
        assert!(secret.read().unwrap_err().contains("token"));
        std::fs::write(&path, "\n").unwrap();
        assert!(secret.read().unwrap_err().ends_with("token is empty"));
    }
}
