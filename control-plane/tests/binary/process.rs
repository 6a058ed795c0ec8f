//! The service as a process: it raises its open-file limit, and it stops on SIGTERM even
//! when its stderr pipe has closed (`serve 2>&1 | tee log`, then tee dies first).

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::{OwnerDb, random_key};

/// Waits (bounded) for the child to exit.
fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig} {pid} failed");
}

#[test]
fn serve_raises_its_file_limit_and_stops_on_sigterm_with_stderr_closed() {
    let db = OwnerDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = random_key();
    let storage = dir.path().join("storage").display().to_string();
    let prlimit = ["prlimit", "--nofile=256:4096", crate::support::BIN, "serve"];
    let mut child = std::process::Command::new(prlimit[0])
        .args(&prlimit[1..])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db.url())
        .env("CP_TENANT_DB_PREFIX", db.prefix())
        .env("CP_MASTER_KEY", &key)
        .env("CP_STORAGE_ROOT", &storage)
        .env("CP_LISTEN", "127.0.0.1:0")
        .env("CP_METERING_INTERVAL_SECS", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let pid = child.id();
    let guard = KillOnDrop(pid);

    // Read the log until the service says it listens; then close our end of the pipe.
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(line)) => {
                let done = line.contains("control plane listening");
                seen.push(line);
                if done {
                    break;
                }
            }
            _ => panic!("serve exited before listening:\n{}", seen.join("\n")),
        }
    }
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files line");
    let soft: Vec<&str> = open_files.split_whitespace().collect();
    assert_eq!(soft[3], "4096", "soft limit not raised: {open_files}");
    drop(lines);

    signal(pid, "-TERM");
    let status = wait_exit(&mut child, Duration::from_secs(20));
    let status = status.expect("serve did not stop on SIGTERM once its stderr had closed");
    assert!(status.success(), "serve did not stop cleanly: {status:?}");
    std::mem::forget(guard);
}

/// Kills the service if the test fails before it stopped.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}
