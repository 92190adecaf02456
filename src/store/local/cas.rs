//! Payloads in cacache's content-v2 layout.
//!
//! Files live at `cacache/content-v2/<algo>/<hex[0..2]>/<hex[2..4]>/<hex[4..]>`,
//! the layout cross.stream reads and writes, so either program finds the
//! other's payloads. Writes go through cacache (temp file, then rename);
//! cacache never syncs, so durability is arranged here: small payloads ride
//! in the writer's journal batch and are synced there (see `writer.rs`),
//! large ones are synced by the connection that wrote them.
//!
//! Every payload claims its bytes from the free-space reserve before it is
//! written (`space.rs`); files are 0600. Reads check the content against
//! its hash as it streams (`Verified`): a damaged file ends the read with an
//! error instead of serving wrong bytes.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cacache::Integrity;

use super::space::DiskSpace;
use crate::store::StoreError;
use crate::sys;

/// Payloads up to this size are carried in the journal batch; larger ones
/// are synced file by file.
pub const JOURNALED_PAYLOAD_MAX: usize = 64 * 1024;

/// The content folder of one store.
#[derive(Debug, Clone)]
pub struct Cas {
    dir: PathBuf,
    /// Content folders known to exist, so a small write does not ask the
    /// file system again: `xxyy` for `xx/yy` under `sha256/`, `xx\0\0`
    /// for `xx`. Folders are never removed while the server runs.
    known_dirs: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<[u8; 4]>>>,
    /// `content-v2/sha256`, opened once: small writes name their files
    /// relative to it (`xx/yy/<rest>`), so the kernel walks three path
    /// components per call instead of the whole store path.
    sha256_dir: std::sync::Arc<std::sync::OnceLock<Option<OwnedFd>>>,
    /// The store's free-space reserve.
    space: std::sync::Arc<DiskSpace>,
}

/// Names temporary files uniquely within this process.
static TEMP_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Parses an SRI string, separating "not an SRI at all" from "an SRI whose
/// digest is not base64", as cross.stream's messages do. A digest must
/// also have its algorithm's length: it names a file, and a longer one
/// would only fail there.
pub fn parse_sri(text: &str) -> Result<Integrity, StoreError> {
    let sri = Integrity::from_str(text).map_err(|e| {
        StoreError::BadInput(format!(
            "Invalid CAS hash: {e}",
            e = shorten(&e.to_string())
        ))
    })?;
    for hash in &sri.hashes {
        use base64::Engine;
        let Ok(digest) = base64::engine::general_purpose::STANDARD.decode(&hash.digest) else {
            return Err(StoreError::BadInput(format!(
                "Invalid CAS hash format: {}",
                shorten(text)
            )));
        };
        let expected = digest_len(hash.algorithm);
        if digest.len() != expected {
            return Err(StoreError::BadInput(format!(
                "Invalid CAS hash: a {} digest is {expected} bytes, this one is {}",
                hash.algorithm,
                digest.len()
            )));
        }
    }
    Ok(sri)
}

/// The digest length of an SRI algorithm, in bytes.
fn digest_len(algorithm: cacache::Algorithm) -> usize {
    match algorithm {
        cacache::Algorithm::Sha512 => 64,
        cacache::Algorithm::Sha384 => 48,
        cacache::Algorithm::Sha256 => 32,
        cacache::Algorithm::Sha1 => 20,
        // xxh3, 128 bits (and any algorithm cacache adds later).
        _ => 16,
    }
}

/// A client's text cut to a length fit for a one-line error.
fn shorten(text: &str) -> String {
    const MAX: usize = 120;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

/// Creates `path` (0600, failing if it exists) holding `bytes`.
fn write_new_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

/// A stored payload being read, its bytes checked against its hash: at
/// the end, content that does not match (a damaged or truncated file)
/// gives an error instead of the end of the data, and is logged, so a
/// reader never takes wrong bytes for the payload.
pub struct Verified {
    sri: String,
    reader: Option<cacache::SyncReader>,
}

impl Read for Verified {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(0);
        };
        let n = reader.read(buf)?;
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        let Some(reader) = self.reader.take() else {
            return Ok(0);
        };
        match reader.check() {
            Ok(_) => Ok(0),
            Err(e) => {
                let text = format!("payload {} does not match its hash: {e}", self.sri);
                eprintln!("xs: {text}");
                Err(io::Error::new(io::ErrorKind::InvalidData, text))
            }
        }
    }
}

impl Cas {
    pub fn new(dir: PathBuf, space: std::sync::Arc<DiskSpace>) -> Cas {
        Cas {
            dir,
            known_dirs: Default::default(),
            sha256_dir: Default::default(),
            space,
        }
    }

