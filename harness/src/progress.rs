//! The progress bar of long commands (`matrix`, `fuzz`, `bench`): on
//! stderr, with the item being worked on and the time left, drawn only on
//! a terminal, only for text output, and only once the work has taken a
//! second (a quick matrix prints no bar at all).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar that may stay hidden.
#[derive(Debug)]
pub struct Bar {
    bar: ProgressBar,
    /// Whether the bar may be drawn at all (text output on a terminal).
    allowed: bool,
    shown: AtomicBool,
    started: Instant,
}

impl Bar {
    /// A bar of `len` steps; `text` is false for JSON and KTAP output,
    /// which never get a bar.
    #[must_use]
    pub fn new(len: u64, text: bool) -> Self {
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} ETA {eta} {wide_msg}")
        {
            bar.set_style(style);
        }
        Self {
            bar,
            allowed: text && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            shown: AtomicBool::new(false),
            started: Instant::now(),
        }
    }

    /// Names the item now being worked on.
    pub fn start(&self, item: &str) {
        self.bar.set_message(item.to_string());
    }

    /// One step done.
    pub fn inc(&self) {
        self.bar.inc(1);
        if self.allowed
            && self.started.elapsed().as_secs() >= 1
            && !self.shown.swap(true, Ordering::Relaxed)
        {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
