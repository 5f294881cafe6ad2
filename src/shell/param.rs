//! Parameter expansion: `$X`, `${X:-d}`, `${#X}`, `${X%p}`, `${X/a/b}`,
//! `${X:1:2}`, arrays and the special parameters.

use super::expand::{self, Builder};
use super::io::Io;
use super::parse::parse_options;
use super::state::MAX_VALUE;
use super::state::{Shell, Unwind};
use crate::pattern::{self, Trim};
use brush_parser::word::{
    Parameter, ParameterExpr as P, ParameterTestType, ParameterTransformOp as T,
    SpecialParameter as S, SubstringMatchKind,
};

/// An expanded parameter: one string, or several words (`$@`, `${a[@]}`).
#[derive(Debug, Clone)]
pub enum Value {
    Str(String),
    List(Vec<String>),
}

impl Value {
    fn joined(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::List(l) => l.join(" "),
        }
    }

    /// The strings, and whether they were a list: for work on each that
    /// awaits (which `map` cannot), put back together by [`Value::from_parts`].
    fn into_parts(self) -> (Vec<String>, bool) {
        match self {
            Value::Str(s) => (vec![s], false),
            Value::List(l) => (l, true),
        }
    }

    fn from_parts(mut items: Vec<String>, list: bool) -> Value {
        if list { Value::List(items) } else { Value::Str(items.pop().unwrap_or_default()) }
    }

    fn map(self, f: impl Fn(&str) -> String) -> Value {
        match self {
            Value::Str(s) => Value::Str(f(&s)),
            Value::List(l) => Value::List(l.iter().map(|s| f(s)).collect()),
        }
    }
}

fn name_of(p: &Parameter) -> String {
    match p {
        Parameter::Positional(n) => n.to_string(),
        Parameter::Special(s) => s.to_string(),
        Parameter::Named(n) => n.clone(),
        Parameter::NamedWithIndex { name, .. } | Parameter::NamedWithAllIndices { name, .. } => {
            name.clone()
        }
    }
}

/// `${x^^}` / `${x,,}`, or with a pattern (`${x^^[aeiou]}`) only the
/// characters it matches; of every element of a list. Yields as it goes
/// (a value may hold 64 MiB).
async fn change_case(
    sh: &mut Shell,
    v: Value,
    only: Option<&str>,
    upper: bool,
) -> Result<Value, Unwind> {
    let hit = only.map(pattern::char_matcher);
    let mut seen = 0usize;
    let mut one = async |sh: &mut Shell, s: &str| -> Result<String, Unwind> {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            seen += 1;
            if seen.is_multiple_of(1 << 16) {
                sh.pause().await?;
            }
            match (&hit, upper) {
                (Some(h), _) if !h(c) => out.push(c),
                (_, true) => out.extend(c.to_uppercase()),
                (_, false) => out.extend(c.to_lowercase()),
            }
        }
        Ok(out)
    };
    Ok(match v {
        Value::Str(s) => Value::Str(one(sh, &s).await?),
        Value::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            for s in &items {
                out.push(one(sh, s).await?);
            }
            Value::List(out)
        }
    })
}

/// What `"$*"` and `"${a[*]}"` join with: the first character of IFS (a
/// space when IFS is unset, nothing when it is empty).
fn star_separator(sh: &Shell) -> String {
    sh.get("IFS").map_or(" ".to_owned(), |i| i.chars().next().map(String::from).unwrap_or_default())
}

