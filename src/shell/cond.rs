//! Conditions: `test`/`[` (arguments already expanded) and `[[ … ]]`
//! (operands expanded here without splitting or globbing, `==` with
//! patterns, `=~` with regular expressions). File tests go through the
//! workspace capability; a path outside it does not exist.

use super::expand;
use super::io::{Io, complain};
use super::state::{Outcome, Shell, Unwind};
use brush_parser::ast::{BinaryPredicate as B, ExtendedTestExpr as X, UnaryPredicate as U};

fn file_test(sh: &Shell, op: &str, path: &str) -> bool {
    if path.is_empty() {
        return false;
    }
    // The character devices every guest and redirection has.
    if matches!(
        path,
        "/dev/null"
            | "/dev/zero"
            | "/dev/urandom"
            | "/dev/random"
            | "/dev/stdin"
            | "/dev/stdout"
            | "/dev/stderr"
    ) {
        return matches!(op, "-e" | "-a" | "-c" | "-r" | "-w");
    }
    let Some((dir, rel)) = sh.locate(path) else { return false };
    if op == "-L" || op == "-h" {
        return dir.symlink_metadata(&rel).is_ok_and(|m| m.file_type().is_symlink());
    }
    let Ok(m) = dir.metadata(&rel) else { return false };
    match op {
        "-e" | "-a" | "-r" | "-w" => true,
        "-f" => m.is_file(),
        "-d" => m.is_dir(),
        "-s" => m.len() > 0,
        "-x" => m.is_dir() || is_executable(&m),
        _ => false,
    }
}

fn is_executable(m: &cap_std::fs::Metadata) -> bool {
    use cap_std::fs::PermissionsExt;
    m.permissions().mode() & 0o111 != 0
}

fn unary(sh: &Shell, op: &str, arg: &str) -> Option<bool> {
    Some(match op {
        "-z" => arg.is_empty(),
        "-n" => !arg.is_empty(),
        "-e" | "-a" | "-f" | "-d" | "-s" | "-r" | "-w" | "-x" | "-L" | "-h" | "-c" => {
            file_test(sh, op, arg)
        }
        "-b" | "-p" | "-S" | "-g" | "-u" | "-k" | "-O" | "-G" | "-N" | "-t" => false,
        "-v" => sh.vars.contains_key(arg),
        "-o" => false,
        _ => return None,
    })
}

fn int(s: &str) -> Result<i64, String> {
    s.trim().parse::<i64>().map_err(|_| format!("{s}: integer expression expected"))
}

fn binary(sh: &Shell, op: &str, a: &str, b: &str) -> Option<Result<bool, String>> {
    let num = |f: fn(i64, i64) -> bool| Some(int(a).and_then(|x| int(b).map(|y| f(x, y))));
    match op {
        "=" | "==" => Some(Ok(a == b)),
        "!=" => Some(Ok(a != b)),
        "<" => Some(Ok(a < b)),
        ">" => Some(Ok(a > b)),
        "-eq" => num(|x, y| x == y),
        "-ne" => num(|x, y| x != y),
        "-lt" => num(|x, y| x < y),
        "-le" => num(|x, y| x <= y),
        "-gt" => num(|x, y| x > y),
        "-ge" => num(|x, y| x >= y),
        "-nt" | "-ot" => {
            let mtime = |p: &str| {
                sh.resolve(p)
                    .and_then(|r| sh.exec.workspace.dir().metadata(&r).ok())
                    .and_then(|m| m.modified().ok())
            };
            let (x, y) = (mtime(a), mtime(b));
            Some(Ok(if op == "-nt" { x > y } else { x < y }))
        }
        "-ef" => Some(Ok(false)),
        _ => None,
    }
}

