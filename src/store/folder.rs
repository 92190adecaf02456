//! The store folder: made private to its owner, and locked while a server
//! has it open (one server per folder, whichever backend it runs on).

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use super::StoreError;

/// Creates the folder (0700) when missing and takes `<dir>/lock`
/// exclusively: a second server on the same folder is refused, on either
/// backend (fjall's own lock covers only its keyspaces).
pub fn lock_folder(dir: &Path) -> Result<std::fs::File, StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| StoreError::io("creating the store folder", e))?;
    } else {
        tighten_folder(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join("lock"))
        .map_err(|e| StoreError::io("opening the folder lock", e))?;
    match crate::sys::fs::try_lock(&file) {
        Ok(true) => Ok(file),
        // Another server holds it; a lock that fails otherwise is
        // reported the same way (the folder cannot be made ours).
        Ok(false) | Err(_) => Err(StoreError::Locked(dir.display().to_string())),
    }
}

/// Takes group and others off an existing store folder: only its owner
/// gets in (the socket, the payloads), as for a folder made here. Says so
/// on stderr, since it changes what the user set.
/// A shared folder (sticky, like /tmp) or another user's is left alone,
/// with a warning: taking it from everyone else is not ours to do.
fn tighten_folder(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(dir)
        .map_err(|e| StoreError::io("reading the store folder's permissions", e))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let ours = meta.uid() == crate::sys::fs::effective_uid();
    if !ours || mode & 0o1000 != 0 {
        eprintln!(
            "xs: warning: {} is {mode:04o} and shared or not ours: left as it is, \
             so others may reach the store; use a folder of your own",
            dir.display()
        );
        return Ok(());
    }
    let tight = mode & 0o700;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(tight))
        .map_err(|e| StoreError::io("tightening the store folder's permissions", e))?;
    eprintln!(
        "xs: {} was {mode:04o}; made it {tight:04o} so only its owner gets in",
        dir.display()
    );
    Ok(())
}
