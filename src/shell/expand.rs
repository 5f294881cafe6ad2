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
use super::parse::{Refused, checked, guarded, parse_options};
use super::state::{self, MemoryLimit, Shell, Unwind};
use crate::pattern;
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

/// Bytes of a value split on IFS between two yields.
const SPLIT_SLICE: usize = 1 << 20;

/// What a field costs beyond its text, for the memory budget.
const FIELD_BYTES: usize = 64;

/// Collects fields while expanding.
#[derive(Default)]
pub struct Builder {
    fields: Vec<Field>,
    cur: Field,
    /// Split on IFS (a command word) or not (assignments, redirections).
    split: bool,
    /// A field break is due before the next character.
    brk: bool,
    /// Bytes of the finished fields.
    done: usize,
    /// Bytes the fields may take (what the line's budget has room for):
    /// splitting a long value into many fields stops past it.
    cap: Option<usize>,
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
            self.done += f.text.len() + f.pat.len() + FIELD_BYTES;
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
        for (i, c) in s.chars().enumerate() {
            if i % 4096 == 4095 && self.cap.is_some_and(|cap| self.bytes() > cap) {
                return;
            }
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

    /// Bytes the fields built so far hold.
    fn bytes(&self) -> usize {
        self.done + self.cur.text.len() + self.cur.pat.len() + FIELD_BYTES
    }

    pub fn into_fields(mut self) -> Vec<Field> {
        self.brk = false;
        self.finish(false);
        self.fields
    }
}

/// The pieces of a word, or of a here-document body (`heredoc`: quotes are
/// ordinary characters).
pub fn word_pieces(text: &str, heredoc: bool) -> Result<Vec<WordPieceWithSource>, Refused> {
    if heredoc {
        checked(text, || word::parse_heredoc(text, &parse_options()))
    } else {
        checked(text, || word::parse(text, &parse_options()))
    }
}

/// The error for a word that does not parse, as bash words it.
async fn unparsed(sh: &Shell, io: &Io, text: &str, why: Refused) -> Unwind {
    match why {
        Refused::Invalid => fail(sh, io, &format!("{text}: bad substitution")).await,
        Refused::TooComplex => {
            // The word itself may be huge: name its start only.
            let start: String = text.chars().take(40).collect();
            fail(sh, io, &format!("{start}…: {}", why.reason())).await
        }
    }
}

fn ifs(sh: &Shell) -> String {
    sh.get("IFS").unwrap_or(" \t\n").to_owned()
}

/// A bash-style expansion error: the message, and the shell exits with 1.
pub async fn fail(sh: &Shell, io: &Io, msg: &str) -> Unwind {
    io.err(&format!("{}{msg}\n", sh.err_prefix())).await;
    Unwind::Exit(1)
}

/// Ends the line: it went over its memory budget (max-memory), like a
/// guest that does.
pub async fn out_of_memory(sh: &Shell, io: &Io, m: MemoryLimit) -> Unwind {
    io.err(&format!("{}{m}\n", sh.err_prefix())).await;
    Unwind::Exit(137)
}

async fn parse_word(sh: &Shell, io: &Io, text: &str) -> Result<Vec<WordPieceWithSource>, Unwind> {
    match word_pieces(text, false) {
        Ok(p) => Ok(p),
        Err(why) => Err(unparsed(sh, io, text, why).await),
    }
}

/// Expands a command word into fields (with brace expansion, splitting
/// and globbing).
pub async fn fields(sh: &mut Shell, io: &Io, text: &str) -> Result<Vec<String>, Unwind> {
    let mut out = Vec::new();
    // Bytes of `out` so far, kept as it grows (summing it again after each
    // brace alternative was quadratic in a large brace expansion).
    let mut held = 0;
    for w in braces(text) {
        // A brace expansion may give up to a million words: yield between
        // them when a slice of time has passed.
        sh.pause().await?;
        let before = out.len();
        let pieces = parse_word(sh, io, &w).await?;
        let mut b = Builder { split: true, ..Default::default() };
        pieces_into(sh, io, &pieces, false, &mut b).await?;
        for f in b.into_fields() {
            // No file name is longer than PATH_MAX: a longer word (a long
            // value) is not a pathname pattern, and is not compiled as one.
            let is_pattern =
                pattern::has_glob(&f.pat) || sh.opts.glob.extglob && pattern::has_extglob(&f.pat);
            if !sh.opts.noglob && f.pat.len() <= 4096 && is_pattern {
                let found = glob(sh, &f.pat).await?;
                if !found.is_empty() || sh.opts.glob.nullglob {
                    out.extend(found);
                    continue;
                }
                if sh.opts.glob.failglob {
                    return Err(fail(sh, io, &format!("no match: {}", f.text)).await);
                }
            }
            out.push(f.text);
        }
        // All the words so far, against the budget (`echo $x $x $x …`).
        held += state::list_bytes(&out[before..]);
        if let Err(m) = sh.budget.fits(held) {
            return Err(out_of_memory(sh, io, m).await);
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
    let pat = b.into_fields().into_iter().map(|f| f.pat).collect::<Vec<_>>().join(" ");
    pattern_fits(sh, io, pat).await
}

/// A pattern, once its compiled form is known to fit the line's memory (a
/// long value used as a pattern takes several times its size).
pub async fn pattern_fits(sh: &Shell, io: &Io, pat: String) -> Result<String, Unwind> {
    match sh.budget.fits(pattern::compiled_bytes(pat.len())) {
        Ok(()) => Ok(pat),
        Err(m) => Err(out_of_memory(sh, io, m).await),
    }
}

/// Expands a here-document body (quotes are ordinary characters).
pub async fn heredoc(sh: &mut Shell, io: &Io, text: &str) -> Result<String, Unwind> {
    let pieces = match word_pieces(text, true) {
        Ok(p) => p,
        Err(Refused::Invalid) => return Ok(text.to_owned()),
        Err(why) => return Err(unparsed(sh, io, text, why).await),
    };
    let mut b = Builder::default();
    pieces_into(sh, io, &pieces, true, &mut b).await?;
    Ok(b.into_fields().into_iter().map(|f| f.text).collect::<Vec<_>>().join(" "))
}

/// Expands a word found inside `${…}` (a default value, a pattern), in
/// the quoting context of the expansion.
pub fn nested<'a>(
    sh: &'a mut Shell,
    io: &'a Io,
    text: &'a str,
    in_dq: bool,
    b: &'a mut Builder,
) -> BoxFuture<'a, Result<(), Unwind>> {
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
            // A word built from many large values must fit the budget
            // beside what the line holds already.
            if let Err(m) = sh.budget.fits(b.bytes()) {
                return Err(out_of_memory(sh, io, m).await);
            }
            b.cap = Some(sh.budget.room());
            match &p.piece {
                WordPiece::Text(s) if in_dq => b.quoted(s),
                WordPiece::Text(s) => b.literal(s),
                WordPiece::SingleQuotedText(s) => b.quoted(s),
                WordPiece::AnsiCQuotedText(s) => b.quoted(&ansi_c(s)),
                WordPiece::DoubleQuotedSequence(inner)
                | WordPiece::GettextDoubleQuotedSequence(inner) => {
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
                    push_value(sh, b, v, in_dq).await;
                }
                WordPiece::CommandSubstitution(cmd) => {
                    let out = substitute(sh, io, cmd).await?;
                    push_value(sh, b, Value::Str(out), in_dq).await;
                }
                WordPiece::BackquotedCommandSubstitution(cmd) => {
                    let cmd = cmd
                        .replace("\\\\", "\u{1}")
                        .replace("\\$", "$")
                        .replace("\\`", "`")
                        .replace('\u{1}', "\\");
                    let out = substitute(sh, io, &cmd).await?;
                    push_value(sh, b, Value::Str(out), in_dq).await;
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
                        Ok(v) => push_value(sh, b, Value::Str(v.to_string()), in_dq).await,
                        Err(msg) => return Err(fail(sh, io, &msg).await),
                    }
                }
            }
        }
        match sh.budget.fits(b.bytes()) {
            Ok(()) => Ok(()),
            Err(m) => Err(out_of_memory(sh, io, m).await),
        }
    })
}

