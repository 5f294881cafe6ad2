//! Parsing a command line with brush-parser, and turning its errors into
//! bash's messages (`bash: -c: line 1: syntax error near unexpected token
//! `)'`). Also recognises a `bash`/`sh` invocation in an argv.

use brush_parser::ast::Program;
use brush_parser::{ParseError, TokenizerError};

/// Longest script we parse (a guard against absurd inputs).
const MAX_SCRIPT: usize = 4 << 20;

/// A syntax error, with what bash needs to report it.
#[derive(Debug)]
pub struct SyntaxError {
    line: usize,
    kind: ErrorKind,
    /// The offending source line, for the second line of the message.
    source_line: Option<String>,
}

#[derive(Debug)]
enum ErrorKind {
    Near(String),
    EndOfFile,
    Unmatched(char),
    TooLong,
    TooComplex,
}

impl SyntaxError {
    /// The full message as bash prints it, newline-terminated. `origin` is
    /// `-c` for a command string, or the script's name.
    pub fn message(&self, arg0: &str, origin: &str) -> String {
        let prefix = |line: usize| {
            if origin == "-c" {
                format!("{arg0}: -c: line {line}: ")
            } else {
                format!("{origin}: line {line}: ")
            }
        };
        let p = prefix(self.line);
        match &self.kind {
            ErrorKind::Near(tok) => {
                let mut m = format!("{p}syntax error near unexpected token `{tok}'\n");
                if let Some(src) = &self.source_line {
                    m.push_str(&format!("{p}`{src}'\n"));
                }
                m
            }
            ErrorKind::EndOfFile => format!("{p}syntax error: unexpected end of file\n"),
            ErrorKind::Unmatched(c) => {
                format!("{p}unexpected EOF while looking for matching `{c}'\n")
            }
            ErrorKind::TooLong => {
                format!("{p}script too long (more than {} MiB)\n", MAX_SCRIPT >> 20)
            }
            ErrorKind::TooComplex => format!("{p}{}\n", Refused::TooComplex.reason()),
        }
    }
}

/// How every brush-parser call of the shell is configured (bash without
/// `extglob`).
pub fn parse_options() -> brush_parser::ParserOptions {
    options_with(false)
}

/// As [`parse_options`], with extended patterns (`shopt -s extglob`) read
/// as parts of words when `extglob`.
pub fn options_with(extglob: bool) -> brush_parser::ParserOptions {
    brush_parser::ParserOptions { enable_extended_globbing: extglob, ..Default::default() }
}

/// Parser steps one parse may take. A step is about a character or a piece
/// of a word (brush-parser's step budget, a patch of ours:
/// `vendor/brush-parser/PATCHES.md`); a million take about 60 ms in a
/// release build here, whatever the input, so no text keeps the parser
/// busy for long. Plain text of up to about half a megabyte fits.
pub const MAX_PARSE_STEPS: u64 = 1_000_000;

/// Why a parse gave no result of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// It does not parse: a syntax error, a panic inside the parser, or a
    /// text that nests too deep to parse at all.
    Invalid,
    /// The parse took more than [`MAX_PARSE_STEPS`].
    TooComplex,
}

impl Refused {
    /// The message bash-style errors carry.
    pub fn reason(self) -> String {
        match self {
            Refused::Invalid => "syntax error: unexpected end of file".into(),
            Refused::TooComplex => {
                format!("too complex to parse (more than {MAX_PARSE_STEPS} parser steps)")
            }
        }
    }
}

/// Runs one of brush-parser's parsers on `text`; every call the shell makes
/// goes through here or [`isolated`]. A parse error, a panic inside the
/// parser, a parse over its steps or a text too deep to parse at all
/// ([`stack_for`]) is `None`.
pub fn guarded<T: Send, E: Send>(
    text: &str,
    parse: impl FnOnce() -> Result<T, E> + Send,
) -> Option<T> {
    checked(text, parse).ok()
}

/// As [`guarded`], saying why there is no result.
pub fn checked<T: Send, E: Send>(
    text: &str,
    parse: impl FnOnce() -> Result<T, E> + Send,
) -> Result<T, Refused> {
    isolated(text, parse)?.map_err(|_| Refused::Invalid)
}

