//! File-system calls: the store folder's lock and owner, free space, the
//! content folder's directory-relative calls, `syncfs`, and the open-file
//! limit.
//!
//! The content folder's calls (`*_at`) name files relative to an open
//! folder descriptor, so the kernel walks a few path components per call
//! instead of the whole store path: the hot path of every small append.
//! Names are `CStr`s, built once by the caller and passed as they are.
//!
//! The open-file limit. Every connection holds a descriptor, so the server
//! starts by raising its soft `RLIMIT_NOFILE` to the hard one: a login
//! shell's soft default (often 1024) would otherwise cap the connections
//! far below what the system allows. Child processes (Nushell's externals)
//! inherit the raised limit, as they would under a service manager that
//! sets it.

use std::ffi::{CStr, CString};
use std::fs::{File, TryLockError};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Takes `file` exclusively without waiting (std's `try_lock`: flock(2)
/// on Linux, so the lock belongs to this open file and ends when it
/// closes, even when the process is killed): false when another open file
/// holds it.
pub fn try_lock(file: &File) -> io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(error)) => Err(error),
    }
}

/// This process's effective user id.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Bytes an unprivileged user may still write on the file system holding
/// `path` (statvfs(2): available blocks times the fragment size).
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: a plain C struct, all zeroes is a valid value.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `stats` a valid out-pointer.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stats.f_bavail as u64 * stats.f_frsize as u64)
}

/// Makes everything written to the file system holding `file` durable:
/// one call instead of a sync per file (syncfs(2)).
pub fn sync_file_system(file: &File) -> io::Result<()> {
    // SAFETY: syncfs takes a valid open descriptor and touches no memory.
    if unsafe { libc::syncfs(file.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens the folder at `path` for the `*_at` calls below (read-only,
/// close-on-exec).
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: a valid C string; the descriptor is owned below.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// ext4's "top of a directory hierarchy" hint (`chattr +T`, not in libc).
const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Marks a folder as the top of a hierarchy (`chattr +T`): ext4 then
/// spreads its subfolders across block groups. A file system without the
/// flag refuses; that is an error the caller may ignore.
pub fn mark_top_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one integer at the pointer, a valid
    // local.
    if unsafe { libc::ioctl(dir.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & FS_TOPDIR_FL != 0 {
        return Ok(());
    }
    flags |= FS_TOPDIR_FL;
    // SAFETY: FS_IOC_SETFLAGS reads one integer at the pointer, a valid
    // local.
    if unsafe { libc::ioctl(dir.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates folder `name` inside `dir` (mkdirat(2)); an existing one is an
/// `AlreadyExists` error.
pub fn mkdir_at(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: a valid descriptor and C string.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `name` exists inside `dir` (fstatat(2) finds it).
pub fn exists_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<bool> {
    // SAFETY: a plain C struct, all zeroes is a valid value.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor, C string and out-pointer.
    if unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut stat, 0) } == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    if error.kind() == io::ErrorKind::NotFound {
        return Ok(false);
    }
    Err(error)
}

/// Creates file `name` inside `dir` for writing; it must not exist yet
/// (`O_EXCL`). Close-on-exec.
pub fn create_new_at(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<File> {
    // SAFETY: a valid descriptor and C string; the result is owned below.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just opened, owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Renames `from` to `to`, both inside `dir` (renameat(2): atomic, so a
/// reader sees the old name's file or none at the new name, never half).
pub fn rename_at(dir: BorrowedFd<'_>, from: &CStr, to: &CStr) -> io::Result<()> {
    let fd = dir.as_raw_fd();
    // SAFETY: a valid descriptor and C strings.
    if unsafe { libc::renameat(fd, from.as_ptr(), fd, to.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Removes file `name` inside `dir` (unlinkat(2)).
pub fn unlink_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: a valid descriptor and C string.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What the open-file limit came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit before.
    pub was: u64,
    /// The soft limit in force now.
    pub now: u64,
}

/// Linux refuses a soft limit above `fs.nr_open` (1048576 by default), so
/// an unlimited hard limit is met at that.
const UNLIMITED_TARGET: u64 = 1 << 20;

/// Raises the soft descriptor limit to the hard one. When that fails the
/// limit stays as it was (the server still runs).
pub fn raise_fd_limit() -> FdLimit {
    // SAFETY: a plain C struct, all zeroes is a valid value.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: getrlimit writes into the local struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return FdLimit {
            was: UNLIMITED_TARGET,
            now: UNLIMITED_TARGET,
        };
    }
    let was = limit.rlim_cur as u64;
    let target = if limit.rlim_max == libc::RLIM_INFINITY {
        UNLIMITED_TARGET.max(was)
    } else {
        limit.rlim_max as u64
    };
    if target <= was {
        return FdLimit { was, now: was };
    }
    let raised = libc::rlimit {
        rlim_cur: target as libc::rlim_t,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads the local struct.
    let now = if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        target
    } else {
        was
    };
    FdLimit { was, now }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_held_lock_is_refused_to_a_second_opener() {
        let dir = std::env::temp_dir().join(format!("xs-sys-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lock");
        let open = || File::create(&path).unwrap();
        let held = open();
        assert!(try_lock(&held).unwrap());
        assert!(!try_lock(&open()).unwrap());
        drop(held);
        assert!(try_lock(&open()).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn directory_relative_calls_write_rename_and_remove() {
        let path = std::env::temp_dir().join(format!("xs-sys-at-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        let dir = open_dir(&path).unwrap();
        mkdir_at(dir.as_fd(), c"sub", 0o700).unwrap();
        let again = mkdir_at(dir.as_fd(), c"sub", 0o700).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        drop(create_new_at(dir.as_fd(), c"sub/tmp", 0o600).unwrap());
        assert!(create_new_at(dir.as_fd(), c"sub/tmp", 0o600).is_err());
        rename_at(dir.as_fd(), c"sub/tmp", c"sub/final").unwrap();
        assert!(exists_at(dir.as_fd(), c"sub/final").unwrap());
        assert!(!exists_at(dir.as_fd(), c"sub/tmp").unwrap());
        unlink_at(dir.as_fd(), c"sub/final").unwrap();
        assert!(!exists_at(dir.as_fd(), c"sub/final").unwrap());
        assert!(free_bytes(&path).unwrap() > 0);
        sync_file_system(&File::open(&path).unwrap()).unwrap();
        std::fs::remove_dir_all(&path).unwrap();
    }
}
