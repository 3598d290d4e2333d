//! Owns child processes started by tests: each runs in its own process group and the
//! whole group is SIGKILLed on drop, so a failing test leaves nothing behind. Stdout and
//! stderr are captured line by line for assertions (and echoed on failure).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Path of a binary of this workspace, next to the running test executable
/// (`target/<profile>/deps/test-xxxx` -> `target/<profile>/<name>`).
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe
        .parent()
        .expect("test binary has a folder")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built: run the tests through `make test` or `cargo test --workspace`",
        path.display()
    );
    path
}

/// A running child process; its process group is killed on drop.
pub struct ChildProcess {
    name: String,
    child: Child,
    /// Shared with the reader threads; a std Mutex because readers are plain threads.
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Set by [`ChildProcess::spawn_logged`]: output goes to this file, not memory.
    log_file: Option<PathBuf>,
    /// How many of the two reader threads have reached the end of their pipe.
    drained: Arc<AtomicUsize>,
}

impl ChildProcess {
    /// Starts `command` in a new process group with stdout/stderr captured.
    pub fn spawn(name: &str, mut command: Command) -> ChildProcess {
        use std::os::unix::process::CommandExt;
        command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let drained = Arc::new(AtomicUsize::new(0));
        if let Some(out) = child.stdout.take() {
            capture(out, stdout.clone(), drained.clone());
        }
        if let Some(err) = child.stderr.take() {
            capture(err, stderr.clone(), drained.clone());
        }
        ChildProcess {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
            log_file: None,
            drained,
        }
    }

    /// Starts `command` in a new process group with stdout and stderr appended to
    /// `log_file`, for long and busy runs (the benchmarks) where output kept in memory
    /// would grow without bound. `stdout_lines` reads the file back.
    pub fn spawn_logged(
        name: &str,
        mut command: Command,
        log_file: &Path,
    ) -> std::io::Result<ChildProcess> {
        use std::os::unix::process::CommandExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_file)?;
        command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = command.spawn()?;
        Ok(ChildProcess {
            name: name.to_owned(),
            child,
            stdout: Arc::default(),
            stderr: Arc::default(),
            log_file: Some(log_file.to_owned()),
            drained: Arc::new(AtomicUsize::new(2)),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stdout line so far (with `spawn_logged`: every line of the log file).
    pub fn stdout_lines(&self) -> Vec<String> {
        if let Some(path) = &self.log_file {
            return std::fs::read_to_string(path)
                .map(|text| text.lines().map(str::to_owned).collect())
                .unwrap_or_default();
        }
        self.stdout.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Stdout lines parsed as JSON objects (lines that are not JSON are skipped).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout_lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for a JSON log line with `"event": event` and returns it.
    pub fn wait_for_event(&self, event: &str, timeout: Duration) -> serde_json::Value {
        crate::wait_until(&format!("{} to log {event}", self.name), timeout, || {
            if let Ok(Some(())) = self.try_status() {
                self.drain(Duration::from_secs(2));
                if let Some(line) = self.json_lines().into_iter().find(|l| l["event"] == event) {
                    return Some(line);
                }
                panic!(
                    "{} exited before logging {event}\nstderr: {:?}\nstdout: {:?}",
                    self.name,
                    self.stderr_lines(),
                    self.stdout_lines()
                );
            }
            self.json_lines().into_iter().find(|l| l["event"] == event)
        })
    }

    /// Waits for the `*.listening` log line and returns its `addr` field.
    pub fn wait_for_listen_addr(&self, event: &str, timeout: Duration) -> String {
        let line = self.wait_for_event(event, timeout);
        line["addr"]
            .as_str()
            .unwrap_or_else(|| panic!("{event} has no addr: {line}"))
            .to_owned()
    }

    /// Waits (up to `timeout`) until everything the process wrote has been read: a
    /// process that exits right after its last line may exit before the reader threads
    /// have that line. Call it before concluding from an exit that a line never came.
    /// (A pipe a surviving child still holds never ends: hence the timeout.)
    pub fn drain(&self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.drained.load(Ordering::Acquire) < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// True once the process has exited (it is not reaped, so output stays readable).
    pub fn has_exited(&self) -> bool {
        matches!(self.try_status(), Ok(Some(())))
    }

    /// `Some(())` once the process has exited (without reaping it).
    fn try_status(&self) -> std::io::Result<Option<()>> {
        // `try_wait` needs `&mut`; a zero-timeout waitpid through nix keeps `&self`.
        use nix::sys::wait::{waitid, Id, WaitPidFlag};
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::Pid(Pid::from_raw(self.child.id() as i32)), flags) {
            Ok(nix::sys::wait::WaitStatus::StillAlive) => Ok(None),
            Ok(_) => Ok(Some(())),
            Err(_) => Ok(None),
        }
    }

    /// Sends a signal to the process (not its group).
    pub fn signal(&self, signal: Signal) {
        let _ = nix::sys::signal::kill(Pid::from_raw(self.child.id() as i32), signal);
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let name = self.name.clone();
        crate::wait_until(&format!("{name} to exit"), timeout, || {
            self.child.try_wait().ok().flatten()
        })
    }

    /// Prints the captured output (call when a test fails in a way worth reading).
    pub fn dump(&self) {
        eprintln!("---- {} stdout ----", self.name);
        for line in self.stdout_lines() {
            eprintln!("{line}");
        }
        eprintln!("---- {} stderr ----", self.name);
        for line in self.stderr_lines() {
            eprintln!("{line}");
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            self.dump();
        }
    }
}

fn capture(
    pipe: impl std::io::Read + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
    drained: Arc<AtomicUsize>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut lines) = lines.lock() {
                lines.push(line);
            }
        }
        drained.fetch_add(1, Ordering::Release);
    });
}

/// SIGKILLs every live process whose command line contains `arg` as a whole argument
/// (tests use it on their unique key prefix to reap workers, which run in process groups
/// of their own by design and so outlive the supervisor that started them).
pub fn kill_processes_with_arg(arg: &str) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if raw.split(|&b| b == 0).any(|a| a == arg.as_bytes())
            && killpg(Pid::from_raw(pid), Signal::SIGKILL)
                .or_else(|_| nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL))
                .is_ok()
        {
            killed += 1;
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn the_last_line_of_a_process_that_exits_at_once_is_read_after_drain() {
        for _ in 0..20 {
            let mut command = std::process::Command::new("sh");
            command.args(["-c", "echo first; echo last; echo oops >&2"]);
            let child = super::ChildProcess::spawn("echo", command);
            crate::wait_until("exit", Duration::from_secs(10), || {
                child.has_exited().then_some(())
            });
            child.drain(Duration::from_secs(5));
            assert_eq!(child.stdout_lines(), ["first", "last"]);
            assert_eq!(child.stderr_lines(), ["oops"]);
        }
    }
}