    /// The `content-v2/sha256` folder, created when missing and opened
    /// once; `None` if that fails (writes then take the path-based way).
    ///
    /// It is marked as a top of hierarchy for ext4's Orlov allocator
    /// (`chattr +T`; ignored elsewhere), so its 256 fan-out folders, and
    /// with them the payload files, spread over block groups instead of
    /// crowding the store's own. Measured here: on a journal-less ext4,
    /// creating a file skips every recently deleted free inode of its
    /// group one lookup at a time, and a group shared with busy temp
    /// folders (test suites, builds) made each payload file cost about a
    /// millisecond; spread out, about 50 µs.
    fn sha256_dir(&self) -> Option<&OwnedFd> {
        self.sha256_dir
            .get_or_init(|| {
                let path = self.dir.join("content-v2").join("sha256");
                std::fs::create_dir_all(&path).ok()?;
                let fd = sys::fs::open_dir(&path).ok()?;
                // A hint only: a file system without it (not ext4) is fine.
                let _ = sys::fs::mark_top_dir(fd.as_fd());
                Some(fd)
            })
            .as_ref()
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

    /// Opens stored content for reading, checked against its hash as it
    /// is read; `None` when absent.
    pub fn open(&self, sri: &Integrity) -> Result<Option<Verified>, StoreError> {
        match cacache::SyncReader::open_hash(&self.dir, sri.clone()) {
            Ok(reader) => Ok(Some(Verified {
                sri: sri.to_string(),
                reader: Some(reader),
            })),
            Err(cacache::Error::IoError(e, _)) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(cacache::Error::IoError(e, _)) => Err(StoreError::io("opening payload", e)),
            Err(e) => Err(StoreError::cas(e)),
        }
    }

    /// Reads a whole payload as stored, unchecked (the caller checks it);
    /// `None` when absent.
    pub fn read(&self, sri: &Integrity) -> Result<Option<Vec<u8>>, StoreError> {
        match std::fs::read(self.path_of(sri)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("reading payload", e)),
        }
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
        let (algo, hex) = sri.to_hex();
        match self.sha256_dir() {
            Some(dir) if algo == cacache::Algorithm::Sha256 && hex.len() > 4 => {
                self.write_relative(dir, &hex, bytes)?
            }
            _ => self.write_by_path(&sri, bytes)?,
        }
        Ok(sri)
    }

    /// `write_bytes` relative to the open `sha256` folder.
    fn write_relative(&self, dir: &OwnedFd, hex: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let c = |text: String| {
            CString::new(text).map_err(|_| StoreError::Storage("content path holds NUL".into()))
        };
        let fd = dir.as_fd();
        let key: [u8; 4] = hex.as_bytes()[..4].try_into().unwrap_or([b'0'; 4]);
        // The first-level folder's key: hex digits are never NUL.
        let top_key = [key[0], key[1], 0, 0];
        let final_path = c(format!("{}/{}/{}", &hex[0..2], &hex[2..4], &hex[4..]))?;
        let (known, top_known) = {
            let known = self.known_dirs.lock().unwrap_or_else(|e| e.into_inner());
            (known.contains(&key), known.contains(&top_key))
        };
        // A folder made just now cannot hold the file: no need to look.
        let mut fresh_folder = false;
        if !known {
            // In a young store most second-level folders are new while
            // their first-level folder is not: skip that `mkdir`.
            let top = (!top_known).then(|| hex[0..2].to_string());
            let second = Some(format!("{}/{}", &hex[0..2], &hex[2..4]));
            for folder in [top, second].into_iter().flatten() {
                let folder = c(folder)?;
                match sys::fs::mkdir_at(fd, &folder, 0o777) {
                    Ok(()) => fresh_folder = true,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => fresh_folder = false,
                    Err(e) => return Err(StoreError::io("creating a content folder", e)),
                }
            }
            let mut known = self.known_dirs.lock().unwrap_or_else(|e| e.into_inner());
            known.insert(key);
            known.insert(top_key);
        }
        // A failed look is no answer: the write below then finds out.
        if !fresh_folder && sys::fs::exists_at(fd, &final_path).unwrap_or(false) {
            return Ok(());
        }
        let n = TEMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp = c(format!(
            "{}/{}/.tmp-{}-{n}",
            &hex[0..2],
            &hex[2..4],
            std::process::id()
        ))?;
        let mut file = sys::fs::create_new_at(fd, &temp, 0o600)
            .map_err(|e| StoreError::io("creating a payload file", e))?;
        let written = file.write_all(bytes);
        drop(file);
        let renamed = written.and_then(|()| sys::fs::rename_at(fd, &temp, &final_path));
        if let Err(error) = renamed {
            let _ = sys::fs::unlink_at(fd, &temp);
            return Err(StoreError::io("writing payload", error));
        }
        Ok(())
    }

