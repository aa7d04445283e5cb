//! Starting a process in a session of its own (`setsid(2)` between fork and exec), so that a
//! terminal's or its parent's process-group signals do not reach it. Only the system call;
//! which process is started, and why, is the caller's business.

use std::{os::unix::process::CommandExt as _, process::Command};

/// Makes `cmd`'s child call `setsid(2)` before it executes its program.
pub fn in_new_session(cmd: &mut Command) {
    // SAFETY: the hook runs in the child between fork and exec, where only async-signal-safe
    // work is allowed: rustix's setsid is the bare system call (no allocation, no lock), and
    // the error path only wraps an errno.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_leads_a_new_session() {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "cut -d' ' -f6 /proc/$$/stat; echo $$"]);
        in_new_session(&mut cmd);
        let out = cmd.output().expect("run sh");
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        let (sid, pid) = (lines.next().unwrap(), lines.next().unwrap());
        assert_eq!(sid, pid, "session id is the child's own pid");
    }
}
