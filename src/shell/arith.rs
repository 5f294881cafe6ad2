//! Arithmetic: `$(( … ))`, `(( … ))`, `for (( … ))`, `let`. The text is
//! expanded first (by the caller), then parsed by brush-parser and
//! evaluated here over 64-bit wrapping integers, as bash does.

use super::state::Shell;
use brush_parser::ast::{
    ArithmeticExpr as E, ArithmeticTarget, BinaryOperator as B, UnaryAssignmentOperator as UA,
    UnaryOperator as U,
};

/// Nesting allowed when variables hold expressions that name variables.
const MAX_INDIRECTION: usize = 32;

/// Evaluates expanded arithmetic text; the error is bash's message body.
pub fn eval(sh: &mut Shell, text: &str) -> Result<i64, String> {
    eval_depth(sh, text, 0)
}

fn eval_depth(sh: &mut Shell, text: &str, depth: usize) -> Result<i64, String> {
    if depth > MAX_INDIRECTION {
        return Err(format!("{text}: expression recursion level exceeded"));
    }
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(0);
    }
    let expr = parse(trimmed)?;
    Eval { sh, depth }.eval(&expr)
}

/// Parses trimmed, expanded arithmetic text; the error is bash's message body.
pub fn parse(trimmed: &str) -> Result<E, String> {
    use super::parse::{Refused, checked};
    match checked(trimmed, || brush_parser::arithmetic::parse(trimmed)) {
        Ok(expr) => Ok(expr),
        Err(Refused::Invalid) => {
            Err(format!("{trimmed}: syntax error in expression (error token is \"{trimmed}\")"))
        }
        Err(why) => Err(format!("{trimmed}: {}", why.reason())),
    }
}

/// Parses an integer literal as bash does: `0x1f`, `017`, `2#101`, `42`.
pub fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if body.is_empty() {
        return None;
    }
    let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some((base, digits)) = body.split_once('#') {
        let base: u32 = base.parse().ok()?;
        if !(2..=36).contains(&base) {
            return None;
        }
        i64::from_str_radix(digits, base).ok()?
    } else if body.len() > 1 && body.starts_with('0') {
        i64::from_str_radix(&body[1..], 8).ok()?
    } else {
        body.parse().ok()?
    };
    Some(if neg { v.wrapping_neg() } else { v })
}

/// An associative array's key in arithmetic (`count[$w]`, `m[key]`): the
/// subscript's text, as bash takes it, not its value.
fn key_of(i: &E) -> String {
    match i {
        E::Reference(ArithmeticTarget::Variable(n)) => n.clone(),
        other => other.to_string(),
    }
}

struct Eval<'a> {
    sh: &'a mut Shell,
    depth: usize,
}

