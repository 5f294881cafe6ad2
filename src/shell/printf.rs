//! `echo` and `printf`, as bash's builtins behave.

use super::io::Io;
use super::state::{MAX_VALUE, Outcome, Shell};

/// `echo [-neE] args…`.
pub async fn echo(io: &Io, args: &[String]) -> Outcome {
    let mut newline = true;
    let mut escapes = false;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        let Some(flags) = a.strip_prefix('-') else { break };
        if flags.is_empty() || !flags.chars().all(|c| matches!(c, 'n' | 'e' | 'E')) {
            break;
        }
        for c in flags.chars() {
            match c {
                'n' => newline = false,
                'e' => escapes = true,
                _ => escapes = false,
            }
        }
        i += 1;
    }
    let mut out = args[i..].join(" ");
    if escapes {
        let (s, stop) = backslash_escapes(&out, true);
        out = s;
        if stop {
            newline = false;
        }
    }
    if newline {
        out.push('\n');
    }
    io.out(out.as_bytes()).await?;
    Ok(0)
}

/// Interprets `\n`, `\t`, `\0NNN`, `\xHH`… as `echo -e` and `%b` do.
/// Returns the text and whether `\c` asked to stop output.
pub fn backslash_escapes(s: &str, echo_octal: bool) -> (String, bool) {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '\\' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let (piece, next, stop) = escape_at(&chars, i, echo_octal);
        out.push_str(&piece);
        if stop {
            return (out, true);
        }
        i = next;
    }
    (out, false)
}

/// Decodes the escape starting at `chars[i] == '\\'`: (text, next index,
/// `\c` seen). `echo_octal` selects echo's `\0NNN` over printf's `\NNN`.
fn escape_at(chars: &[char], i: usize, echo_octal: bool) -> (String, usize, bool) {
    let Some(&e) = chars.get(i + 1) else { return ("\\".into(), i + 1, false) };
    let mut j = i + 2;
    let simple = |c: char| (c.to_string(), j, false);
    match e {
        'n' => simple('\n'),
        't' => simple('\t'),
        'r' => simple('\r'),
        'a' => simple('\u{7}'),
        'b' => simple('\u{8}'),
        'e' | 'E' => simple('\u{1b}'),
        'f' => simple('\u{c}'),
        'v' => simple('\u{b}'),
        '\\' => simple('\\'),
        'c' => (String::new(), j, true),
        '0'..='7' => {
            let (mut n, max) =
                if echo_octal && e == '0' { (0, 3) } else { (e.to_digit(8).unwrap_or(0), 2) };
            let mut digits = 0;
            while digits < max && chars.get(j).is_some_and(|c| c.is_digit(8)) {
                n = n * 8 + chars[j].to_digit(8).unwrap_or(0);
                j += 1;
                digits += 1;
            }
            (char::from_u32(n).map(String::from).unwrap_or_default(), j, false)
        }
        'x' => {
            let mut n = 0;
            let mut digits = 0;
            while digits < 2 && chars.get(j).is_some_and(|c| c.is_ascii_hexdigit()) {
                n = n * 16 + chars[j].to_digit(16).unwrap_or(0);
                j += 1;
                digits += 1;
            }
            if digits == 0 {
                ("\\x".into(), j, false)
            } else {
                (char::from_u32(n).map(String::from).unwrap_or_default(), j, false)
            }
        }
        other => (format!("\\{other}"), j, false),
    }
}

/// `printf [-v var] format args…`.
pub async fn printf(sh: &mut Shell, io: &Io, args: &[String]) -> Outcome {
    let (var, args) = match args {
        [flag, name, rest @ ..] if flag == "-v" => (Some(name.clone()), rest),
        _ => (None, args),
    };
    let args = if args.first().is_some_and(|a| a == "--") { &args[1..] } else { args };
    let Some(format) = args.first() else {
        io.err(&format!("{}printf: usage: printf [-v var] format [arguments]\n", sh.err_prefix()))
            .await;
        return Ok(2);
    };
    let mut rest = args[1..].iter();
    let mut out = String::new();
    let mut status = 0;
    loop {
        // The format is reused until the arguments run out: a pass per
        // argument of a million-word list. Each pass yields when its slice
        // of time is up, and what is built is held against the budget.
        sh.pause().await?;
        if let Err(m) = sh.budget.fits(out.len()) {
            return Err(super::expand::out_of_memory(sh, io, m).await);
        }
        let consumed_before = rest.len();
        let (stop, bad) = match format_once(format, &mut rest, &mut out) {
            Ok(r) => r,
            Err(msg) => {
                io.err(&format!("{}printf: {msg}\n", sh.err_prefix())).await;
                return Ok(1);
            }
        };
        if bad {
            status = 1;
        }
        if stop || rest.len() == 0 || rest.len() == consumed_before {
            break;
        }
    }
    match var {
        Some(v) => {
            if let Err(msg) = sh.set(&v, &out) {
                io.err(&format!("{}printf: {msg}\n", sh.err_prefix())).await;
                return Ok(1);
            }
        }
        None => io.out(out.as_bytes()).await?,
    }
    if status != 0 {
        io.err(&format!("{}printf: invalid number\n", sh.err_prefix())).await;
    }
    Ok(status)
}