/// Runs a brush-parser call so that no input can take the server down with
/// it or hold its thread. The parser is not ours, and `fuzz/` found its
/// limits:
/// - it panics on some input (`unwrap`ped integer parses:
///   `~99999999999999999999`, `{1..99999999999999999999}`);
/// - it recurses once per nesting level, about 6 KiB of stack a level in a
///   release build: `{ ` 376 times overflows a 2 MiB tokio worker, and a
///   stack overflow aborts the whole process. A text that could nest deeper
///   than a few levels is parsed on a thread with a stack for its worst case;
/// - it backtracked exponentially in nested constructs (our fork memoizes
///   the rules involved) and is still quadratic in some unclosed ones, so
///   every parse runs under [`MAX_PARSE_STEPS`].
pub fn isolated<R: Send>(text: &str, parse: impl FnOnce() -> R + Send) -> Result<R, Refused> {
    let catching = || {
        let bounded = || brush_parser::budget::with_step_limit(MAX_PARSE_STEPS, parse);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(bounded)) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(brush_parser::budget::StepLimitExceeded)) => Err(Refused::TooComplex),
            Err(_) => Err(Refused::Invalid),
        }
    };
    match stack_for(text).ok_or(Refused::Invalid)? {
        0 => catching(),
        size => std::thread::scope(|scope| {
            let worker = std::thread::Builder::new()
                .name("parse".into())
                .stack_size(size)
                .spawn_scoped(scope, catching);
            worker.map_err(|_| Refused::Invalid)?.join().map_err(|_| Refused::Invalid)?
        }),
    }
}

/// Stack per nesting level, with a margin over the ~5.6 KiB measured (`{ `,
/// `if :; then`, `for x do`); a debug build needs several times more.
const LEVEL_STACK: usize = if cfg!(debug_assertions) { 96 << 10 } else { 12 << 10 };

/// Levels parsed on the caller's own stack.
const INLINE_LEVELS: usize = 8;

/// Largest stack we give a parse (address space, not memory: a thread's
/// stack is only backed as it is used).
const MAX_PARSE_STACK: usize = 1 << 30;

/// The stack `text` needs for parsing: `Some(0)` for the caller's own,
/// `None` when even [`MAX_PARSE_STACK`] might not do. Every nesting level
/// starts with a bracket (a substitution's `$` is followed by one), a
/// backquote, `!` or a compound-command keyword, so their count bounds the
/// depth (keywords are counted wherever they appear as words, which only
/// overestimates).
fn stack_for(text: &str) -> Option<usize> {
    let brackets = text.bytes().filter(|b| matches!(b, b'(' | b'{' | b'[' | b'`' | b'!')).count();
    let keywords = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| {
            matches!(
                *w,
                "if" | "while"
                    | "until"
                    | "for"
                    | "select"
                    | "case"
                    | "function"
                    | "coproc"
                    | "time"
            )
        })
        .count();
    let levels = brackets + keywords;
    if levels <= INLINE_LEVELS {
        return Some(0);
    }
    let size = levels.checked_add(8)?.checked_mul(LEVEL_STACK)?;
    (size <= MAX_PARSE_STACK).then_some(size)
}

/// What brush-parser's tokenizer is given for `text`. brush-parser 0.4
/// loops forever, allocating without bound, when the input ends on the line
/// of a here-document operator with no token pending (`cat <<"" ` with a
/// trailing blank, `<<E$[\t\t`: found by `fuzz/`; upstream
/// reubeno/brush#1270). A final newline, which is how bash ends a `-c`
/// string anyway, takes the tokenizer past that line first. Only scripts
/// with `<<` can get there, so the others are tokenized as they are; so is
/// one ending in a backslash (an open escape is reported first).
fn tokenizer_input(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains("<<") && !text.ends_with('\n') && !text.ends_with('\\') {
        format!("{text}\n").into()
    } else {
        text.into()
    }
}

/// The tokens of a script as the parser sees them; `None` if it does not
/// tokenize. (Not brush-parser's `tokenize_str`, which keeps the last 64
/// inputs, up to [`MAX_SCRIPT`] each, in a global cache.)
pub fn tokens(text: &str) -> Option<Vec<brush_parser::Token>> {
    let input = tokenizer_input(text);
    let options = parse_options().tokenizer_options();
    guarded(&input, || brush_parser::uncached_tokenize_str(&input, &options))
}

/// Parses a whole script, with extended patterns when `extglob` is on.
/// bash reads a script line by line, so `shopt -s extglob` on one line
/// lets the lines after it use extended patterns (not its own line): a
/// script that does not parse without them, where a line before the error
/// turns them on, is parsed again with them.
pub fn program(text: &str, extglob: bool) -> Result<Program, SyntaxError> {
    match program_with(text, extglob) {
        Err(e) if !extglob && enables_extglob_before(text, e.line) => program_with(text, true),
        r => r,
    }
}

/// Whether a line before `line` (1-based) runs `shopt -s … extglob`.
fn enables_extglob_before(text: &str, line: usize) -> bool {
    text.lines().take(line.saturating_sub(1)).any(|l| {
        l.split([';', '&', '|']).any(|cmd| {
            let words: Vec<&str> = cmd.split_whitespace().collect();
            words.first() == Some(&"shopt") && words.contains(&"-s") && words.contains(&"extglob")
        })
    })
}

