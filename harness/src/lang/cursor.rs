//! The line cursor of the parser: positions, words, identifiers and the
//! errors that point at them.

use super::{ScriptError, Span};

pub(super) struct Cursor<'a> {
    pub(super) file: &'a str,
    pub(super) line_no: usize,
    pub(super) line: &'a str,
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn err(&self, msg: impl Into<String>) -> ScriptError {
        self.err_at(self.pos, msg)
    }
    pub(super) fn err_at(&self, pos: usize, msg: impl Into<String>) -> ScriptError {
        ScriptError::new(self.file, self.span_at(pos), msg, self.line)
    }
    /// An error marking the token of `len` bytes at `pos`.
    pub(super) fn err_tok(&self, pos: usize, len: usize, msg: impl Into<String>) -> ScriptError {
        let end = (pos + len).min(self.line.len());
        let chars = self
            .line
            .get(pos.min(end)..end)
            .map_or(1, |t| t.chars().count());
        self.err_at(pos, msg).with_len(chars)
    }
    /// The span of byte `pos` (inside a multi-byte character: of that character).
    pub(super) fn span_at(&self, pos: usize) -> Span {
        let mut pos = pos.min(self.line.len());
        while !self.line.is_char_boundary(pos) {
            pos -= 1;
        }
        Span {
            line: self.line_no,
            col: self.line[..pos].chars().count() + 1,
        }
    }
    pub(super) fn span(&self) -> Span {
        self.span_at(self.pos)
    }
    pub(super) fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c == ' ' || c == '\t' {
                self.pos += 1;
            } else {
                break;
            }
        }
    }
    pub(super) fn peek(&self) -> Option<char> {
        self.line[self.pos..].chars().next()
    }
    pub(super) fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos >= self.line.len()
    }
    /// At the end of the statement: end of line or a comment.
    pub(super) fn at_stmt_end(&mut self) -> bool {
        self.at_end() || self.peek() == Some('#')
    }
    pub(super) fn eat(&mut self, s: &str) -> bool {
        self.skip_ws();
        if self.line[self.pos..].starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }
    pub(super) fn expect(&mut self, s: &str, what: &str) -> Result<(), ScriptError> {
        if self.eat(s) {
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }
    /// `expected WHAT, found ...` at the next token.
    pub(super) fn unexpected(&mut self, what: &str) -> ScriptError {
        let f = self.found();
        let len = self.line[self.pos..]
            .split_whitespace()
            .next()
            .map_or(1, str::len);
        self.err_tok(self.pos, len, format!("expected {what}, found {f}"))
    }
    pub(super) fn found(&mut self) -> String {
        self.skip_ws();
        match self.line[self.pos..].split_whitespace().next() {
            Some(w) => format!("`{w}`"),
            None => "end of line".to_string(),
        }
    }
    /// An identifier: `[A-Za-z_][A-Za-z0-9_]*`.
    pub(super) fn ident(&mut self) -> Option<&'a str> {
        self.skip_ws();
        let rest = &self.line[self.pos..];
        let mut end = 0;
        for (i, c) in rest.char_indices() {
            let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
            if !ok {
                break;
            }
            end = i + c.len_utf8();
        }
        if end == 0 {
            return None;
        }
        self.pos += end;
        Some(&rest[..end])
    }
    pub(super) fn need_ident(&mut self, what: &str) -> Result<&'a str, ScriptError> {
        let save = self.pos;
        self.ident().ok_or_else(|| {
            self.pos = save;
            self.unexpected(what)
        })
    }
    /// An identifier and where it starts.
    pub(super) fn need_ident_at(&mut self, what: &str) -> Result<(usize, &'a str), ScriptError> {
        self.skip_ws();
        let at = self.pos;
        self.need_ident(what).map(|w| (at, w))
    }
    /// A raw word up to whitespace, `,`, `]`, `)`, `#`, `{` or `:`.
    pub(super) fn word(&mut self) -> Option<&'a str> {
        self.word_at().map(|(_, w)| w)
    }
    /// A raw word and where it starts.
    pub(super) fn word_at(&mut self) -> Option<(usize, &'a str)> {
        self.skip_ws();
        let rest = &self.line[self.pos..];
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, ',' | ']' | ')' | '#' | '{' | ':'))
            .unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        let at = self.pos;
        self.pos += end;
        Some((at, &rest[..end]))
    }
    pub(super) fn peek_word(&mut self) -> Option<&'a str> {
        let save = self.pos;
        let w = self.word();
        self.pos = save;
        w
    }
    /// The byte position of a span's column on this line.
    pub(super) fn pos_of(&self, s: Span) -> usize {
        self.line
            .char_indices()
            .nth(s.col - 1)
            .map_or(self.line.len(), |(i, _)| i)
    }
}

/// Parses a number: decimal or `0x` hex, optional `K`/`M`/`G`/`T` suffix.
pub(super) fn parse_number(s: &str) -> Option<i128> {
    let (digits, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1i128 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let digits = digits.replace('_', "");
    let v = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i128::from_str_radix(h, 16).ok()?
    } else {
        digits.parse::<i128>().ok()?
    };
    v.checked_mul(mult)
}
