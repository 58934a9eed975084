//! The progress bar of long commands (`matrix`, `fuzz`, `bench`): on
//! stderr, with the item being worked on and the time left, drawn only on
//! a terminal, only for text output, and only once the work has taken a
//! second (a quick matrix prints no bar at all).
//!
//! [`Bar::forced`] (`vmemu fuzz --progress`) draws it on any stderr: on a
//! terminal as usual, elsewhere (a log, a pipe) as a plain line at most
//! once a second and a last line at the end.

use std::io::{IsTerminal as _, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

/// A progress bar that may stay hidden.
#[derive(Debug)]
pub struct Bar {
    bar: ProgressBar,
    /// Whether the bar may be drawn at all (text output on a terminal, or
    /// forced).
    allowed: bool,
    /// Drawn as plain lines: forced on a stderr that is not a terminal.
    lines: Option<Arc<Lines>>,
    /// How long the work runs before the bar appears.
    delay: Duration,
    shown: AtomicBool,
    started: Instant,
}

impl Bar {
    /// A bar of `len` steps named `what` (`matrix`, `fuzz`, `bench`);
    /// `text` is false for JSON and KTAP output, which never get a bar
    /// unless [`Bar::forced`].
    #[must_use]
    pub fn new(what: &str, len: u64, text: bool) -> Self {
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
        if let Ok(style) =
            ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} ETA {eta} {wide_msg}")
        {
            bar.set_style(style);
        }
        bar.set_prefix(what.to_string());
        Self {
            bar,
            allowed: text && std::io::stderr().is_terminal(),
            lines: None,
            delay: Duration::from_secs(1),
            shown: AtomicBool::new(false),
            started: Instant::now(),
        }
    }

    /// Drawn whatever stderr and the output format are when `force`
    /// (`--progress`): on a terminal as a bar, elsewhere as plain lines.
    #[must_use]
    pub fn forced(mut self, force: bool) -> Self {
        if force {
            self.allowed = true;
            self.lines = (!std::io::stderr().is_terminal()).then(Arc::default);
        }
        self
    }

    /// Drawn from the first step on (work whose steps take seconds).
    #[must_use]
    pub fn at_once(mut self) -> Self {
        self.delay = Duration::ZERO;
        self
    }

    /// Names the item now being worked on.
    pub fn start(&self, item: &str) {
        self.bar.set_message(item.to_string());
        self.show();
    }

    /// One step done.
    pub fn inc(&self) {
        self.inc_by(1);
    }

    /// `n` steps done.
    pub fn inc_by(&self, n: u64) {
        self.bar.inc(n);
        self.show();
    }

    /// Draws the bar from now on, once it is allowed and due.
    fn show(&self) {
        if !self.allowed
            || self.started.elapsed() < self.delay
            || self.shown.swap(true, Ordering::Relaxed)
        {
            return;
        }
        if let Some(lines) = &self.lines {
            self.bar
                .set_draw_target(ProgressDrawTarget::term_like(Box::new(LinesTarget(
                    Arc::clone(lines),
                ))));
        } else {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            // ETA and elapsed time move during a long step too.
            self.bar.enable_steady_tick(Duration::from_millis(500));
        }
    }

    /// Clears the bar (on a terminal); as plain lines, prints the last.
    pub fn finish(&self) {
        if let Some(lines) = self
            .lines
            .as_ref()
            .filter(|_| self.shown.load(Ordering::Relaxed))
        {
            lines.last_one();
            self.bar.finish();
        } else {
            self.bar.finish_and_clear();
        }
    }
}

/// A draw target for a stderr that is not a terminal: a drawing of the
/// bar becomes one plain line (no cursor movement, no `\r`), at most one a
/// second, and the last one always.
#[derive(Debug, Default)]
struct Lines {
    line: Mutex<String>,
    /// When the last line was written.
    written: Mutex<Option<Instant>>,
    /// The next drawing is the last: written whenever it comes.
    last: AtomicBool,
}

impl Lines {
    fn last_one(&self) {
        self.last.store(true, Ordering::Relaxed);
    }

    /// The line drawn since the last flush, if it is due.
    fn take_due(&self) -> Option<String> {
        let text = self
            .line
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        let text = text.trim_end();
        let mut written = self.written.lock().ok()?;
        let due = self.last.load(Ordering::Relaxed)
            || written.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if text.is_empty() || !due {
            return None;
        }
        *written = Some(Instant::now());
        Some(text.to_string())
    }
}

/// [`Lines`] as indicatif's draw target (the bar keeps the other handle,
/// to mark the last drawing).
#[derive(Debug)]
struct LinesTarget(Arc<Lines>);

impl TermLike for LinesTarget {
    fn width(&self) -> u16 {
        160
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
        self.write_str(s)?;
        self.flush()
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        if let Ok(mut l) = self.0.line.lock() {
            l.push_str(&s.replace('\r', ""));
        }
        Ok(())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        match self.0.take_due() {
            Some(text) => writeln!(std::io::stderr().lock(), "{text}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain-lines drawing keeps no `\r` nor the padding to the width;
    /// a second drawing within the second is dropped, the last one is not.
    #[test]
    fn lines_target_writes_one_line_a_second_and_the_last() {
        let t = LinesTarget(Arc::default());
        let l = &t.0;
        t.write_str("\r").unwrap();
        t.write_str("fuzz ###   3/10 ETA 2s x86_64").unwrap();
        t.write_str("      ").unwrap();
        assert_eq!(
            l.take_due().as_deref(),
            Some("fuzz ###   3/10 ETA 2s x86_64")
        );
        t.write_str("fuzz ###   4/10").unwrap();
        assert_eq!(l.take_due(), None, "within the second");
        l.last_one();
        t.write_str("fuzz ### 10/10").unwrap();
        assert_eq!(l.take_due().as_deref(), Some("fuzz ### 10/10"));
    }
}