/// Looks a parameter up; `None` when unset.
async fn lookup(
    sh: &mut Shell,
    io: &Io,
    p: &Parameter,
    in_dq: bool,
) -> Result<Option<Value>, Unwind> {
    Ok(match p {
        Parameter::Positional(0) => Some(Value::Str(sh.arg0.clone())),
        Parameter::Positional(n) => sh.positional.get(*n as usize - 1).cloned().map(Value::Str),
        Parameter::Special(s) => Some(match s {
            S::AllPositionalParameters { concatenate: true } if in_dq => {
                Value::Str(sh.positional.join(&star_separator(sh)))
            }
            S::AllPositionalParameters { .. } => Value::List(sh.positional.to_vec()),
            S::PositionalParameterCount => Value::Str(sh.positional.len().to_string()),
            S::LastExitStatus => Value::Str(sh.status.to_string()),
            S::CurrentOptionFlags => {
                let o = sh.opts;
                let mut f = String::from("hB");
                for (on, c) in
                    [(o.errexit, 'e'), (o.nounset, 'u'), (o.xtrace, 'x'), (o.noglob, 'f')]
                {
                    if on {
                        f.push(c);
                    }
                }
                Value::Str(f + "c")
            }
            S::ProcessId => Value::Str(sh.pid.to_string()),
            S::LastBackgroundProcessId => match sh.jobs.last {
                Some(pid) => Value::Str(pid.to_string()),
                None => return Ok(None),
            },
            S::ShellName => Value::Str(sh.arg0.clone()),
        }),
        Parameter::Named(n) => match n.as_str() {
            "RANDOM" => Some(Value::Str((rand_u16() % 32768).to_string())),
            "LINENO" => Some(Value::Str(sh.line.to_string())),
            _ => sh.get(n).map(|v| Value::Str(v.to_owned())),
        },
        Parameter::NamedWithIndex { name, index } => {
            if !sh.vars.contains_key(name) {
                return Ok(None);
            }
            let idx = expand::string(sh, io, index).await?;
            if sh.is_assoc(name) {
                return Ok(sh
                    .vars
                    .get(name)
                    .and_then(|v| v.by_key(&idx))
                    .map(|s| Value::Str(s.to_owned())));
            }
            let i = match super::arith::eval(sh, &idx) {
                Ok(i) => i,
                Err(msg) => return Err(expand::fail(sh, io, &msg).await),
            };
            let var = sh.vars.get(name);
            let e = var.and_then(|v| match usize::try_from(i) {
                Ok(i) => v.element(i),
                Err(_) => v.element_from_end(i.unsigned_abs() as usize),
            });
            e.map(|s| Value::Str(s.to_owned()))
        }
        Parameter::NamedWithAllIndices { name, concatenate } => {
            let Some(var) = sh.vars.get(name) else { return Ok(Some(Value::List(Vec::new()))) };
            let items = var.items();
            if *concatenate && in_dq {
                Some(Value::Str(items.join(&star_separator(sh))))
            } else {
                Some(Value::List(items))
            }
        }
    })
}

fn rand_u16() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7);
    (t ^ (t >> 13)).wrapping_mul(2654435761) as u16
}

fn is_null(v: &Option<Value>, test: &ParameterTestType) -> bool {
    match v {
        None => true,
        Some(Value::Str(s)) => matches!(test, ParameterTestType::UnsetOrNull) && s.is_empty(),
        Some(Value::List(l)) => {
            matches!(test, ParameterTestType::UnsetOrNull) && l.iter().all(|s| s.is_empty())
        }
    }
}

async fn word_value(sh: &mut Shell, io: &Io, text: &str, in_dq: bool) -> Result<String, Unwind> {
    let mut b = Builder::default();
    expand::nested(sh, io, text, in_dq, &mut b).await?;
    Ok(b.into_fields().into_iter().map(|f| f.text).collect::<Vec<_>>().join(" "))
}

async fn pattern_value(sh: &mut Shell, io: &Io, text: &str) -> Result<String, Unwind> {
    let mut b = Builder::default();
    expand::nested(sh, io, text, false, &mut b).await?;
    let pat = b.into_fields().into_iter().map(|f| f.pat).collect::<Vec<_>>().join(" ");
    expand::pattern_fits(sh, io, pat).await
}

