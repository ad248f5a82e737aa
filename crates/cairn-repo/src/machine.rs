//! Small facts about the machine, for snapshot manifests and key slots.

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it
    // or truncates, and we stop at the first NUL either way.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

pub fn username() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            // SAFETY: geteuid cannot fail.
            let uid = unsafe { libc::geteuid() };
            if uid == 0 {
                "root".into()
            } else {
                uid.to_string()
            }
        })
}

/// A process on one machine, marked well enough that a later process on the same machine
/// can tell it has ended: the kernel's boot id and PID namespace, the PID, and the PID's
/// start time (so a reused PID is not mistaken for the process).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessMark {
    /// Boot id and PID namespace: equal only for processes that see the same PIDs.
    pub kernel: String,
    pub pid: u32,
    /// Clock ticks after boot at which the process started.
    pub start_ticks: u64,
}

/// This process's mark, where the system can say it (Linux); `None` elsewhere.
pub fn this_process() -> Option<ProcessMark> {
    let pid = std::process::id();
    Some(ProcessMark {
        kernel: kernel_id()?,
        pid,
        start_ticks: start_ticks(pid)?,
    })
}

/// Whether the marked process has ended: `Some(true)` only when this machine can prove
/// it, `None` when the process ran elsewhere (or the system cannot say).
pub fn has_ended(mark: &ProcessMark) -> Option<bool> {
    if kernel_id()? != mark.kernel {
        return None;
    }
    Some(start_ticks(mark.pid) != Some(mark.start_ticks))
}

fn kernel_id() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let pid_ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{} {}", boot.trim(), pid_ns.display()))
}

fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything, so count the
    // fields after its last `)`: they start at field 3, and the start time is field 22.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_not_ended_and_a_process_that_exited_has() {
        let Some(me) = this_process() else { return };
        assert_eq!(has_ended(&me), Some(false));
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        let mark = ProcessMark {
            kernel: me.kernel.clone(),
            pid,
            start_ticks: start_ticks(pid).unwrap_or(0),
        };
        child.wait().expect("wait for true");
        assert_eq!(has_ended(&mark), Some(true));
        let elsewhere = ProcessMark {
            kernel: "another machine".into(),
            ..me
        };
        assert_eq!(has_ended(&elsewhere), None);
    }
}