    /// `write_bytes` by full paths (another algorithm, or no open folder).
    fn write_by_path(&self, sri: &Integrity, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path_of(sri);
        if path.exists() {
            return Ok(());
        }
        let Some(folder) = path.parent() else {
            return Err(StoreError::Storage(format!(
                "bad content path {}",
                path.display()
            )));
        };
        std::fs::create_dir_all(folder)
            .map_err(|e| StoreError::io("creating a content folder", e))?;
        let n = TEMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp = folder.join(format!(".tmp-{}-{n}", std::process::id()));
        let written = write_new_file(&temp, bytes).and_then(|()| std::fs::rename(&temp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(StoreError::io("writing payload", e));
        }
        Ok(())
    }

    /// Streams a payload from `body` into the store, refusing more than
    /// `max_bytes`, and more than the free-space reserve allows: all at
    /// once when the size is `declared`, else chunk by chunk as it comes.
    /// With `sync`, the file and its folders are on stable storage when
    /// this returns. Returns the hash and the size. On any failure nothing
    /// is left behind (cacache's temporary file goes with its writer).
    pub fn write_stream(
        &self,
        body: &mut dyn Read,
        declared: Option<u64>,
        max_bytes: u64,
        sync: bool,
    ) -> Result<(Integrity, u64), StoreError> {
        // A declared size is claimed whole, and counts until written.
        let mut declared_claim = match declared {
            Some(size) => Some(self.space.claim(size, "the payload")?),
            None => None,
        };
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
            let mut chunk_claim = match declared_claim {
                Some(_) => None,
                None => Some(self.space.claim(n as u64, "the payload")?),
            };
            writer
                .write_all(&buf[..n])
                .map_err(|e| StoreError::io("writing payload", e))?;
            if let Some(claim) = declared_claim.as_mut().or(chunk_claim.as_mut()) {
                claim.written(n as u64);
            }
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
        sys::fs::sync_file_system(&dir).map_err(|e| StoreError::io("syncfs", e))
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
        let cas = Cas::new(
            PathBuf::from("/s/cacache"),
            std::sync::Arc::new(DiskSpace::new(Path::new("/s"))),
        );
        let sri = parse_sri("sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=").unwrap();
        assert_eq!(
            cas.path_of(&sri),
            PathBuf::from(
                "/s/cacache/content-v2/sha256/e3/b0/c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            )
        );
    }

    /// Every file under `dir`, relative.
    fn files(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(at) = todo.pop() {
            for entry in std::fs::read_dir(&at).unwrap().flatten() {
                if entry.file_type().unwrap().is_dir() {
                    todo.push(entry.path());
                } else {
                    let rel = entry.path().strip_prefix(dir).unwrap().to_path_buf();
                    out.push(rel.display().to_string());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn small_writes_land_in_the_layout_and_leave_no_temp_files() {
        let tmp = tempfile::tempdir().unwrap();
        let cas = Cas::new(
            tmp.path().join("cacache"),
            std::sync::Arc::new(DiskSpace::new(tmp.path())),
        );
        let a = cas.write_bytes(b"one").unwrap();
        let b = cas.write_bytes(b"two").unwrap();
        // Same bytes again: nothing changes.
        assert_eq!(cas.write_bytes(b"one").unwrap(), a);
        assert_eq!(cas.read(&a).unwrap().unwrap(), b"one");
        assert_eq!(cas.read(&b).unwrap().unwrap(), b"two");
        // A second instance (a restart) finds the folders already there.
        let again = Cas::new(
            tmp.path().join("cacache"),
            std::sync::Arc::new(DiskSpace::new(tmp.path())),
        );
        let c = again.write_bytes(b"three").unwrap();
        assert!(again.verify(&c).unwrap());
        assert_eq!(again.write_bytes(b"two").unwrap(), b);
        let found = files(cas.dir());
        assert_eq!(found.len(), 3, "{found:?}");
        for sri in [&a, &b, &c] {
            let rel = cas.path_of(sri);
            let rel = rel.strip_prefix(cas.dir()).unwrap().display().to_string();
            assert!(found.contains(&rel), "{rel} not in {found:?}");
        }
    }

    #[test]
    fn bad_sri_messages() {
        assert!(parse_sri("nonsense").is_err());
        let e = parse_sri("sha256-!!!notbase64").unwrap_err().to_string();
        assert!(e.contains("Invalid CAS hash"), "{e}");
        // A digest of the wrong length names no file: refused, briefly.
        let long = format!("sha256-{}", "A".repeat(100_000));
        let e = parse_sri(&long).unwrap_err().to_string();
        assert!(e.contains("a sha256 digest is 32 bytes"), "{e}");
        assert!(e.len() < 200, "{e}");
    }

    #[test]
    fn a_damaged_payload_reads_as_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let cas = Cas::new(
            tmp.path().join("cacache"),
            std::sync::Arc::new(DiskSpace::new(tmp.path())),
        );
        let sri = cas.write_bytes(b"the payload").unwrap();
        let mut whole = Vec::new();
        cas.open(&sri)
            .unwrap()
            .unwrap()
            .read_to_end(&mut whole)
            .unwrap();
        assert_eq!(whole, b"the payload");
        std::fs::write(cas.path_of(&sri), b"the pay").unwrap();
        let mut cut = Vec::new();
        let e = cas
            .open(&sri)
            .unwrap()
            .unwrap()
            .read_to_end(&mut cut)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