async fn resolve(
    sh: &mut Shell,
    io: &Io,
    p: &Parameter,
    indirect: bool,
    in_dq: bool,
) -> Result<Option<Value>, Unwind> {
    let v = lookup(sh, io, p, in_dq).await?;
    if !indirect {
        return Ok(v);
    }
    let Some(target) = v.map(|v| v.joined()) else { return Ok(None) };
    match indirect_target(&target) {
        Some(p2) => lookup(sh, io, &p2, in_dq).await,
        None => Err(expand::fail(sh, io, &format!("{target}: invalid variable name")).await),
    }
}

/// The parameter `${!ref}` names when `ref` holds `target` (anything), or
/// `None`. bash accepts only a name, `name[index]`, or a positional or
/// special parameter here, and that is checked before brush-parser sees the
/// text: its word grammar backtracks exponentially on some (found by
/// `fuzz/`), so an index with quotes or substitutions is refused too.
pub fn indirect_target(target: &str) -> Option<Parameter> {
    let (name, index) = target.split_at(target.find('[').unwrap_or(target.len()));
    let plausible = match name.as_bytes() {
        [c] if b"@*#?-$!".contains(c) => index.is_empty(),
        digits if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => index.is_empty(),
        [first, rest @ ..] => {
            (first.is_ascii_alphabetic() || *first == b'_')
                && rest.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
                && (index.is_empty()
                    || (index.ends_with(']')
                        && !index.contains(['$', '(', ')', '\'', '"', '`', '\\'])))
        }
        [] => false,
    };
    if !plausible {
        return None;
    }
    super::parse::guarded(target, || brush_parser::word::parse_parameter(target, &parse_options()))
}