/// The widest field and the longest precision a conversion may ask for: a
/// number taken from the command line sizes an allocation only once it is
/// checked (and Rust's formatting takes no more).
const MAX_FIELD: usize = u16::MAX as usize;

/// One pass over the format. Returns (stop requested by `\c`, a bad
/// number), or why the output cannot be made (a field or the whole output
/// past this shell's limits).
fn format_once<'a>(
    format: &str,
    args: &mut impl Iterator<Item = &'a String>,
    out: &mut String,
) -> Result<(bool, bool), String> {
    let chars: Vec<char> = format.chars().collect();
    let mut i = 0;
    let mut bad = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            let (piece, next, stop) = escape_at(&chars, i, false);
            out.push_str(&piece);
            if stop {
                return Ok((true, bad));
            }
            i = next;
            continue;
        }
        if c != '%' {
            out.push(c);
            i += 1;
            continue;
        }
        if chars.get(i + 1) == Some(&'%') {
            out.push('%');
            i += 2;
            continue;
        }
        // %[flags][width][.precision]conv
        let start = i;
        i += 1;
        while i < chars.len() && "-+ #0".contains(chars[i]) {
            i += 1;
        }
        let mut spec: String = chars[start + 1..i].iter().collect();
        let mut take_num = |i: &mut usize, spec: &mut String| {
            if chars.get(*i) == Some(&'*') {
                spec.push_str(args.next().map(String::as_str).unwrap_or("0"));
                *i += 1;
            }
            while *i < chars.len() && chars[*i].is_ascii_digit() {
                spec.push(chars[*i]);
                *i += 1;
            }
        };
        take_num(&mut i, &mut spec);
        if chars.get(i) == Some(&'.') {
            spec.push('.');
            i += 1;
            take_num(&mut i, &mut spec);
        }
        let Some(&conv) = chars.get(i) else {
            out.push_str(&chars[start..].iter().collect::<String>());
            break;
        };
        i += 1;
        let arg = args.next().map(String::as_str);
        let (flags, width, precision) = parse_spec(&spec);
        if width > MAX_FIELD || precision.is_some_and(|p| p > MAX_FIELD) {
            let n = if width > MAX_FIELD { width } else { precision.unwrap_or(0) };
            return Err(format!(
                "{n}: field width or precision too large (at most {MAX_FIELD}, a limit of this shell)"
            ));
        }
        let body = match conv {
            's' => {
                let s = arg.unwrap_or("");
                match precision {
                    Some(p) => s.chars().take(p).collect(),
                    None => s.to_owned(),
                }
            }
            'b' => {
                let (s, stop) = backslash_escapes(arg.unwrap_or(""), true);
                if stop {
                    out.push_str(&s);
                    return Ok((true, bad));
                }
                s
            }
            'c' => arg.and_then(|a| a.chars().next()).map(String::from).unwrap_or_default(),
            'q' => shell_quote(arg.unwrap_or("")),
            'd' | 'i' | 'u' | 'x' | 'X' | 'o' => {
                let n = match arg.map(number) {
                    Some(Some(n)) => n,
                    Some(None) => {
                        bad = true;
                        0
                    }
                    None => 0,
                };
                let digits = match conv {
                    'x' => format!("{:x}", n),
                    'X' => format!("{:X}", n),
                    'o' => format!("{:o}", n),
                    _ => n.unsigned_abs().to_string(),
                };
                let digits = match precision {
                    Some(p) if digits.len() < p => {
                        format!("{}{digits}", "0".repeat(p - digits.len()))
                    }
                    _ => digits,
                };
                let sign = if n < 0 && matches!(conv, 'd' | 'i') {
                    "-"
                } else if flags.contains('+') && matches!(conv, 'd' | 'i') {
                    "+"
                } else if flags.contains(' ') && matches!(conv, 'd' | 'i') {
                    " "
                } else {
                    ""
                };
                if flags.contains('0') && !flags.contains('-') && precision.is_none() {
                    let w = width.saturating_sub(sign.len());
                    format!("{sign}{digits:0>w$}")
                } else {
                    format!("{sign}{digits}")
                }
            }
            'f' | 'F' | 'e' | 'E' | 'g' | 'G' => {
                let v: f64 = arg.map(|a| a.trim().parse().unwrap_or(0.0)).unwrap_or(0.0);
                let p = precision.unwrap_or(6);
                let s = match conv {
                    'e' | 'E' => format!("{v:.p$e}"),
                    'g' | 'G' => format!("{v}"),
                    _ => format!("{v:.p$}"),
                };
                if flags.contains('0') && !flags.contains('-') {
                    format!("{s:0>width$}")
                } else {
                    s
                }
            }
            other => {
                out.push('%');
                out.push_str(&spec);
                out.push(other);
                continue;
            }
        };
        let len = body.chars().count();
        if len >= width {
            out.push_str(&body);
        } else if flags.contains('-') {
            out.push_str(&body);
            out.push_str(&" ".repeat(width - len));
        } else {
            out.push_str(&" ".repeat(width - len));
            out.push_str(&body);
        }
        if out.len() > MAX_VALUE {
            return Err(format!(
                "output larger than {} MiB (a limit of this shell)",
                MAX_VALUE >> 20
            ));
        }
    }
    Ok((false, bad))
}

