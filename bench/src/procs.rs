//! Child processes that never outlive the harness, and what /proc says about them.
//!
//! Every child gets its own process group and `PR_SET_PDEATHSIG = SIGKILL`, is registered so
//! that SIGINT/SIGTERM kill it, and is killed (the whole group) when its guard drops, including
//! while an error unwinds. Children are spawned from the orchestrating (main) thread only: the
//! death signal fires when the *thread* that forked exits.

use anyhow::{Context, bail};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Process groups alive right now, for the signal handler.
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// Directories the signal handler removes (drop guards do it otherwise).
static SCRATCH: Mutex<Vec<std::path::PathBuf>> = Mutex::new(Vec::new());

/// A temporary directory, removed when dropped or when the harness is interrupted.
pub fn scratch(prefix: &str) -> std::io::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
    remove_on_interrupt(dir.path());
    Ok(dir)
}

/// Has the signal handler remove `dir` if the harness is interrupted.
pub fn remove_on_interrupt(dir: &Path) {
    if let Ok(mut dirs) = SCRATCH.lock() {
        dirs.push(dir.to_path_buf());
    }
}

/// Kills every registered process group. Safe to call more than once.
pub fn kill_all() {
    let groups = GROUPS.lock().map(|g| g.clone()).unwrap_or_default();
    for pgid in groups {
        // SAFETY: kill(2) with a negative pid signals the group we created for that child.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// On SIGINT, SIGTERM or SIGHUP: kill the children and exit.
pub fn install_signal_handler() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
        eprintln!("[bench] interrupted: stopping child processes");
        kill_all();
        for dir in SCRATCH.lock().map(|d| d.clone()).unwrap_or_default() {
            let _ = std::fs::remove_dir_all(dir);
        }
        std::process::exit(130);
    });
    Ok(())
}

/// The last lines a child wrote on one stream, and how many it wrote.
pub struct LogTail {
    lines: VecDeque<String>,
    keep: usize,
    pub total: u64,
}

impl LogTail {
    fn new(keep: usize) -> Self {
        LogTail {
            lines: VecDeque::new(),
            keep,
            total: 0,
        }
    }

    fn push(&mut self, line: String) {
        if self.lines.len() == self.keep {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
        self.total += 1;
    }

    pub fn last(&self, n: usize) -> Vec<String> {
        let skip = self.lines.len().saturating_sub(n);
        self.lines.iter().skip(skip).cloned().collect()
    }
}

/// A running child; killed with its whole process group on drop.
pub struct ChildProc {
    pub name: String,
    child: Child,
    pub pid: i32,
    pub spawned_at: Instant,
    pub stderr: Arc<Mutex<LogTail>>,
    pub stdout: Arc<Mutex<LogTail>>,
    /// The first `listening on http://ADDR` line's address, once seen.
    listening: std::sync::mpsc::Receiver<(String, Instant)>,
}

impl ChildProc {
    /// Spawns `command` with piped stdout/stderr, keeping the last 200 lines of each.
    pub fn spawn(name: &str, command: Command) -> anyhow::Result<ChildProc> {
        Self::spawn_keeping(name, command, 200)
    }