/// `test` and `[`: POSIX rules by argument count, then `!`, `-a`, `-o`, `( )`.
pub async fn test(sh: &mut Shell, io: &Io, args: &[String], close: Option<&str>) -> Outcome {
    let name = if close.is_some() { "[" } else { "test" };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let args = match close {
        Some(c) => match args.split_last() {
            Some((last, rest)) if *last == c => rest.to_vec(),
            _ => return complain(sh, io, "[", "missing `]'", 2).await,
        },
        None => args,
    };
    let mut p = TestParser { sh, args: &args, pos: 0 };
    match p.expr().and_then(|v| {
        if p.pos < args.len() {
            Err(format!("{}: unexpected argument", args[p.pos]))
        } else {
            Ok(v)
        }
    }) {
        Ok(v) => Ok((!v) as i32),
        Err(msg) => complain(sh, io, name, &msg, 2).await,
    }
}

struct TestParser<'a> {
    sh: &'a Shell,
    args: &'a [&'a str],
    pos: usize,
}

impl TestParser<'_> {
    fn expr(&mut self) -> Result<bool, String> {
        let remaining = self.args.len() - self.pos;
        // Short forms first, as POSIX specifies.
        match remaining {
            0 => return Ok(false),
            1 => {
                self.pos += 1;
                return Ok(!self.args[self.pos - 1].is_empty());
            }
            2 if self.args[self.pos] == "!" => {
                self.pos += 2;
                return Ok(self.args[self.pos - 1].is_empty());
            }
            3 if binary(self.sh, self.args[self.pos + 1], "", "").is_some() => {
                let (a, op, b) =
                    (self.args[self.pos], self.args[self.pos + 1], self.args[self.pos + 2]);
                self.pos += 3;
                return binary(self.sh, op, a, b).unwrap_or(Ok(false));
            }
            _ => {}
        }
        self.or()
    }

    fn or(&mut self) -> Result<bool, String> {
        let mut v = self.and()?;
        while self.args.get(self.pos) == Some(&"-o") {
            self.pos += 1;
            let r = self.and()?;
            v = v || r;
        }
        Ok(v)
    }

    fn and(&mut self) -> Result<bool, String> {
        let mut v = self.not()?;
        while self.args.get(self.pos) == Some(&"-a") {
            self.pos += 1;
            let r = self.not()?;
            v = v && r;
        }
        Ok(v)
    }

    fn not(&mut self) -> Result<bool, String> {
        if self.args.get(self.pos) == Some(&"!") {
            self.pos += 1;
            return Ok(!self.not()?);
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<bool, String> {
        let Some(&a) = self.args.get(self.pos) else { return Err("argument expected".into()) };
        if a == "(" {
            self.pos += 1;
            let v = self.or()?;
            if self.args.get(self.pos) != Some(&")") {
                return Err("`)' expected".into());
            }
            self.pos += 1;
            return Ok(v);
        }
        if let (Some(&op), Some(&b)) = (self.args.get(self.pos + 1), self.args.get(self.pos + 2)) {
            if let Some(r) = binary(self.sh, op, a, b) {
                self.pos += 3;
                return r;
            }
        }
        if a.starts_with('-') && a.len() == 2 {
            if let Some(&arg) = self.args.get(self.pos + 1) {
                if let Some(v) = unary(self.sh, a, arg) {
                    self.pos += 2;
                    return Ok(v);
                }
            }
            if unary(self.sh, a, "").is_some() && self.pos + 1 >= self.args.len() {
                self.pos += 1;
                return Ok(true);
            }
        }
        self.pos += 1;
        Ok(!a.is_empty())
    }
}

fn unary_op(p: &U) -> &'static str {
    match p {
        U::FileExists => "-e",
        U::FileExistsAndIsDir => "-d",
        U::FileExistsAndIsRegularFile => "-f",
        U::FileExistsAndIsNotZeroLength => "-s",
        U::FileExistsAndIsSymlink => "-L",
        U::FileExistsAndIsReadable => "-r",
        U::FileExistsAndIsWritable => "-w",
        U::FileExistsAndIsExecutable => "-x",
        U::FileExistsAndIsCharSpecialFile => "-c",
        U::StringHasZeroLength => "-z",
        U::StringHasNonZeroLength => "-n",
        U::ShellVariableIsSetAndAssigned => "-v",
        _ => "-b",
    }
}