fn parse_spec(spec: &str) -> (String, usize, Option<usize>) {
    let flags: String = spec.chars().take_while(|c| "-+ #0".contains(*c)).collect();
    let rest = &spec[flags.len()..];
    let (w, p) = match rest.split_once('.') {
        Some((w, p)) => (w, Some(field_number(p))),
        None => (rest, None),
    };
    let width = field_number(w.trim_start_matches('-'));
    let flags = if w.starts_with('-') { flags + "-" } else { flags };
    (flags, width, p)
}

/// A width or precision: digits too many for a `usize` are as much too
/// large as a huge number; anything else that is not a number is 0.
fn field_number(s: &str) -> usize {
    match s.parse() {
        Ok(n) => n,
        Err(_) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => usize::MAX,
        Err(_) => 0,
    }
}

fn number(s: &str) -> Option<i64> {
    let t = s.trim();
    if let Some(c) = t.strip_prefix('\'').or_else(|| t.strip_prefix('"')) {
        return c.chars().next().map(|c| c as i64);
    }
    if t.is_empty() {
        return Some(0);
    }
    super::arith::parse_int(t)
}

/// `%q`: quote for reuse as shell input.
pub fn shell_quote(s: &str) -> String {
    if s.is_empty() {
        return "''".into();
    }
    let mut out = String::new();
    for c in s.chars() {
        if !(c.is_alphanumeric() || "-_./=:,+@%".contains(c)) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(f: &str, args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut it = args.iter();
        let mut out = String::new();
        loop {
            let before = it.len();
            format_once(f, &mut it, &mut out).expect("formats");
            if it.len() == 0 || it.len() == before {
                break;
            }
        }
        out
    }

    #[test]
    fn formats_like_printf() {
        assert_eq!(fmt("%s-%d\\n", &["a", "5"]), "a-5\n");
        assert_eq!(fmt("%5s|%-5s|", &["ab", "cd"]), "   ab|cd   |");
        assert_eq!(fmt("%03d %x %.2f", &["7", "255", "3.14159"]), "007 ff 3.14");
        assert_eq!(fmt("%s\\n", &["a", "b", "c"]), "a\nb\nc\n");
        assert_eq!(fmt("%%|%b", &["x\\ty"]), "%|x\ty");
    }

    #[test]
    fn echo_escapes() {
        assert_eq!(backslash_escapes("a\\nb\\0101", true), ("a\nbA".to_string(), false));
        assert_eq!(backslash_escapes("a\\cb", true), ("a".to_string(), true));
    }
}
