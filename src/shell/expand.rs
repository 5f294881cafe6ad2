//! Word expansion: brace expansion, then tilde, parameter, command and
//! arithmetic expansion, word splitting on `IFS`, pathname expansion and
//! quote removal, in bash's order.
//!
//! Words are parsed into pieces by brush-parser. Expansion builds fields in
//! a [`Builder`] that remembers, for each character, whether it was quoted:
//! quoted text is escaped in the field's pattern form so globbing and
//! pattern matching treat it literally. Parameter operators live in
//! [`super::param`].

use super::io::Io;
use super::param::Value;
use super::pattern;
use super::state::{Shell, Unwind};
use brush_parser::word::{self, TildeExpr, WordPiece, WordPieceWithSource};
use futures::future::BoxFuture;

/// One field under construction.
#[derive(Default, Debug, Clone)]
pub struct Field {
    /// The text after quote removal.
    pub text: String,
    /// The same text as a pattern: quoted characters escaped.
    pub pat: String,
    /// Keep even when empty (it had quotes).
    keep: bool,
}

/// Collects fields while expanding.
#[derive(Default)]
pub struct Builder {
    fields: Vec<Field>,
    cur: Field,
    /// Split on IFS (a command word) or not (assignments, redirections).
    split: bool,
    /// A field break is due before the next character.
    brk: bool,
}

impl Builder {
    fn flush_break(&mut self) {
        if self.brk {
            self.finish(false);
            self.brk = false;
        }
    }

    fn finish(&mut self, force: bool) {
        let f = std::mem::take(&mut self.cur);
        if force || f.keep || !f.text.is_empty() {
            self.fields.push(f);
        }
    }

    pub fn quoted(&mut self, s: &str) {
        self.flush_break();
        self.cur.text.push_str(s);
        self.cur.pat.push_str(&pattern::escape(s));
        self.cur.keep = true;
    }

    fn literal(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        self.flush_break();
        self.cur.text.push_str(s);
        self.cur.pat.push_str(s);
    }

    /// An unquoted expansion result: split on IFS when splitting.
    fn unquoted(&mut self, s: &str, ifs: &str) {
        if !self.split {
            self.literal(s);
            return;
        }
        for c in s.chars() {
            if ifs.contains(c) {
                if c.is_whitespace() {
                    if !self.cur.text.is_empty() || self.cur.keep {
                        self.brk = true;
                    }
                } else {
                    self.brk = false;
                    self.finish(true);
                }
            } else {
                self.flush_break();
                self.cur.text.push(c);
                if matches!(c, '\\') {
                    self.cur.pat.push('\\');
                }
                self.cur.pat.push(c);
            }
        }
    }

    /// Ends the current field (between the words of `"$@"`).
    pub fn force_break(&mut self) {
        self.brk = false;
        self.finish(true);
    }

    pub fn into_fields(mut self) -> Vec<Field> {
        self.brk = false;
        self.finish(false);
        self.fields
    }
}

pub fn parse_options() -> brush_parser::ParserOptions {
    brush_parser::ParserOptions { enable_extended_globbing: false, ..Default::default() }
}

fn ifs(sh: &Shell) -> String {
    sh.get("IFS").unwrap_or(" \t\n").to_owned()
}

/// A bash-style expansion error: the message, and the shell exits with 1.
pub async fn fail(sh: &Shell, io: &Io, msg: &str) -> Unwind {
    io.err(&format!("{}{msg}\n", sh.err_prefix())).await;
    Unwind::Exit(1)
}

async fn parse_word(sh: &Shell, io: &Io, text: &str) -> Result<Vec<WordPieceWithSource>, Unwind> {
    match word::parse(text, &parse_options()) {
        Ok(p) => Ok(p),
        Err(_) => Err(fail(sh, io, &format!("{text}: bad substitution")).await),
    }
}

/// Expands a command word into fields (with brace expansion, splitting
/// and globbing).
pub async fn fields(sh: &mut Shell, io: &Io, text: &str) -> Result<Vec<String>, Unwind> {
    let mut out = Vec::new();
    for w in braces(text) {
        let pieces = parse_word(sh, io, &w).await?;
        let mut b = Builder { split: true, ..Default::default() };
        pieces_into(sh, io, &pieces, false, &mut b).await?;
        for f in b.into_fields() {
            if !sh.opts.noglob && pattern::has_glob(&f.pat) {
                let found = pattern::glob(&sh.exec.workspace, &sh.cwd, &f.pat);
                if !found.is_empty() {
                    out.extend(found);
                    continue;
                }
            }
            out.push(f.text);
        }
    }
    Ok(out)
}

/// Expands without splitting or globbing (assignment values, redirection
/// targets, `case` words, here-strings).
pub async fn string(sh: &mut Shell, io: &Io, text: &str) -> Result<String, Unwind> {
    let pieces = parse_word(sh, io, text).await?;
    let mut b = Builder::default();
    pieces_into(sh, io, &pieces, false, &mut b).await?;
    Ok(b.into_fields().into_iter().map(|f| f.text).collect::<Vec<_>>().join(" "))
}