fn program_with(text: &str, extglob: bool) -> Result<Program, SyntaxError> {
    if text.len() > MAX_SCRIPT {
        return Err(SyntaxError { line: 1, kind: ErrorKind::TooLong, source_line: None });
    }
    let input = tokenizer_input(text);
    let lines = text.lines().count().max(1);
    let parse = || {
        let options = options_with(extglob);
        let mut parser =
            brush_parser::Parser::new(std::io::BufReader::new(input.as_bytes()), &options);
        parser.parse_program()
    };
    // As `guarded`, but the error is kept: it makes the message.
    let err = match isolated(&input, parse) {
        Ok(Ok(p)) => return Ok(p),
        Ok(Err(e)) => e,
        Err(Refused::Invalid) => {
            return Err(SyntaxError { line: 1, kind: ErrorKind::EndOfFile, source_line: None });
        }
        Err(Refused::TooComplex) => {
            return Err(SyntaxError { line: 1, kind: ErrorKind::TooComplex, source_line: None });
        }
    };
    Err(match err {
        ParseError::ParsingNear(pos) => {
            let src = text.lines().nth(pos.line.saturating_sub(1)).map(str::to_owned);
            // An extended pattern without `extglob` (`echo !(x).rs`): bash
            // stops at its `(`, a word's end it did not expect.
            let tok = if !extglob && src.as_deref().is_some_and(crate::pattern::has_extglob) {
                "(".into()
            } else {
                token_at(text, pos.index).unwrap_or_else(|| "newline".into())
            };
            SyntaxError { line: pos.line, kind: ErrorKind::Near(tok), source_line: src }
        }
        ParseError::ParsingAtEndOfInput if stray_closer(text).is_some() => {
            let tok = stray_closer(text).unwrap_or_default();
            let src = text.lines().next().map(str::to_owned);
            SyntaxError { line: 1, kind: ErrorKind::Near(tok), source_line: src }
        }
        ParseError::ParsingAtEndOfInput => {
            SyntaxError { line: lines + 1, kind: ErrorKind::EndOfFile, source_line: None }
        }
        ParseError::Tokenizing { inner, position } => {
            let line = position.map_or(1, |p| p.line);
            let kind = match inner {
                TokenizerError::UnterminatedDoubleQuote(p) => return Err(unmatched(p.line, '"')),
                TokenizerError::UnterminatedSingleQuote(p) => return Err(unmatched(p.line, '\'')),
                TokenizerError::UnterminatedBackquote(p) => return Err(unmatched(p.line, '`')),
                TokenizerError::UnterminatedCommandSubstitution
                | TokenizerError::UnterminatedExpansion => ErrorKind::Unmatched(')'),
                TokenizerError::UnterminatedVariable => ErrorKind::Unmatched('}'),
                _ => ErrorKind::EndOfFile,
            };
            SyntaxError { line, kind, source_line: None }
        }
    })
}

fn unmatched(line: usize, c: char) -> SyntaxError {
    SyntaxError { line, kind: ErrorKind::Unmatched(c), source_line: None }
}

/// A line starting with a word that can only close a construct (`done`,
/// `fi`…): bash reports that token, brush-parser reports end of input.
fn stray_closer(text: &str) -> Option<String> {
    let tokens = tokens(text)?;
    let first = tokens.first()?.to_str().to_owned();
    matches!(
        first.as_str(),
        "done" | "fi" | "then" | "else" | "elif" | "esac" | "do" | "}" | ")" | ";;" | "in"
    )
    .then_some(first)
}

/// The token starting at byte `index`, as bash names it.
fn token_at(text: &str, index: usize) -> Option<String> {
    let tokens = tokens(text)?;
    let tok = tokens.iter().find(|t| t.location().start.index == index)?;
    let s = tok.to_str();
    Some(if s == "\n" { "newline".to_owned() } else { s.to_owned() })
}

/// What `bash`/`sh` was asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// `-c STRING`.
    Inline(String),
    /// A script file (visible path as given).
    File(String),
    /// No script: read it from standard input.
    Stdin,
}

/// A `bash`/`sh` command line: options, the script, `$0` and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub script: Script,
    pub arg0: String,
    pub args: Vec<String>,
    /// `-e`, `-u`, `-x`, `-o pipefail` given on the command line.
    pub set: Vec<String>,
}

