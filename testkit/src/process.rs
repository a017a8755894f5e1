//! The workspace's binaries as real processes, killed when dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::signal::Signal;

/// Where cargo put the workspace's binaries for this test run: beside the
/// test executable's `deps` directory.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe.parent().and_then(Path::parent).expect("target directory");
    dir.join(name)
}

pub struct Service {
    pub name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Service {
    /// Starts `binary` with `env` (on top of a clean environment plus PATH),
    /// logging to a file in `log_dir`.
    pub fn spawn(
        name: &str,
        binary: &Path,
        args: &[&str],
        env: &HashMap<String, String>,
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        Self::start(name, binary, args, env, log_dir, None)
    }

    /// [`Service::spawn`] with `dir` as the working directory, where the
    /// default paths of a binary started bare lead.
    pub fn spawn_in(
        name: &str,
        binary: &Path,
        args: &[&str],
        env: &HashMap<String, String>,
        log_dir: &Path,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        Self::start(name, binary, args, env, log_dir, Some(dir))
    }

    fn start(
        name: &str,
        binary: &Path,
        args: &[&str],
        env: &HashMap<String, String>,
        log_dir: &Path,
        dir: Option<&Path>,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(binary.exists(), "{} is not built; run the tests with ./scripts/test", binary.display());
        let log = log_dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let mut command = Command::new(binary);
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let child = command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(env)
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Service { name: name.to_owned(), child: Some(child), log })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: the process dies without a word.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `grace` for the exit; returns its status
    /// code.
    pub fn terminate(&mut self, grace: Duration) -> anyhow::Result<Option<i32>> {
        if self.child.is_none() {
            return Ok(None);
        }
        self.signal(Signal::TERM)?;
        self.wait_exit(grace)
    }

    /// SIGSTOP: the process stalls, holding its sockets, as one starved of
    /// CPU or swapped out would.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal(Signal::STOP)
    }

    /// SIGCONT: a paused process carries on.
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal(Signal::CONT)
    }

    fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let Some(child) = &self.child else { anyhow::bail!("{} is not running", self.name) };
        crate::signal::send(child.id(), signal).map_err(|e| anyhow::anyhow!("{signal:?} to {}: {e}", self.name))
    }

    /// Waits up to `limit` for the process to exit (killing it after);
    /// returns its status code.
    pub fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<Option<i32>> {
        let Some(mut child) = self.child.take() else { return Ok(None) };
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.code());
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                anyhow::bail!("{} still running after {limit:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running (it did not crash).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill9();
    }
}