impl Eval<'_> {
    fn read(&mut self, t: &ArithmeticTarget) -> Result<i64, String> {
        if let ArithmeticTarget::ArrayElement(n, i) = t
            && self.sh.is_assoc(n)
        {
            let raw = self.sh.vars.get(n).and_then(|v| v.by_key(&key_of(i))).map(str::to_owned);
            return self.number(n, raw);
        }
        let (name, index) = match t {
            ArithmeticTarget::Variable(n) => (n.clone(), None),
            ArithmeticTarget::ArrayElement(n, i) => (n.clone(), Some(self.eval(i)?)),
        };
        let raw = match index {
            None => self.sh.get(&name).map(str::to_owned),
            Some(i) => self.sh.vars.get(&name).and_then(|v| {
                let e = match usize::try_from(i) {
                    Ok(i) => v.element(i),
                    Err(_) => v.element_from_end(i.unsigned_abs() as usize),
                };
                e.map(str::to_owned)
            }),
        };
        self.number(&name, raw)
    }

    /// A variable's value as a number (unset or empty: 0; otherwise an
    /// expression of its own).
    fn number(&mut self, name: &str, raw: Option<String>) -> Result<i64, String> {
        let Some(raw) = raw else {
            if self.sh.opts.nounset {
                return Err(format!("{name}: unbound variable"));
            }
            return Ok(0);
        };
        if raw.trim().is_empty() {
            return Ok(0);
        }
        match parse_int(&raw) {
            Some(v) => Ok(v),
            None => eval_depth(self.sh, &raw, self.depth + 1),
        }
    }

    fn write(&mut self, t: &ArithmeticTarget, v: i64) -> Result<i64, String> {
        match t {
            ArithmeticTarget::Variable(n) => self.sh.set(n, &v.to_string())?,
            ArithmeticTarget::ArrayElement(n, i) if self.sh.is_assoc(n) => {
                self.sh.set_key(n, key_of(i), v.to_string())?;
            }
            ArithmeticTarget::ArrayElement(n, i) => {
                let i = usize::try_from(self.eval(i)?)
                    .map_err(|_| format!("{n}: bad array subscript"))?;
                let i = super::state::array_index(n, i)?;
                self.sh.set_element(n, i, v.to_string())?;
            }
        }
        Ok(v)
    }

    fn eval(&mut self, e: &E) -> Result<i64, String> {
        Ok(match e {
            E::Literal(v) => *v,
            E::Reference(t) => self.read(t)?,
            E::UnaryOp(op, x) => {
                let v = self.eval(x)?;
                match op {
                    U::UnaryPlus => v,
                    U::UnaryMinus => v.wrapping_neg(),
                    U::BitwiseNot => !v,
                    U::LogicalNot => (v == 0) as i64,
                }
            }
            E::BinaryOp(B::LogicalAnd, a, b) => (self.eval(a)? != 0 && self.eval(b)? != 0) as i64,
            E::BinaryOp(B::LogicalOr, a, b) => (self.eval(a)? != 0 || self.eval(b)? != 0) as i64,
            E::BinaryOp(op, a, b) => {
                let x = self.eval(a)?;
                let y = self.eval(b)?;
                binary(*op, x, y)?
            }
            E::Conditional(c, a, b) => {
                if self.eval(c)? != 0 {
                    self.eval(a)?
                } else {
                    self.eval(b)?
                }
            }
            E::Assignment(t, x) => {
                let v = self.eval(x)?;
                self.write(t, v)?
            }
            E::BinaryAssignment(op, t, x) => {
                let cur = self.read(t)?;
                let y = self.eval(x)?;
                let v = binary(*op, cur, y)?;
                self.write(t, v)?
            }
            E::UnaryAssignment(op, t) => {
                let cur = self.read(t)?;
                match op {
                    UA::PrefixIncrement => self.write(t, cur.wrapping_add(1))?,
                    UA::PrefixDecrement => self.write(t, cur.wrapping_sub(1))?,
                    UA::PostfixIncrement => {
                        self.write(t, cur.wrapping_add(1))?;
                        cur
                    }
                    UA::PostfixDecrement => {
                        self.write(t, cur.wrapping_sub(1))?;
                        cur
                    }
                }
            }
        })
    }
}

fn binary(op: B, x: i64, y: i64) -> Result<i64, String> {
    Ok(match op {
        B::Power => {
            if y < 0 {
                return Err("exponent less than 0".into());
            }
            x.wrapping_pow(y.min(u32::MAX as i64) as u32)
        }
        B::Multiply => x.wrapping_mul(y),
        B::Divide | B::Modulo if y == 0 => return Err("division by 0".into()),
        B::Divide => x.wrapping_div(y),
        B::Modulo => x.wrapping_rem(y),
        B::Comma => y,
        B::Add => x.wrapping_add(y),
        B::Subtract => x.wrapping_sub(y),
        B::ShiftLeft => x.wrapping_shl(y as u32),
        B::ShiftRight => x.wrapping_shr(y as u32),
        B::LessThan => (x < y) as i64,
        B::LessThanOrEqualTo => (x <= y) as i64,
        B::GreaterThan => (x > y) as i64,
        B::GreaterThanOrEqualTo => (x >= y) as i64,
        B::Equals => (x == y) as i64,
        B::NotEquals => (x != y) as i64,
        B::BitwiseAnd => x & y,
        B::BitwiseXor => x ^ y,
        B::BitwiseOr => x | y,
        B::LogicalAnd => (x != 0 && y != 0) as i64,
        B::LogicalOr => (x != 0 || y != 0) as i64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_literals() {
        assert_eq!(parse_int("42"), Some(42));
        assert_eq!(parse_int("0x1f"), Some(31));
        assert_eq!(parse_int("017"), Some(15));
        assert_eq!(parse_int("2#101"), Some(5));
        assert_eq!(parse_int("-3"), Some(-3));
        assert_eq!(parse_int("abc"), None);
    }

    #[test]
    fn deeply_nested_subscripts_parse() {
        // brush-parser's arithmetic grammar parsed a subscript again for each
        // assignment operator, exponential in the nesting (eight unclosed
        // `c[` took minutes, found by `fuzz/`), until our fork memoized it.
        assert!(parse("a[b[c[1]]] + 1").is_ok());
        let deep = format!("{}1{}", "a[".repeat(40), "]".repeat(40));
        assert!(parse(&deep).is_ok());
        let unclosed = "c[h| (x | ".repeat(40);
        let e = parse(&unclosed).expect_err("unclosed");
        assert!(e.contains("syntax error"), "{e}");
    }
}