impl Invocation {
    /// Recognises `bash [-l] [-e…] -c SCRIPT [ARG0 ARGS…]`, `bash FILE ARGS…`
    /// and plain `bash`. Returns `None` for other commands or options we do
    /// not understand (`--version`), which then run as a tool if one exists.
    pub fn from_argv(argv: &[String]) -> Option<Self> {
        let name = crate::exec::command_name(argv.first()?);
        if !matches!(name, "bash" | "sh") {
            return None;
        }
        let mut set = Vec::new();
        let mut inline = false;
        let mut from_stdin = false;
        let mut i = 1;
        while i < argv.len() {
            let a = argv[i].as_str();
            if a == "--" {
                i += 1;
                break;
            }
            if a == "-o" || a == "+o" {
                set.push(format!("{a} {}", argv.get(i + 1)?));
                i += 2;
                continue;
            }
            if a == "--login" || a == "--norc" || a == "--noprofile" || a == "--posix" {
                i += 1;
                continue;
            }
            if a.starts_with("--") {
                return None;
            }
            if !(a.starts_with('-') || a.starts_with('+')) || a.len() < 2 {
                break;
            }
            for c in a[1..].chars() {
                match c {
                    'c' => inline = true,
                    's' => from_stdin = true,
                    'l' | 'i' | 'p' => {}
                    'e' | 'u' | 'x' | 'f' | 'v' | 'n' => set.push(format!("{}{c}", &a[..1])),
                    _ => return None,
                }
            }
            i += 1;
        }
        let shell_name = argv[0].clone();
        if inline {
            let script = argv.get(i)?.clone();
            let arg0 = argv.get(i + 1).cloned().unwrap_or(shell_name);
            let args = argv.get(i + 2..).map(<[String]>::to_vec).unwrap_or_default();
            return Some(Self { script: Script::Inline(script), arg0, args, set });
        }
        // `bash -s ARGS…`: the script is stdin, the arguments are its own.
        if from_stdin {
            let args = argv.get(i..).map(<[String]>::to_vec).unwrap_or_default();
            return Some(Self { script: Script::Stdin, arg0: shell_name, args, set });
        }
        match argv.get(i) {
            Some(file) => Some(Self {
                script: Script::File(file.clone()),
                arg0: file.clone(),
                args: argv[i + 1..].to_vec(),
                set,
            }),
            None => Some(Self { script: Script::Stdin, arg0: shell_name, args: Vec::new(), set }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn recognises_shell_invocations() {
        let inv = Invocation::from_argv(&argv(&["/bin/bash", "-lc", "echo hi"])).expect("bash -lc");
        assert_eq!(inv.script, Script::Inline("echo hi".into()));
        assert_eq!(inv.arg0, "/bin/bash");
        let inv =
            Invocation::from_argv(&argv(&["sh", "-l", "-c", "x", "name", "a"])).expect("sh -l -c");
        assert_eq!((inv.arg0.as_str(), inv.args.clone()), ("name", vec!["a".to_string()]));
        let inv = Invocation::from_argv(&argv(&["bash", "-e", "run.sh", "1"])).expect("bash file");
        assert_eq!(inv.script, Script::File("run.sh".into()));
        assert_eq!(inv.set, vec!["-e".to_string()]);
        assert!(Invocation::from_argv(&argv(&["cat", "-c"])).is_none());
        assert!(Invocation::from_argv(&argv(&["bash", "--version"])).is_none());
    }

    #[test]
    fn syntax_errors_read_like_bash() {
        let e = program("echo )", false).expect_err("syntax error");
        assert_eq!(
            e.message("bash", "-c"),
            "bash: -c: line 1: syntax error near unexpected token `)'\nbash: -c: line 1: `echo )'\n"
        );
        let e = program("if true; then", false).expect_err("eof");
        assert_eq!(
            e.message("bash", "-c"),
            "bash: -c: line 2: syntax error: unexpected end of file\n"
        );
        let e = program("echo \"abc", false).expect_err("quote");
        assert_eq!(
            e.message("bash", "-c"),
            "bash: -c: line 1: unexpected EOF while looking for matching `\"'\n"
        );
    }

    #[test]
    fn here_documents_cut_short_end_at_end_of_file_not_in_endless_loops() {
        // Found by `fuzz/` (shell_parse): brush-parser 0.4 allocated without
        // end on each of these (the server would have been OOM-killed). Bash
        // reads each as a here-document delimited by the end of the script
        // (with a warning), so they parse; `$[` left open is an error.
        for text in ["<<\x0c ", "cat <<\"\" ", "cat <<'' x ", "cat <<\"\" \t", "cat <<\r "] {
            assert!(program(text, false).is_ok(), "{text:?}");
        }
        assert!(program("<<E$[\t\t", false).is_err());
        assert!(program("cat <<EOF\nhello\nEOF", false).is_ok());
    }
}
