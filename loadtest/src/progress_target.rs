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
}

impl Lines {
    /// The line to write now, if any: a new state, and the first or 10 s
    /// after the last written.
    fn due(&mut self, line: &str, now: Instant) -> Option<String> {
        let line = line.trim();
        let quiet = self.written_at.is_none_or(|at| now.duration_since(at) >= EVERY);
        if line.is_empty() || line == self.last || !quiet {
            return None;
        }
        self.written_at = Some(now);
        self.last = line.to_owned();
        Some(self.last.clone())
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
    }
}
