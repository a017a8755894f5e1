//! Signals to the processes tests start, sent by system call rather than by
//! running `kill` or `pkill`: those come from procps, which a minimal
//! Debian does not have (two cluster tests failed on a fresh bookworm for
//! want of them).

use std::io;

pub use rustix::process::Signal;

/// Sends `signal` to process `pid`.
pub fn send(pid: u32, signal: Signal) -> io::Result<()> {
    let raw = i32::try_from(pid).map_err(|_| io::Error::other(format!("pid {pid} out of range")))?;
    let pid =
        rustix::process::Pid::from_raw(raw).ok_or_else(|| io::Error::other(format!("pid {raw} is not a process")))?;
    rustix::process::kill_process(pid, signal).map_err(io::Error::from)
}

/// The processes whose parent is `pid` now.
pub fn children_of(pid: u32) -> io::Result<Vec<u32>> {
    let processes = procfs::process::all_processes().map_err(io::Error::other)?;
    Ok(processes
        .filter_map(|process| process.ok()?.stat().ok())
        .filter(|stat| u32::try_from(stat.ppid).ok() == Some(pid))
        .filter_map(|stat| u32::try_from(stat.pid).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::process::{waitpid, Pid, WaitOptions};
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    #[test]
    fn a_child_is_found_stopped_resumed_and_killed() {
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = child.id();
        assert!(children_of(std::process::id()).expect("children").contains(&pid));
        send(pid, Signal::STOP).expect("stop");
        // The parent is told of the stop, as of an exit, without reaping.
        let raw = Pid::from_raw(pid as i32);
        let (_, status) = waitpid(raw, WaitOptions::UNTRACED).expect("waitpid").expect("a status");
        assert!(status.stopped(), "{status:?}");
        send(pid, Signal::CONT).expect("cont");
        send(pid, Signal::KILL).expect("kill");
        assert_eq!(child.wait().expect("exit").signal(), Some(9));
    }
}
