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
}

impl SyntaxError {
    /// The full message as bash prints it, newline-terminated. `origin` is
    /// `-c` for a command string, or the script's name.
    pub fn message(&self, arg0: &str, origin: &str) -> String {
        let prefix = |line: usize| {
            if origin == "-c" { format!("{arg0}: -c: line {line}: ") } else { format!("{origin}: line {line}: ") }
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
            ErrorKind::Unmatched(c) => format!("{p}unexpected EOF while looking for matching `{c}'\n"),
            ErrorKind::TooLong => format!("{p}script too long (more than {} MiB)\n", MAX_SCRIPT >> 20),
        }
    }
}

fn parser_options() -> brush_parser::ParserOptions {
    super::expand::parse_options()
}

/// Parses a whole script.
pub fn program(text: &str) -> Result<Program, SyntaxError> {
    if text.len() > MAX_SCRIPT {
        return Err(SyntaxError { line: 1, kind: ErrorKind::TooLong, source_line: None });
    }
    let mut parser = brush_parser::Parser::new(std::io::BufReader::new(text.as_bytes()), &parser_options());
    // The parser is not ours; a panic inside it must not take the server down.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parser.parse_program()));
    let err = match result {
        Ok(Ok(p)) => return Ok(p),
        Ok(Err(e)) => e,
        Err(_) => return Err(SyntaxError { line: 1, kind: ErrorKind::EndOfFile, source_line: None }),
    };
    let lines = text.lines().count().max(1);
    Err(match err {
        ParseError::ParsingNear(pos) => {
            let tok = token_at(text, pos.index).unwrap_or_else(|| "newline".into());
            let src = text.lines().nth(pos.line.saturating_sub(1)).map(str::to_owned);
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
                TokenizerError::UnterminatedCommandSubstitution | TokenizerError::UnterminatedExpansion => {
                    ErrorKind::Unmatched(')')
                }
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
    let tokens = brush_parser::tokenize_str(text).ok()?;
    let first = tokens.first()?.to_str().to_owned();
    matches!(first.as_str(), "done" | "fi" | "then" | "else" | "elif" | "esac" | "do" | "}" | ")" | ";;" | "in").then_some(first)
}

/// The token starting at byte `index`, as bash names it.
fn token_at(text: &str, index: usize) -> Option<String> {
    let tokens = brush_parser::tokenize_str(text).ok()?;
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
                    'l' | 'i' | 's' | 'p' => {}
                    'e' | 'u' | 'x' | 'f' | 'v' => set.push(format!("{}{c}", &a[..1])),
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
        match argv.get(i) {
            Some(file) => Some(Self { script: Script::File(file.clone()), arg0: file.clone(), args: argv[i + 1..].to_vec(), set }),
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
        let inv = Invocation::from_argv(&argv(&["sh", "-l", "-c", "x", "name", "a"])).expect("sh -l -c");
        assert_eq!((inv.arg0.as_str(), inv.args.clone()), ("name", vec!["a".to_string()]));
        let inv = Invocation::from_argv(&argv(&["bash", "-e", "run.sh", "1"])).expect("bash file");
        assert_eq!(inv.script, Script::File("run.sh".into()));
        assert_eq!(inv.set, vec!["-e".to_string()]);
        assert!(Invocation::from_argv(&argv(&["cat", "-c"])).is_none());
        assert!(Invocation::from_argv(&argv(&["bash", "--version"])).is_none());
    }

    #[test]
    fn syntax_errors_read_like_bash() {
        let e = program("echo )").expect_err("syntax error");
        assert_eq!(
            e.message("bash", "-c"),
            "bash: -c: line 1: syntax error near unexpected token `)'\nbash: -c: line 1: `echo )'\n"
        );
        let e = program("if true; then").expect_err("eof");
        assert_eq!(e.message("bash", "-c"), "bash: -c: line 2: syntax error: unexpected end of file\n");
        let e = program("echo \"abc").expect_err("quote");
        assert_eq!(e.message("bash", "-c"), "bash: -c: line 1: unexpected EOF while looking for matching `\"'\n");
    }
}
