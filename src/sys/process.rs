//! Child processes that cannot outlive the server: the spawner, process
//! groups, and signalling them.
//!
//! How it works. Every child (a `command:` service's program, or a `^prog`
//! inside Nushell) is spawned by one long-lived spawner thread, in a process
//! group of its own (`setpgid`), with the parent-death signal set to
//! SIGKILL (`PR_SET_PDEATHSIG`). That signal fires when the *thread* that
//! forked the child ends, which is why a single thread that lives as long
//! as the server does all the forking: if the server is SIGKILLed, every
//! direct child is killed by the kernel. Grandchildren share the child's
//! process group; to reach them after a crash, each group is also recorded
//! in `<store>/children` with its leader's start time, and the next server
//! kills the groups it finds there whose leader still has that start time
//! (so a reused pid is never hit). Stopping a group is SIGTERM to the whole
//! group, then SIGKILL once the grace period has passed (the caller's
//! policy, `processor/supervise.rs`).

use std::collections::HashSet;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex, OnceLock};

use crossbeam_channel::{Receiver, Sender};

type SpawnJob = Box<dyn FnOnce() -> io::Result<Child> + Send>;

struct SpawnRequest {
    job: SpawnJob,
    reply: Sender<io::Result<Child>>,
}

/// The server's spawner and its record of live process groups.
struct Supervisor {
    requests: Sender<SpawnRequest>,
    record: PathBuf,
    groups: Mutex<Vec<(i32, u64)>>,
}

static SUPERVISOR: OnceLock<Arc<Supervisor>> = OnceLock::new();

/// Starts the spawner for the store in `dir`, first killing the process
/// groups a dead predecessor left behind.
pub fn start(dir: &Path) -> Result<(), String> {
    let record = dir.join("children");
    kill_leftovers(&record);
    let (requests, incoming) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("spawner".into())
        .spawn(move || serve_spawns(incoming))
        .map_err(|e| format!("cannot start the spawner thread: {e}"))?;
    let supervisor = Arc::new(Supervisor {
        requests,
        record,
        groups: Mutex::new(Vec::new()),
    });
    let _ = SUPERVISOR.set(supervisor);
    Ok(())
}

fn serve_spawns(incoming: Receiver<SpawnRequest>) {
    for request in incoming {
        let _ = request.reply.send((request.job)());
    }
}

/// Spawns `command` in a process group of its own that dies with the
/// server. Without a running server (unit tests), it is spawned directly.
pub fn spawn(mut command: Command) -> io::Result<Child> {
    // SAFETY: getpid is async-signal-safe and has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // The server blocks SIGINT/SIGTERM in its threads (they are
            // taken by sigwait); a child must start with none blocked.
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // The parent may have died before the line above took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let Some(supervisor) = SUPERVISOR.get() else {
        return command.spawn();
    };
    let (reply, answer) = crossbeam_channel::bounded(1);
    let job: SpawnJob = Box::new(move || command.spawn());
    supervisor
        .requests
        .send(SpawnRequest { job, reply })
        .map_err(|_| io::Error::other("the spawner has stopped"))?;
    let child = answer
        .recv()
        .map_err(|_| io::Error::other("the spawner has stopped"))??;
    supervisor.remember(child.id() as i32);
    Ok(child)
}

/// Forgets a process group once its leader has been reaped.
pub fn forget(pid: u32) {
    if let Some(supervisor) = SUPERVISOR.get() {
        let mut groups = supervisor.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups.retain(|(p, _)| *p != pid as i32);
        supervisor.write_record(&groups);
    }
}

impl Supervisor {
    fn remember(&self, pid: i32) {
        let Some(started) = start_time(pid) else {
            return;
        };
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups.push((pid, started));
        self.write_record(&groups);
    }

    fn write_record(&self, groups: &[(i32, u64)]) {
        let text: String = groups
            .iter()
            .map(|(pid, started)| format!("{pid} {started}\n"))
            .collect();
        let partial = self.record.with_extension("partial");
        if std::fs::write(&partial, text).is_ok() {
            let _ = std::fs::rename(&partial, &self.record);
        }
    }
}

/// A process's start time (clock ticks since boot), from /proc.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields after its ')' are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

fn kill_leftovers(record: &Path) {
    let Ok(text) = std::fs::read_to_string(record) else {
        return;
    };
    for line in text.lines() {
        let mut fields = line.split(' ');
        let (Some(pid), Some(started)) = (fields.next(), fields.next()) else {
            continue;
        };
        let (Ok(pid), Ok(started)) = (pid.parse::<i32>(), started.parse::<u64>()) else {
            continue;
        };
        // The leader may be gone while the group lives on (its orphans):
        // a pid still in use as a group id is never reused, so a missing
        // leader is safe to signal; a leader with another start time is a
        // reused pid, so its old group is empty.
        let leader = start_time(pid);
        if pid > 1 && (leader.is_none() || leader == Some(started)) {
            signal_group(pid as u32, libc::SIGKILL);
        }
    }
    let _ = std::fs::remove_file(record);
}

/// Sends `signal` to the process group led by `pid`; a group that is
/// gone already is no error worth reporting.
fn signal_group(pid: u32, signal: libc::c_int) {
    // SAFETY: kill has no memory effects; -pid names the group.
    unsafe { libc::kill(-(pid as i32), signal) };
}

/// Asks the process group led by `pid` to stop (SIGTERM).
pub fn terminate_group(pid: u32) {
    signal_group(pid, libc::SIGTERM);
}

/// Kills the process group led by `pid` (SIGKILL).
pub fn kill_group(pid: u32) {
    signal_group(pid, libc::SIGKILL);
}

/// The process groups a processor's script has started and not reaped:
/// stopping the processor stops them.
#[derive(Clone, Default)]
pub struct ChildGroups(Arc<Mutex<HashSet<u32>>>);

impl ChildGroups {
    pub fn add(&self, pid: u32) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(pid);
    }

    pub fn remove(&self, pid: u32) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pid);
    }

    pub fn pids(&self) -> Vec<u32> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }

    /// SIGTERM to every group now.
    pub fn terminate(&self) {
        for pid in self.pids() {
            terminate_group(pid);
        }
    }

    /// SIGKILL to every group left.
    pub fn kill(&self) {
        for pid in self.pids() {
            kill_group(pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_this_process_is_readable() {
        assert!(start_time(std::process::id() as i32).is_some());
    }
}