/// `[[ … ]]`.
pub async fn extended(sh: &mut Shell, io: &Io, e: &X) -> Outcome {
    match eval(sh, io, e).await? {
        Ok(v) => Ok((!v) as i32),
        Err(msg) => {
            io.err(&format!("{}{msg}\n", sh.err_prefix())).await;
            Ok(2)
        }
    }
}

fn eval<'a>(
    sh: &'a mut Shell,
    io: &'a Io,
    e: &'a X,
) -> futures::future::BoxFuture<'a, Result<Result<bool, String>, Unwind>> {
    Box::pin(async move {
        Ok(Ok(match e {
            X::And(a, b) => match eval(sh, io, a).await? {
                Ok(true) => return eval(sh, io, b).await,
                other => return Ok(other),
            },
            X::Or(a, b) => match eval(sh, io, a).await? {
                Ok(false) => return eval(sh, io, b).await,
                other => return Ok(other),
            },
            X::Not(a) => match eval(sh, io, a).await? {
                Ok(v) => !v,
                err => return Ok(err),
            },
            X::Parenthesized(a) => return eval(sh, io, a).await,
            X::UnaryTest(op, w) => {
                let v = expand::string(sh, io, &w.value).await?;
                unary(sh, unary_op(op), &v).unwrap_or(false)
            }
            X::BinaryTest(op, a, b) => {
                let left = expand::string(sh, io, &a.value).await?;
                match op {
                    B::StringExactlyMatchesPattern | B::StringDoesNotExactlyMatchPattern => {
                        let pat = expand::pattern_of(sh, io, &b.value).await?;
                        let hit = expand::matches_case(sh, &pat, &left).await;
                        hit == matches!(op, B::StringExactlyMatchesPattern)
                    }
                    B::StringMatchesRegex => {
                        let re = expand::string(sh, io, &b.value).await?;
                        match regex::Regex::new(&re) {
                            Ok(r) => match r.captures(&left) {
                                Some(c) => {
                                    let groups = c
                                        .iter()
                                        .map(|m| m.map_or(String::new(), |m| m.as_str().to_owned()))
                                        .collect();
                                    let _ = sh
                                        .set_array("BASH_REMATCH", super::state::array_of(groups));
                                    true
                                }
                                None => {
                                    let _ = sh.set_array("BASH_REMATCH", Default::default());
                                    false
                                }
                            },
                            Err(_) => return Ok(Ok(false)),
                        }
                    }
                    _ => {
                        let right = expand::string(sh, io, &b.value).await?;
                        let name = match op {
                            B::StringExactlyMatchesString => "==",
                            B::StringDoesNotExactlyMatchString => "!=",
                            B::LeftSortsBeforeRight => "<",
                            B::LeftSortsAfterRight => ">",
                            B::ArithmeticEqualTo => "-eq",
                            B::ArithmeticNotEqualTo => "-ne",
                            B::ArithmeticLessThan => "-lt",
                            B::ArithmeticLessThanOrEqualTo => "-le",
                            B::ArithmeticGreaterThan => "-gt",
                            B::ArithmeticGreaterThanOrEqualTo => "-ge",
                            B::LeftFileIsNewerOrExistsWhenRightDoesNot => "-nt",
                            B::LeftFileIsOlderOrDoesNotExistWhenRightDoes => "-ot",
                            _ => "-ef",
                        };
                        if name.starts_with("-")
                            && name.len() == 3
                            && !matches!(name, "-nt" | "-ot" | "-ef")
                        {
                            // Operands of arithmetic comparisons are arithmetic.
                            let x = super::arith::eval(sh, &left);
                            let y = super::arith::eval(sh, &right);
                            return Ok(match (x, y) {
                                (Ok(x), Ok(y)) => binary(sh, name, &x.to_string(), &y.to_string())
                                    .unwrap_or(Ok(false)),
                                (Err(m), _) | (_, Err(m)) => Err(m),
                            });
                        }
                        match binary(sh, name, &left, &right) {
                            Some(r) => return Ok(r),
                            None => false,
                        }
                    }
                }
            }
        }))
    })
}