/// Expands into a pattern: quoted parts match literally.
pub async fn pattern_of(sh: &mut Shell, io: &Io, text: &str) -> Result<String, Unwind> {
    let pieces = parse_word(sh, io, text).await?;
    let mut b = Builder::default();
    pieces_into(sh, io, &pieces, false, &mut b).await?;
    Ok(b.into_fields().into_iter().map(|f| f.pat).collect::<Vec<_>>().join(" "))
}

/// Expands a here-document body (quotes are ordinary characters).
pub async fn heredoc(sh: &mut Shell, io: &Io, text: &str) -> Result<String, Unwind> {
    let pieces = match word::parse_heredoc(text, &parse_options()) {
        Ok(p) => p,
        Err(_) => return Ok(text.to_owned()),
    };
    let mut b = Builder::default();
    pieces_into(sh, io, &pieces, true, &mut b).await?;
    Ok(b.into_fields().into_iter().map(|f| f.text).collect::<Vec<_>>().join(" "))
}

/// Expands a word found inside `${…}` (a default value, a pattern), in
/// the quoting context of the expansion.
pub fn nested<'a>(sh: &'a mut Shell, io: &'a Io, text: &'a str, in_dq: bool, b: &'a mut Builder) -> BoxFuture<'a, Result<(), Unwind>> {
    Box::pin(async move {
        let pieces = parse_word(sh, io, text).await?;
        pieces_into(sh, io, &pieces, in_dq, b).await
    })
}

/// Expands pieces into the builder.
pub fn pieces_into<'a>(
    sh: &'a mut Shell,
    io: &'a Io,
    pieces: &'a [WordPieceWithSource],
    in_dq: bool,
    b: &'a mut Builder,
) -> BoxFuture<'a, Result<(), Unwind>> {
    Box::pin(async move {
        for p in pieces {
            match &p.piece {
                WordPiece::Text(s) if in_dq => b.quoted(s),
                WordPiece::Text(s) => b.literal(s),
                WordPiece::SingleQuotedText(s) => b.quoted(s),
                WordPiece::AnsiCQuotedText(s) => b.quoted(&ansi_c(s)),
                WordPiece::DoubleQuotedSequence(inner) | WordPiece::GettextDoubleQuotedSequence(inner) => {
                    let only_at = !inner.is_empty() && inner.iter().all(|p| is_at(&p.piece));
                    if !only_at {
                        b.quoted("");
                    }
                    pieces_into(sh, io, inner, true, b).await?;
                }
                WordPiece::TildeExpansion(t) => {
                    let v = match t {
                        TildeExpr::Home => sh.get("HOME").unwrap_or("~").to_owned(),
                        TildeExpr::UserHome(u) => format!("~{u}"),
                        TildeExpr::WorkingDir => sh.cwd.clone(),
                        TildeExpr::OldWorkingDir => sh.get("OLDPWD").unwrap_or("~-").to_owned(),
                        _ => "~".to_owned(),
                    };
                    b.quoted(&v);
                }
                WordPiece::ParameterExpansion(expr) => {
                    let v = super::param::expand(sh, io, expr, in_dq).await?;
                    push_value(sh, b, v, in_dq);
                }
                WordPiece::CommandSubstitution(cmd) => {
                    let out = substitute(sh, io, cmd).await?;
                    push_value(sh, b, Value::Str(out), in_dq);
                }
                WordPiece::BackquotedCommandSubstitution(cmd) => {
                    let cmd = cmd.replace("\\\\", "\u{1}").replace("\\$", "$").replace("\\`", "`").replace('\u{1}', "\\");
                    let out = substitute(sh, io, &cmd).await?;
                    push_value(sh, b, Value::Str(out), in_dq);
                }
                WordPiece::EscapeSequence(s) => {
                    let rest = s.strip_prefix('\\').unwrap_or(s);
                    if rest == "\n" {
                        continue;
                    }
                    if in_dq && !matches!(rest, "$" | "`" | "\"" | "\\") {
                        b.quoted(s);
                    } else {
                        b.quoted(rest);
                    }
                }
                WordPiece::ArithmeticExpression(e) => {
                    let text = string_in_place(sh, io, &e.value).await?;
                    match super::arith::eval(sh, &text) {
                        Ok(v) => push_value(sh, b, Value::Str(v.to_string()), in_dq),
                        Err(msg) => return Err(fail(sh, io, &msg).await),
                    }
                }
            }
        }
        Ok(())
    })
}

/// `string`, boxed for use inside the recursive expander.
fn string_in_place<'a>(sh: &'a mut Shell, io: &'a Io, text: &'a str) -> BoxFuture<'a, Result<String, Unwind>> {
    Box::pin(async move {
        let pieces = match word::parse_heredoc(text, &parse_options()) {
            Ok(p) => p,
            Err(_) => return Err(fail(sh, io, &format!("{text}: bad substitution")).await),
        };
        let mut b = Builder::default();
        pieces_into(sh, io, &pieces, true, &mut b).await?;
        Ok(b.into_fields().into_iter().map(|f| f.text).collect::<Vec<_>>().join(" "))
    })
}