    /// Spawns `command`, keeping the last `keep` lines of stdout and of stderr.
    pub fn spawn_keeping(
        name: &str,
        mut command: Command,
        keep: usize,
    ) -> anyhow::Result<ChildProc> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::setpgid(0, 0);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                Ok(())
            });
        }
        let spawned_at = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {name}: {command:?}"))?;
        let pid = child.id() as i32;
        GROUPS.lock().unwrap().push(pid);

        let stderr = Arc::new(Mutex::new(LogTail::new(keep)));
        let stdout = Arc::new(Mutex::new(LogTail::new(keep)));
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(pipe) = child.stderr.take() {
            let sink = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
        }
        if let Some(pipe) = child.stdout.take() {
            let sink = stdout.clone();
            std::thread::spawn(move || {
                let mut sent = false;
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if !sent && let Some(addr) = line.strip_prefix("listening on http://") {
                        let _ = tx.send((addr.trim().to_string(), Instant::now()));
                        sent = true;
                    }
                    sink.lock().unwrap().push(line);
                }
            });
        }
        Ok(ChildProc {
            name: name.to_string(),
            child,
            pid,
            spawned_at,
            stderr,
            stdout,
            listening: rx,
        })
    }

    /// Waits (bounded) for the `listening on http://ADDR` line; returns the address and when it
    /// was read.
    pub fn wait_listening(&mut self, timeout: Duration) -> anyhow::Result<(String, Instant)> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.listening.recv_timeout(Duration::from_millis(1)) {
                Ok(found) => return Ok(found),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    // Stdout closed without the line: give the stderr thread a moment.
                    std::thread::sleep(Duration::from_millis(50));
                    let status = self.exit_status();
                    bail!(
                        "{} exited before listening ({status}); its stderr:\n{}",
                        self.name,
                        self.stderr_tail(30)
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not print its address within {timeout:?}; its stderr:\n{}",
                    self.name,
                    self.stderr_tail(30)
                );
            }
        }
    }

    pub fn exit_status(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(status)) => format!("exited: {status}"),
            Ok(None) => "still running".into(),
            Err(e) => format!("unknown: {e}"),
        }
    }

    /// Waits (bounded, without blocking the runtime) for the child to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn stderr_tail(&self, n: usize) -> String {
        self.stderr.lock().unwrap().last(n).join("\n")
    }

    pub fn stdout_tail(&self, n: usize) -> String {
        self.stdout.lock().unwrap().last(n).join("\n")
    }

    /// Kills the process group and reaps the child.
    pub fn stop(&mut self) {
        // SAFETY: signals the process group created for this child in `spawn`.
        unsafe {
            libc::kill(-self.pid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(mut groups) = GROUPS.lock() {
            groups.retain(|&g| g != self.pid);
        }
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a command to completion (bounded by `timeout`), killing it on timeout. Its stdout (up
/// to 100,000 lines) then stderr is returned on success; their ends are in the error otherwise.
pub fn run_bounded(name: &str, command: Command, timeout: Duration) -> anyhow::Result<String> {
    const KEEP: usize = 100_000;
    let mut child = ChildProc::spawn_keeping(name, command, KEEP)?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.child.try_wait() {
            // Let the reader threads drain.
            std::thread::sleep(Duration::from_millis(50));
            let out = format!("{}\n{}", child.stdout_tail(KEEP), child.stderr_tail(KEEP));
            if status.success() {
                return Ok(out);
            }
            bail!("{name} failed ({status}):\n{}", last_lines(&out, 40));
        }
        if Instant::now() > deadline {
            child.stop();
            bail!("{name} did not finish within {timeout:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Resident set size (VmRSS) of one process, in KiB.
pub fn rss_kib(pid: i32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

/// Peak resident set size (VmHWM) of one process, in KiB.
pub fn hwm_kib(pid: i32) -> Option<u64> {
    status_field(pid, "VmHWM:")
}

/// Context switches of a process's live threads: (voluntary, involuntary, threads). A
/// voluntary switch is a thread waiting for work or I/O; an involuntary one, a thread
/// preempted while it had work.
pub fn context_switches(pid: i32) -> (u64, u64, usize) {
    let mut totals = (0, 0, 0);
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return totals;
    };
    for task in tasks.flatten() {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        let field = |name| status_value(&status, name).unwrap_or(0);
        totals.0 += field("voluntary_ctxt_switches:");
        totals.1 += field("nonvoluntary_ctxt_switches:");
        totals.2 += 1;
    }
    totals
}

fn status_field(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_value(&status, field)
}

/// A number from `/proc/.../status` text (`VmRSS:  1234 kB`, `voluntary_ctxt_switches: 5`).
fn status_value(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// (process group, utime + stime in clock ticks) from /proc/PID/stat.
fn stat_fields(pid: &str) -> Option<(i32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let pgrp = fields.get(2)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((pgrp, utime + stime))
}

/// CPU seconds (user + system) used so far by every live process in group `pgid`.
pub fn group_cpu_seconds(pgid: i32) -> f64 {
    cpu_seconds(&group_pids(pgid))
}

/// CPU seconds used so far by the processes `pids` (those still alive).
pub fn cpu_seconds(pids: &[i32]) -> f64 {
    let ticks: u64 = pids
        .iter()
        .filter_map(|pid| stat_fields(&pid.to_string()).map(|s| s.1))
        .sum();
    ticks as f64 / clock_ticks()
}

/// RSS of the processes `pids` (those still alive), in KiB.
pub fn rss_kib_of(pids: &[i32]) -> u64 {
    pids.iter().filter_map(|&p| rss_kib(p)).sum()
}

/// The processes of group `pgid`. This reads every process's `/proc/<pid>/stat`, a millisecond or
/// more of work: resolve a group once per run, not per sample.
pub fn group_pids(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![pgid];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| stat_fields(&pid.to_string()).is_some_and(|(g, _)| g == pgid))
        .collect()
}

/// CPU seconds used so far by this process (all threads).
pub fn self_cpu_seconds() -> f64 {
    stat_fields("self").map_or(0.0, |s| s.1 as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Raises the open-file limit to its hard maximum (children inherit it).
pub fn raise_fd_limit() -> u64 {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            return limit.rlim_cur;
        }
    }
    0
}

/// Facts about the machine for the report header.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    pub date_utc: String,
    pub nproc: usize,
    pub cpu_model: String,
    pub mem_total_gib: f64,
    pub kernel: String,
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub git_commit: String,
    pub git_dirty: bool,
    pub rustc: String,
}

impl Machine {
    pub fn collect(repo: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let mem_total_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
            .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .current_dir(repo)
                .stderr(Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let git_commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
        // Read-only: lists changes, touches nothing (no index refresh is written with
        // --no-optional-locks).
        let git_dirty =
            git(&["--no-optional-locks", "status", "--porcelain"]).is_some_and(|s| !s.is_empty());
        let rustc = Command::new("rustc")
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        Machine {
            date_utc: utc_now(),
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            mem_total_gib,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            loadavg_start: loadavg(),
            loadavg_end: String::new(),
            git_commit,
            git_dirty,
            rustc,
        }
    }
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The current time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs)
}

pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn reads_own_proc_entries() {
        let pid = std::process::id() as i32;
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(hwm_kib(pid).unwrap() >= rss_kib(pid).unwrap() / 2);
        assert!(self_cpu_seconds() >= 0.0);
        // Resolved once, a group's members are read without scanning /proc again.
        // SAFETY: getpgid(0) asks about this process; it has no preconditions.
        let group = unsafe { libc::getpgid(0) };
        let members = group_pids(group);
        assert!(members.contains(&pid), "{members:?} lacks {pid}");
        assert!(rss_kib_of(&members) >= rss_kib(pid).unwrap());
        assert!(
            rss_kib_of(&[i32::MAX]) == 0,
            "a process that is gone counts nothing"
        );
        assert!(cpu_seconds(&members) >= 0.0);
    }
}