/// `string`, boxed for use inside the recursive expander.
fn string_in_place<'a>(
    sh: &'a mut Shell,
    io: &'a Io,
    text: &'a str,
) -> BoxFuture<'a, Result<String, Unwind>> {
    Box::pin(async move {
        let pieces = match word_pieces(text, true) {
            Ok(p) => p,
            Err(why) => return Err(unparsed(sh, io, text, why).await),
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
            parameter: Parameter::Special(SpecialParameter::AllPositionalParameters {
                concatenate: false
            }) | Parameter::NamedWithAllIndices { concatenate: false, .. },
            ..
        })
    )
}

async fn push_value(sh: &Shell, b: &mut Builder, v: Value, in_dq: bool) {
    let ifs = ifs(sh);
    match v {
        Value::Str(s) if in_dq => b.quoted(&s),
        // Splitting goes character by character: a long value is split in
        // slices with a yield between them (the builder carries the state),
        // so one huge word does not hold the thread.
        Value::Str(s) if s.len() > SPLIT_SLICE => {
            let mut rest = s.as_str();
            while !rest.is_empty() {
                let mut end = rest.len().min(SPLIT_SLICE);
                while !rest.is_char_boundary(end) {
                    end += 1;
                }
                b.unquoted(&rest[..end], &ifs);
                if b.cap.is_some_and(|cap| b.bytes() > cap) {
                    return;
                }
                rest = &rest[end..];
                tokio::task::yield_now().await;
            }
        }
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

/// Whether `text` matches the whole `pattern` in `case` and `[[ == ]]`,
/// without regard to case under `shopt -s nocasematch`.
pub async fn matches_case(sh: &Shell, pattern: &str, text: &str) -> bool {
    let ext = sh.opts.glob.extglob;
    if sh.opts.glob.nocasematch {
        pattern::matches_yielding(&pattern.to_lowercase(), &text.to_lowercase(), ext).await
    } else {
        pattern::matches_yielding(pattern, text, ext).await
    }
}

/// `$(…)`: runs the text in a subshell and returns its output without
/// trailing newlines.
async fn substitute(sh: &mut Shell, io: &Io, cmd: &str) -> Result<String, Unwind> {
    let (out, status) = super::interp::capture(sh, io, cmd).await?;
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

/// Most words one brace expansion may produce; a word that would expand
/// to more stays unexpanded (a guard against `{1..99999}{1..99999}`).
const MAX_BRACE_WORDS: usize = 100_000;

/// Brace expansion of an unparsed word (`a{b,c}` → `ab ac`, `{1..3}`).
pub fn braces(text: &str) -> Vec<String> {
    if !text.contains('{') {
        return vec![text.to_owned()];
    }
    let Some(Some(parts)) = guarded(text, || word::parse_brace_expansions(text, &parse_options()))
    else {
        return vec![text.to_owned()];
    };
    let mut out = vec![String::new()];
    for part in parts {
        let Some(alts) = brace_alternatives(&part) else { return vec![text.to_owned()] };
        let Some(product) = cross(&out, &alts) else { return vec![text.to_owned()] };
        out = product;
    }
    out
}

/// Every `a` followed by every `b`, or `None` past [`MAX_BRACE_WORDS`]
/// (checked before anything is built).
fn cross(a: &[String], b: &[String]) -> Option<Vec<String>> {
    if a.len().saturating_mul(b.len()) > MAX_BRACE_WORDS {
        return None;
    }
    Some(a.iter().flat_map(|p| b.iter().map(move |s| format!("{p}{s}"))).collect())
}

/// The words one part of a brace expansion stands for; `None` when they
/// are too many.
fn brace_alternatives(part: &word::BraceExpressionOrText) -> Option<Vec<String>> {
    use brush_parser::word::{BraceExpressionMember as M, BraceExpressionOrText as T};
    match part {
        T::Text(t) => Some(vec![t.clone()]),
        T::Expr(members) => {
            let mut out = Vec::new();
            for m in members {
                match m {
                    M::NumberSequence { start, end, increment } => {
                        // In i128, so that neither `{1..9223372036854775807..2}`
                        // nor an increment of i64::MIN can overflow.
                        let (start, end) = (i128::from(*start), i128::from(*end));
                        let step = i128::from(*increment).abs().max(1);
                        let up = start <= end;
                        let mut i = start;
                        while if up { i <= end } else { i >= end } {
                            if out.len() >= MAX_BRACE_WORDS {
                                return None;
                            }
                            out.push(i.to_string());
                            i = if up { i + step } else { i - step };
                        }
                    }
                    M::CharSequence { start, end, .. } => {
                        let (a, z) = (*start as u32, *end as u32);
                        let range: Vec<u32> =
                            if a <= z { (a..=z).collect() } else { (z..=a).rev().collect() };
                        out.extend(range.into_iter().filter_map(char::from_u32).map(String::from));
                    }
                    M::Child(items) => {
                        let mut acc = vec![String::new()];
                        for it in items {
                            acc = cross(&acc, &brace_alternatives(it)?)?;
                        }
                        out.extend(acc);
                    }
                }
                if out.len() > MAX_BRACE_WORDS {
                    return None;
                }
            }
            Some(out)
        }
    }
}

/// Pathname expansion of `pat`, a directory at a time: between directories
/// the line may yield (and be stopped), so a `**` over a large tree holds
/// no thread and answers `process/terminate` and the limits.
async fn glob(sh: &mut Shell, pat: &str) -> Result<Vec<String>, Unwind> {
    let ws = sh.exec.workspace.clone();
    let cwd = sh.cwd.clone();
    let mut g = pattern::Glob::new(&ws, &cwd, pat, sh.opts.glob);
    while g.step() {
        sh.pause().await?;
    }
    Ok(g.finish())
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
    fn brace_expansion_of_hostile_words() {
        // Found by `fuzz/` (shell_parse): i64 overflow in the sequence loop
        // (a panic in debug builds, a runaway sequence in release).
        assert_eq!(
            braces("{1..9223372036854775807..4611686018427387904}"),
            vec!["1", "4611686018427387905"]
        );
        assert_eq!(
            braces("{9223372036854775806..9223372036854775807..5}"),
            vec!["9223372036854775806"]
        );
        assert_eq!(
            braces("{-9223372036854775807..-9223372036854775806..-9223372036854775807}"),
            vec!["-9223372036854775807"]
        );
        // brush-parser unwraps the parse of a number that does not fit i64.
        assert_eq!(braces("{1..99999999999999999999}"), vec!["{1..99999999999999999999}"]);
        // Too many words, even when nested: left unexpanded.
        assert_eq!(braces("a{{1..1000}{1..1000},x}"), vec!["a{{1..1000}{1..1000},x}"]);
        assert_eq!(braces("{1..100001}"), vec!["{1..100001}"]);
        assert_eq!(braces("{1..100000}").len(), 100_000);
        // Found by `fuzz/`: brush-parser backtracked exponentially in deep
        // `{` nesting (twenty levels took minutes) until our fork memoized it.
        let deep = "{".repeat(200) + "x";
        assert_eq!(braces(&deep), vec![deep.clone()]);
        assert_eq!(braces("{a,{b,{c,{d,e}}}}"), vec!["a", "b", "c", "d", "e"]);
        let nested = format!("{}z{}", "{a,".repeat(30), "}".repeat(30));
        assert_eq!(braces(&nested).len(), 31);
    }

    #[test]
    fn nested_and_unclosed_substitutions_parse_or_are_refused_as_too_complex() {
        // Found by `fuzz/`: brush-parser's word grammar backtracked
        // exponentially in nested substitutions (twelve `$((` never ended,
        // a 90-byte here-document took 0.2 s) until our fork memoized it.
        assert!(word_pieces(&"$((".repeat(12), true).is_ok());
        assert!(word_pieces(&"$(".repeat(30), false).is_ok());
        assert!(word_pieces(&format!("{}x{}", "$((".repeat(12), "))".repeat(12)), false).is_ok());
        assert!(word_pieces("a $(b) ${c:-d} $((1 + (2 * 3))) (e", true).is_ok());
        let mixed = "$(($dddddddd(dddddddd(($(($((]}]}]}]})$()($(($((]}]}]}]})$())d(";
        assert!(word_pieces(&mixed.repeat(3), true).is_ok());
        // Still quadratic when thousands are left open: refused by the
        // parser's step budget, with a reason that names it.
        for heredoc in [true, false] {
            let refused = word_pieces(&"$((x ".repeat(3_000), heredoc);
            assert_eq!(refused.err(), Some(Refused::TooComplex));
        }
        // A here-document of a hundred kilobytes is far from the budget.
        let text = "hello $x ${y:-z} world\n".repeat(5_000);
        assert!(word_pieces(&text, true).is_ok());
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
