//! Payloads in cacache's content-v2 layout.
//!
//! Files live at `cacache/content-v2/<algo>/<hex[0..2]>/<hex[2..4]>/<hex[4..]>`,
//! the layout cross.stream reads and writes, so either program finds the
//! other's payloads. Writes go through cacache (temp file, then rename);
//! cacache never syncs, so durability is arranged here: small payloads ride
//! in the writer's journal batch and are synced there (see `writer.rs`),
//! large ones are synced by the connection that wrote them.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cacache::Integrity;

use crate::store::StoreError;

/// Payloads up to this size are carried in the journal batch; larger ones
/// are synced file by file.
pub const JOURNALED_PAYLOAD_MAX: usize = 64 * 1024;

/// The content folder of one store.
#[derive(Debug, Clone)]
pub struct Cas {
    dir: PathBuf,
    /// Content folders (`sha256/xx/yy`) known to exist, so a small write
    /// does not ask the file system again.
    known_dirs: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<PathBuf>>>,
}

/// Names temporary files uniquely within this process.
static TEMP_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Parses an SRI string, separating "not an SRI at all" from "an SRI whose
/// digest is not base64", as cross.stream's messages do.
pub fn parse_sri(text: &str) -> Result<Integrity, StoreError> {
    let sri = Integrity::from_str(text)
        .map_err(|e| StoreError::BadInput(format!("Invalid CAS hash: {e}")))?;
    let digest_ok = sri.hashes.iter().all(|h| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(&h.digest)
            .is_ok()
    });
    if !digest_ok {
        return Err(StoreError::BadInput(format!(
            "Invalid CAS hash format: {text}"
        )));
    }
    Ok(sri)
}

impl Cas {
    pub fn new(dir: PathBuf) -> Cas {
        Cas {
            dir,
            known_dirs: Default::default(),
        }
    }

    /// The store's cacache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the content for `sri` lives (whether or not it exists).
    pub fn path_of(&self, sri: &Integrity) -> PathBuf {
        let (algo, hex) = sri.to_hex();
        let mut path = self.dir.join("content-v2");
        path.push(algo.to_string());
        path.push(hex.get(0..2).unwrap_or("00"));
        path.push(hex.get(2..4).unwrap_or("00"));
        path.push(hex.get(4..).unwrap_or("00"));
        path
    }

    /// Opens stored content for reading, `None` when absent.
    pub fn open(&self, sri: &Integrity) -> Result<Option<File>, StoreError> {
        match File::open(self.path_of(sri)) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("opening payload", e)),
        }
    }

    /// Reads a whole payload, `None` when absent.
    pub fn read(&self, sri: &Integrity) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(mut file) = self.open(sri)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| StoreError::io("reading payload", e))?;
        Ok(Some(bytes))
    }

    /// Whether the content exists and matches its hash.
    pub fn verify(&self, sri: &Integrity) -> Result<bool, StoreError> {
        match self.read(sri)? {
            Some(bytes) => Ok(sri.check(&bytes).is_ok()),
            None => Ok(false),
        }
    }

    /// Writes bytes held in memory; not synced (the caller arranges that).
    ///
    /// The hot path of every small append, so it does the least the layout
    /// needs: nothing when the content is already there, else a temporary
    /// file in the destination folder renamed into place (atomic, so a
    /// reader never sees a partial file), creating the folder only the
    /// first time this process meets it. Large payloads stream through
    /// cacache's writer instead (`write_stream`).
    pub fn write_bytes(&self, bytes: &[u8]) -> Result<Integrity, StoreError> {
        let sri = Integrity::from(bytes);
        let path = self.path_of(&sri);
        if path.exists() {
            return Ok(sri);
        }
        let Some(folder) = path.parent() else {
            return Err(StoreError::Storage(format!(
                "bad content path {}",
                path.display()
            )));
        };
        let known = self
            .known_dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(folder);
        if !known {
            std::fs::create_dir_all(folder)
                .map_err(|e| StoreError::io("creating a content folder", e))?;
            self.known_dirs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(folder.to_path_buf());
        }
        let n = TEMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp = folder.join(format!(".tmp-{}-{n}", std::process::id()));
        let written = std::fs::write(&temp, bytes).and_then(|()| std::fs::rename(&temp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(StoreError::io("writing payload", e));
        }
        Ok(sri)
    }

    /// Streams a payload from `body` into the store, refusing more than
    /// `max_bytes`. With `sync`, the file and its folders are on stable
    /// storage when this returns. Returns the hash and the size.
    pub fn write_stream(
        &self,
        body: &mut dyn Read,
        max_bytes: u64,
        sync: bool,
    ) -> Result<(Integrity, u64), StoreError> {
        let mut writer = cacache::WriteOpts::new()
            .open_hash_sync(&self.dir)
            .map_err(StoreError::cas)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut total: u64 = 0;
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::BadBody(e.to_string())),
            };
            total += n as u64;
            if total > max_bytes {
                return Err(StoreError::TooLarge(max_bytes));
            }
            writer
                .write_all(&buf[..n])
                .map_err(|e| StoreError::io("writing payload", e))?;
        }
        if total == 0 {
            // Nothing to keep: dropping the writer deletes its temp file.
            return Ok((Integrity::from(b""), 0));
        }
        let sri = writer.commit().map_err(StoreError::cas)?;
        if sync {
            self.sync_content(&sri)?;
        }
        Ok((sri, total))
    }

    /// Makes one content file and the folders leading to it durable.
    pub fn sync_content(&self, sri: &Integrity) -> Result<(), StoreError> {
        let path = self.path_of(sri);
        let sync = |p: &Path| -> Result<(), StoreError> {
            File::open(p)
                .and_then(|f| f.sync_all())
                .map_err(|e| StoreError::io("syncing payload", e))
        };
        sync(&path)?;
        let mut dir = path.parent();
        // yy/, xx/ and sha256/ may all have been created by this write.
        for _ in 0..3 {
            match dir {
                Some(d) => {
                    sync(d)?;
                    dir = d.parent();
                }
                None => break,
            }
        }
        Ok(())
    }

    /// Syncs the whole file system holding the content folder: one call
    /// that makes every payload written so far durable.
    pub fn sync_all(&self) -> Result<(), StoreError> {
        let dir = File::open(&self.dir).map_err(|e| StoreError::io("opening cas dir", e))?;
        use std::os::fd::AsRawFd;
        // SAFETY: syncfs takes a valid open descriptor and touches no memory.
        let rc = unsafe { libc::syncfs(dir.as_raw_fd()) };
        if rc != 0 {
            return Err(StoreError::io("syncfs", io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Deletes a content file; absent is fine.
    pub fn remove(&self, sri: &Integrity) -> Result<(), StoreError> {
        match std::fs::remove_file(self.path_of(sri)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("removing payload", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_cross_stream() {
        let cas = Cas::new(PathBuf::from("/s/cacache"));
        let sri = parse_sri("sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=").unwrap();
        assert_eq!(
            cas.path_of(&sri),
            PathBuf::from(
                "/s/cacache/content-v2/sha256/e3/b0/c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            )
        );
    }

    #[test]
    fn bad_sri_messages() {
        assert!(parse_sri("nonsense").is_err());
        let e = parse_sri("sha256-!!!notbase64").unwrap_err().to_string();
        assert!(e.contains("Invalid CAS hash"), "{e}");
    }
}