/// Expands one `${…}` (or `$X`).
pub async fn expand(sh: &mut Shell, io: &Io, expr: &P, in_dq: bool) -> Result<Value, Unwind> {
    match expr {
        P::Parameter { parameter, indirect } => {
            let v = resolve(sh, io, parameter, *indirect, in_dq).await?;
            unset_check(sh, io, parameter, v).await
        }
        P::UseDefaultValues { parameter, indirect, test_type, default_value } => {
            let v = resolve(sh, io, parameter, *indirect, in_dq).await?;
            if is_null(&v, test_type) {
                let d = word_value(sh, io, default_value.as_deref().unwrap_or(""), in_dq).await?;
                return Ok(Value::Str(d));
            }
            Ok(v.unwrap_or(Value::Str(String::new())))
        }
        P::AssignDefaultValues { parameter, indirect, test_type, default_value } => {
            let v = resolve(sh, io, parameter, *indirect, in_dq).await?;
            if is_null(&v, test_type) {
                let d = word_value(sh, io, default_value.as_deref().unwrap_or(""), in_dq).await?;
                let name = name_of(parameter);
                if let Err(msg) = sh.set(&name, &d) {
                    return Err(expand::fail(sh, io, &msg).await);
                }
                return Ok(Value::Str(d));
            }
            Ok(v.unwrap_or(Value::Str(String::new())))
        }
        P::IndicateErrorIfNullOrUnset { parameter, indirect, test_type, error_message } => {
            let v = resolve(sh, io, parameter, *indirect, in_dq).await?;
            if is_null(&v, test_type) {
                let msg = match error_message {
                    Some(m) if !m.is_empty() => word_value(sh, io, m, in_dq).await?,
                    _ => "parameter null or not set".to_owned(),
                };
                let name = name_of(parameter);
                // A non-interactive bash exits 127 here, as for `set -u`.
                expand::fail(sh, io, &format!("{name}: {msg}")).await;
                return Err(Unwind::Exit(127));
            }
            Ok(v.unwrap_or(Value::Str(String::new())))
        }
        P::UseAlternativeValue { parameter, indirect, test_type, alternative_value } => {
            let v = resolve(sh, io, parameter, *indirect, in_dq).await?;
            if is_null(&v, test_type) {
                return Ok(Value::Str(String::new()));
            }
            Ok(Value::Str(
                word_value(sh, io, alternative_value.as_deref().unwrap_or(""), in_dq).await?,
            ))
        }
        P::ParameterLength { parameter, indirect } => {
            let v = resolve(sh, io, parameter, *indirect, in_dq).await?;
            let v = unset_check(sh, io, parameter, v).await?;
            Ok(Value::Str(match v {
                Value::Str(s) => s.chars().count().to_string(),
                Value::List(l) => l.len().to_string(),
            }))
        }
        P::RemoveSmallestSuffixPattern { parameter, indirect, pattern }
        | P::RemoveLargestSuffixPattern { parameter, indirect, pattern }
        | P::RemoveSmallestPrefixPattern { parameter, indirect, pattern }
        | P::RemoveLargestPrefixPattern { parameter, indirect, pattern } => {
            let how = match expr {
                P::RemoveSmallestSuffixPattern { .. } => Trim::ShortSuffix,
                P::RemoveLargestSuffixPattern { .. } => Trim::LongSuffix,
                P::RemoveSmallestPrefixPattern { .. } => Trim::ShortPrefix,
                _ => Trim::LongPrefix,
            };
            let v = resolve(sh, io, parameter, *indirect, in_dq).await?;
            let v = unset_check(sh, io, parameter, v).await?;
            let pat = pattern_value(sh, io, pattern.as_deref().unwrap_or("")).await?;
            let (items, list) = v.into_parts();
            let mut out = Vec::with_capacity(items.len());
            for s in &items {
                out.push(pattern::trim(s, &pat, how, sh.opts.glob.extglob).await);
            }
            Ok(Value::from_parts(out, list))
        }
        P::Substring { parameter, indirect, offset, length } => {
            let v = resolve(sh, io, parameter, *indirect, in_dq).await?;
            let v = unset_check(sh, io, parameter, v).await?;
            let off = arith(sh, io, &offset.value).await?;
            let len = match length {
                Some(l) => Some(arith(sh, io, &l.value).await?),
                None => None,
            };
            let positional =
                matches!(parameter, Parameter::Special(S::AllPositionalParameters { .. }));
            Ok(match v {
                Value::Str(s) => {
                    let chars: Vec<char> = s.chars().collect();
                    Value::Str(slice(&chars, off, len).iter().collect())
                }
                Value::List(l) => {
                    // `${@:1}` counts from $0.
                    let mut items = l;
                    if positional {
                        items.insert(0, sh.arg0.clone());
                    }
                    Value::List(slice(&items, off, len).to_vec())
                }
            })
        }
        P::Transform { parameter, indirect, op } => {
            let v = resolve(sh, io, parameter, *indirect, in_dq).await?;
            let v = unset_check(sh, io, parameter, v).await?;
            Ok(match op {
                T::ToUpperCase => v.map(|s| s.to_uppercase()),
                T::ToLowerCase => v.map(|s| s.to_lowercase()),
                T::Quoted => v.map(|s| format!("'{}'", s.replace('\'', "'\\''"))),
                T::CapitalizeInitial => v.map(capitalize),
                T::ExpandEscapeSequences => v.map(expand::ansi_c),
                _ => v,
            })
        }
        P::UppercaseFirstChar { parameter, indirect, .. } => {
            let v = resolve(sh, io, parameter, *indirect, in_dq).await?;
            Ok(unset_check(sh, io, parameter, v).await?.map(capitalize))
        }
        P::UppercasePattern { parameter, indirect, pattern }
        | P::LowercasePattern { parameter, indirect, pattern } => {
            let upper = matches!(expr, P::UppercasePattern { .. });
            let v = resolve(sh, io, parameter, *indirect, in_dq).await?;
            let v = unset_check(sh, io, parameter, v).await?;
            let only = match pattern.as_deref().filter(|p| !p.is_empty()) {
                Some(p) => Some(pattern_value(sh, io, p).await?),
                None => None,
            };
            change_case(sh, v, only.as_deref(), upper).await
        }
        P::LowercaseFirstChar { parameter, indirect, .. } => {
            let v = resolve(sh, io, parameter, *indirect, in_dq).await?;
            Ok(unset_check(sh, io, parameter, v).await?.map(|s| {
                let mut c = s.chars();
                c.next()
                    .map(|f| f.to_lowercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            }))
        }
        P::ReplaceSubstring { parameter, indirect, pattern, replacement, match_kind } => {
            let v = resolve(sh, io, parameter, *indirect, in_dq).await?;
            let v = unset_check(sh, io, parameter, v).await?;
            let pat = pattern_value(sh, io, pattern).await?;
            let with = word_value(sh, io, replacement.as_deref().unwrap_or(""), in_dq).await?;
            let (all, anchor) = match match_kind {
                SubstringMatchKind::Anywhere => (true, None),
                SubstringMatchKind::FirstOccurrence => (false, None),
                SubstringMatchKind::Prefix => (false, Some(true)),
                SubstringMatchKind::Suffix => (false, Some(false)),
            };
            // The result is bounded like any value, and by what the line may
            // still hold (every character of a long value replaced by a long
            // value is the square of both).
            let max = MAX_VALUE.min(sh.budget.room());
            let (items, list) = v.into_parts();
            let mut out = Vec::with_capacity(items.len());
            for s in &items {
                match pattern::replace(s, &pat, &with, all, anchor, max, sh.opts.glob.extglob).await
                {
                    Some(r) => out.push(r),
                    None => {
                        let msg = format!(
                            "{}: substitution result too large (over {} MiB)",
                            name_of(parameter),
                            max >> 20
                        );
                        return Err(expand::fail(sh, io, &msg).await);
                    }
                }
            }
            Ok(Value::from_parts(out, list))
        }
        P::VariableNames { prefix, .. } => {
            let mut names: Vec<String> =
                sh.vars.keys().filter(|k| k.starts_with(prefix.as_str())).cloned().collect();
            names.sort();
            Ok(Value::List(names))
        }
        P::MemberKeys { variable_name, .. } => {
            Ok(Value::List(sh.vars.get(variable_name).map_or(Vec::new(), |v| v.keys())))
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

fn slice<T>(items: &[T], off: i64, len: Option<i64>) -> &[T] {
    let n = items.len() as i64;
    let start = if off < 0 { (n + off).max(0) } else { off.min(n) };
    let end = match len {
        None => n,
        Some(l) if l < 0 => (n + l).max(start),
        Some(l) => (start + l).min(n),
    };
    &items[start as usize..end.max(start) as usize]
}

async fn arith(sh: &mut Shell, io: &Io, text: &str) -> Result<i64, Unwind> {
    let t = expand::string(sh, io, text).await?;
    match super::arith::eval(sh, &t) {
        Ok(v) => Ok(v),
        Err(msg) => Err(expand::fail(sh, io, &msg).await),
    }
}

/// `set -u`: an unset parameter is an error (except `$@` and `$*`).
async fn unset_check(
    sh: &mut Shell,
    io: &Io,
    p: &Parameter,
    v: Option<Value>,
) -> Result<Value, Unwind> {
    match v {
        Some(v) => Ok(v),
        None if sh.opts.nounset && !matches!(p, Parameter::Special(_)) => {
            // bash names a positional parameter `$1` here.
            let name = match p {
                Parameter::Positional(n) => format!("${n}"),
                _ => name_of(p),
            };
            expand::fail(sh, io, &format!("{name}: unbound variable")).await;
            Err(Unwind::Exit(127))
        }
        None => Ok(Value::Str(String::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indirect_targets_are_parameter_names() {
        for ok in ["HOME", "_x1", "arr[1]", "arr[i+1]", "1", "12", "@", "#"] {
            assert!(indirect_target(ok).is_some(), "{ok:?}");
        }
        for bad in [
            "",
            "a b",
            "1a",
            "a[1",
            "$(x)",
            "@x",
            "ca[+\"cho  ['a($(($((\0END",
            "a[$(x)]",
            "echo['_'A??$(($((]",
        ] {
            assert!(indirect_target(bad).is_none(), "{bad:?}");
        }
    }
}
