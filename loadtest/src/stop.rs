//! Why a run ends before its time: a person's Ctrl-C (or SIGTERM), or a
//! server process under measurement exiting. The first signal ends the run
//! early, with its summary and report; a second aborts at once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use crate::procstat;

#[derive(Clone)]
pub struct Stop(Arc<Inner>);

struct Inner {
    signals: AtomicUsize,
    exited: Mutex<Vec<u32>>,
    agents: Mutex<Vec<u32>>,
    /// Removed on an abort too: the agents' specs hold the JWT secret.
    spec_dir: PathBuf,
}

impl Stop {
    /// Watches for signals, and for `server_pids` exiting.
    pub fn watch(spec_dir: PathBuf, server_pids: Vec<u32>) -> Stop {
        let stop = Stop(Arc::new(Inner {
            signals: AtomicUsize::new(0),
            exited: Mutex::new(Vec::new()),
            agents: Mutex::new(Vec::new()),
            spec_dir,
        }));
        let on_signal = stop.clone();
        tokio::spawn(async move {
            let (Ok(mut interrupt), Ok(mut terminate)) =
                (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
            else {
                return;
            };
            loop {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                if on_signal.0.signals.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!("\nloadtest: interrupted: ending the run early with what it measured (again to abort)");
                } else {
                    on_signal.abort();
                }
            }
        });
        let on_exit = stop.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(500));
            loop {
                every.tick().await;
                for &pid in &server_pids {
                    let mut exited = on_exit.0.exited.lock().unwrap_or_else(|e| e.into_inner());
                    if !exited.contains(&pid) && !procstat::alive(pid) {
                        eprintln!("\nloadtest: server process {pid} exited: ending the run");
                        exited.push(pid);
                    }
                }
            }
        });
        stop
    }

    /// The agent processes to kill on an abort.
    pub fn agents(&self, pids: Vec<u32>) {
        *self.0.agents.lock().unwrap_or_else(|e| e.into_inner()) = pids;
    }

    /// Whether the run should end now.
    pub fn now(&self) -> bool {
        self.interrupted() || !self.exited().is_empty()
    }

    pub fn interrupted(&self) -> bool {
        self.0.signals.load(Ordering::Relaxed) > 0
    }

    /// The server processes that exited during the run.
    pub fn exited(&self) -> Vec<u32> {
        self.0.exited.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn abort(&self) -> ! {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        for &pid in self.0.agents.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&self.0.spec_dir);
        eprintln!("loadtest: aborted; no report");
        std::process::exit(130)
    }
}