fn is_at(p: &WordPiece) -> bool {
    use brush_parser::word::{Parameter, ParameterExpr, SpecialParameter};
    matches!(
        p,
        WordPiece::ParameterExpansion(ParameterExpr::Parameter {
            parameter: Parameter::Special(SpecialParameter::AllPositionalParameters { concatenate: false })
                | Parameter::NamedWithAllIndices { concatenate: false, .. },
            ..
        })
    )
}

fn push_value(sh: &Shell, b: &mut Builder, v: Value, in_dq: bool) {
    let ifs = ifs(sh);
    match v {
        Value::Str(s) if in_dq => b.quoted(&s),
        Value::Str(s) => b.unquoted(&s, &ifs),
        Value::List(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    if in_dq {
                        b.force_break();
                    } else {
                        b.brk = b.split;
                        if !b.split {
                            b.literal(" ");
                        }
                    }
                }
                if in_dq { b.quoted(item) } else { b.unquoted(item, &ifs) }
            }
        }
    }
}

/// `$(…)`: runs the text in a subshell and returns its output without
/// trailing newlines.
async fn substitute(sh: &mut Shell, io: &Io, cmd: &str) -> Result<String, Unwind> {
    let (out, status) = super::exec::capture(sh, io, cmd).await?;
    sh.last_subst = Some(status);
    let mut s = String::from_utf8_lossy(&out).into_owned();
    while s.ends_with('\n') {
        s.pop();
    }
    Ok(s)
}

/// Decodes `$'…'`.
pub fn ansi_c(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('a') => out.push('\u{7}'),
            Some('b') => out.push('\u{8}'),
            Some('e') | Some('E') => out.push('\u{1b}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some('0') => out.push('\0'),
            Some('x') => {
                let mut hex = String::new();
                while hex.len() < 2 && chars.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                    hex.extend(chars.next());
                }
                if let Some(ch) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    out.push(ch);
                }
            }
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

/// Brace expansion of an unparsed word (`a{b,c}` → `ab ac`, `{1..3}`).
pub fn braces(text: &str) -> Vec<String> {
    if !text.contains('{') {
        return vec![text.to_owned()];
    }
    match word::parse_brace_expansions(text, &parse_options()) {
        Ok(Some(parts)) => {
            let mut out = vec![String::new()];
            for part in parts {
                let alts = brace_alternatives(&part);
                out = out.iter().flat_map(|p| alts.iter().map(move |a| format!("{p}{a}"))).collect();
                if out.len() > 100_000 {
                    return vec![text.to_owned()];
                }
            }
            out
        }
        _ => vec![text.to_owned()],
    }
}

fn brace_alternatives(part: &word::BraceExpressionOrText) -> Vec<String> {
    use brush_parser::word::{BraceExpressionMember as M, BraceExpressionOrText as T};
    match part {
        T::Text(t) => vec![t.clone()],
        T::Expr(members) => {
            let mut out = Vec::new();
            for m in members {
                match m {
                    M::NumberSequence { start, end, increment } => {
                        let step = increment.unsigned_abs().max(1) as i64;
                        let mut i = *start;
                        while out.len() < 100_000 {
                            out.push(i.to_string());
                            if i == *end {
                                break;
                            }
                            i = if start <= end { i + step } else { i - step };
                            if (start <= end && i > *end) || (start > end && i < *end) {
                                break;
                            }
                        }
                    }
                    M::CharSequence { start, end, .. } => {
                        let (a, z) = (*start as u32, *end as u32);
                        let range: Vec<u32> = if a <= z { (a..=z).collect() } else { (z..=a).rev().collect() };
                        out.extend(range.into_iter().filter_map(char::from_u32).map(String::from));
                    }
                    M::Child(items) => {
                        let mut acc = vec![String::new()];
                        for it in items {
                            let alts = brace_alternatives(it);
                            acc = acc.iter().flat_map(|p| alts.iter().map(move |a| format!("{p}{a}"))).collect();
                        }
                        out.extend(acc);
                    }
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brace_expansion() {
        assert_eq!(braces("src/{a,b}.rs"), vec!["src/a.rs", "src/b.rs"]);
        assert_eq!(braces("{1..3}"), vec!["1", "2", "3"]);
        assert_eq!(braces("x{}"), vec!["x{}"]);
        assert_eq!(braces("plain"), vec!["plain"]);
    }

    #[test]
    fn splitting_keeps_quoted_empties() {
        let mut b = Builder { split: true, ..Default::default() };
        b.unquoted("  a  b ", " \t\n");
        b.quoted("");
        let got: Vec<String> = b.into_fields().into_iter().map(|f| f.text).collect();
        assert_eq!(got, vec!["a", "b", ""]);
    }

    #[test]
    fn ansi_c_quotes() {
        assert_eq!(ansi_c("a\\tb\\n\\x41"), "a\tb\nA");
    }
}
