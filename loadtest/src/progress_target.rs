//! Where the progress bars draw. At a terminal, indicatif's own bars. Where
//! stderr is not one (a log file, CI, `> log 2>&1` in the bench scripts),
//! indicatif draws nothing at all, and a settling that can take minutes
//! looked hung: there, a bar's line is written as plain text when it
//! starts and then at most every 10 s.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressDrawTarget, TermLike};

const EVERY: Duration = Duration::from_secs(10);

/// A draw target for one bar.
pub fn stderr() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::term_like(Box::new(PlainLines::default()))
    }
}

#[derive(Debug, Default)]
struct PlainLines(Mutex<Lines>);

#[derive(Debug, Default)]
struct Lines {
    /// What `write_str` gave since the last line ended.
    partial: String,
    written_at: Option<Instant>,
    last: String,
    /// The newest state not written, for when the bar is done.
    held: Option<String>,
}

impl Lines {
    /// The line to write now, if any: a new state, and the first or 10 s
    /// after the last written.
    fn due(&mut self, line: &str, now: Instant) -> Option<String> {
        let line = line.trim();
        if line.is_empty() || line == self.last {
            return None;
        }
        if self.written_at.is_some_and(|at| now.duration_since(at) < EVERY) {
            self.held = Some(line.to_owned());
            return None;
        }
        self.written_at = Some(now);
        self.held = None;
        self.last = line.to_owned();
        Some(self.last.clone())
    }
}

/// A bar's last state (its finish: "in 3.2s"), held back by the interval,
/// is written when the bar goes.
impl Drop for PlainLines {
    fn drop(&mut self) {
        let lines = self.0.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(line) = lines.held.take() {
            eprintln!("loadtest: {line}");
        }
    }
}

impl PlainLines {
    fn line(&self, line: &str) {
        let due = self.0.lock().unwrap_or_else(|e| e.into_inner()).due(line, Instant::now());
        if let Some(line) = due {
            eprintln!("loadtest: {line}");
        }
    }
}

impl TermLike for PlainLines {
    fn width(&self) -> u16 {
        120
    }

    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        let line = {
            let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut lines.partial) + s
        };
        self.line(&line);
        Ok(())
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).partial.push_str(s);
        Ok(())
    }

    fn clear_line(&self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).partial.clear();
        Ok(())
    }

    fn flush(&self) -> std::io::Result<()> {
        let line = std::mem::take(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()).partial);
        self.line(&line);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_written_first_and_then_once_per_interval_when_it_changed() {
        let (mut lines, start) = (Lines::default(), Instant::now());
        assert_eq!(lines.due("connecting 0/10", start).as_deref(), Some("connecting 0/10"));
        assert_eq!(lines.due("connecting 5/10", start + Duration::from_secs(3)), None);
        let later = start + Duration::from_secs(11);
        assert_eq!(lines.due("connecting 9/10", later).as_deref(), Some("connecting 9/10"));
        assert_eq!(lines.due("connecting 9/10", later + Duration::from_secs(20)), None, "nothing new");
        assert_eq!(lines.due("  ", later + Duration::from_secs(40)), None);
        assert_eq!(
            lines.due("connecting 10/10 in 12s", later + Duration::from_secs(41)).as_deref(),
            Some("connecting 10/10 in 12s")
        );
        assert_eq!(lines.due("next", later + Duration::from_secs(42)), None);
        assert_eq!(lines.held.as_deref(), Some("next"), "held for the bar's end");
    }
}
