//! Script diagnostics: an error at `file:line:col` with the token it is
//! about, a label and an optional "did you mean".
//!
//! The first line of every rendering is `file:line:col: message` (what
//! users and tests grep for). [`ScriptError::render`] draws the source line
//! with annotate-snippets (rustc's renderer: tabs expanded with the caret
//! kept under its token); `Display` is the compact three-line form. Both
//! cut a long line to a window around the caret.

use std::fmt;

/// A position in a script (1-based line and column; the column counts
/// characters, a tab is one).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, PartialOrd, Ord, Hash)]
pub struct Span {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
}

/// A script error with its location.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ScriptError {
    /// The script's file name.
    pub file: String,
    /// Where.
    pub span: Span,
    /// What was expected or went wrong.
    pub msg: String,
    /// The source line, for the caret display.
    pub source_line: Box<str>,
    /// Characters of the token the error is about (0: one caret).
    pub len: usize,
    /// What the caret marks (shown under it).
    pub label: Option<Box<str>>,
    /// A suggestion: `did you mean ...`.
    pub help: Option<Box<str>>,
}

/// Characters of a source line echoed on either side of the caret.
const WINDOW: usize = 60;

/// The part of `line` shown for a caret at character `col0` (0-based):
/// the text, the caret's character offset in it, and the token length kept.
fn excerpt(line: &str, col0: usize, len: usize) -> (String, usize, usize) {
    let n = line.chars().count();
    if n <= 2 * WINDOW + 20 {
        return (line.to_string(), col0.min(n), len);
    }
    let start = col0.saturating_sub(WINDOW);
    let end = (col0 + len.max(1) + WINDOW).min(n);
    let mut out = String::new();
    let mut at = col0 - start;
    if start > 0 {
        out.push_str("...");
        at += 3;
    }
    out.extend(line.chars().skip(start).take(end - start));
    if end < n {
        out.push_str("...");
    }
    (out, at, len.min(end.saturating_sub(col0)))
}

impl ScriptError {
    /// An error at `span` with the source line it is on.
    pub fn new(file: &str, span: Span, msg: impl Into<String>, source_line: &str) -> Self {
        Self {
            file: file.to_string(),
            span,
            msg: msg.into(),
            source_line: source_line.into(),
            ..Self::default()
        }
    }

    /// The same error marking `len` characters from its column.
    #[must_use]
    pub fn with_len(mut self, len: usize) -> Self {
        self.len = len;
        self
    }

    /// The same error with a label under the caret.
    #[must_use]
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into().into_boxed_str());
        self
    }

    /// The same error with a suggestion.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into().into_boxed_str());
        self
    }

    /// `did you mean `X`?` when `suggestion` is some.
    #[must_use]
    pub fn did_you_mean(self, suggestion: Option<&str>) -> Self {
        match suggestion {
            Some(s) => self.with_help(format!("did you mean `{s}`?")),
            None => self,
        }
    }

    /// The first line: `file:line:col: message`.
    #[must_use]
    pub fn headline(&self) -> String {
        format!(
            "{}:{}:{}: {}",
            self.file, self.span.line, self.span.col, self.msg
        )
    }

    /// The rich rendering: the headline, then the source line with the
    /// token underlined and labelled, then the suggestion (ANSI styles only
    /// with `color`).
    #[must_use]
    pub fn render(&self, color: bool) -> String {
        use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
        let mut out = self.headline();
        if self.span.line == 0 {
            return out;
        }
        let (text, at, len) = excerpt(&self.source_line, self.span.col.saturating_sub(1), self.len);
        let byte = |c: usize| text.char_indices().nth(c).map_or(text.len(), |(i, _)| i);
        let (b0, b1) = (byte(at), byte(at + len.max(1)));
        let mut ann = AnnotationKind::Primary.span(b0..b1.max(b0));
        if let Some(l) = &self.label {
            ann = ann.label(&**l);
        }
        let mut group = Group::with_level(Level::ERROR).element(
            Snippet::source(text.as_str())
                .line_start(self.span.line)
                .annotation(ann),
        );
        if let Some(h) = &self.help {
            group = group.element(Level::HELP.message(&**h));
        }
        let renderer = if color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        out.push('\n');
        out.push_str(&renderer.render(&[group]));
        out
    }
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.headline())?;
        let (text, at, _) = excerpt(&self.source_line, self.span.col.saturating_sub(1), self.len);
        // Tabs are echoed as they are and reproduced under the caret line,
        // so the caret stays under its character in any tab setting.
        let pad: String = text
            .chars()
            .take(at)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        writeln!(f, "  | {text}")?;
        write!(f, "  | {pad}^")?;
        if let Some(h) = &self.help {
            write!(f, "\n  = help: {h}")?;
        }
        Ok(())
    }
}
impl std::error::Error for ScriptError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_around_the_caret() {
        let line = format!("{}BAD{}", "a".repeat(5000), "b".repeat(5000));
        let e = ScriptError::new("x.vmw", Span { line: 1, col: 5001 }, "bad", &line).with_len(3);
        let shown = e.render(false);
        assert!(shown.len() < 600, "{shown}");
        assert!(shown.starts_with("x.vmw:1:5001: bad\n"), "{shown}");
        assert!(shown.contains("BAD"), "{shown}");
        let compact = e.to_string();
        assert!(compact.len() < 400, "{compact}");
        let caret_line = compact.lines().nth(2).unwrap();
        let src_line = compact.lines().nth(1).unwrap();
        let at = caret_line.find('^').unwrap();
        assert_eq!(&src_line[at..at + 3], "BAD", "{compact}");
    }

    #[test]
    fn tabs_keep_the_caret_under_the_token() {
        let e =
            ScriptError::new("x.vmw", Span { line: 2, col: 3 }, "bad", "\t\tFOLL_X").with_len(6);
        let s = e.to_string();
        assert!(s.ends_with("  | \t\t^"), "{s:?}");
        let r = e.render(false);
        let lines: Vec<&str> = r.lines().collect();
        let src = lines.iter().find(|l| l.contains("FOLL_X")).unwrap();
        let car = lines.iter().find(|l| l.contains('^')).unwrap();
        assert_eq!(src.find("FOLL_X"), car.find('^'), "{r}");
    }
}
