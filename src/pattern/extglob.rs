//! Extended patterns (`shopt -s extglob`): `?(a|b)`, `*(…)`, `+(…)`,
//! `@(…)` and `!(…)`, matched in linear time like the plain ones.
//!
//! A pattern compiles to a Thompson NFA over the plain tokens. `!(p)` is
//! the one operator no NFA expresses by itself (it is a complement): it
//! becomes a deterministic machine for `@(p)`, built lazily, state by state,
//! as the text asks for them, and a thread inside it may leave whenever
//! that machine is not accepting (the text so far is not a `p`). A thread
//! is then a plain NFA position or a (machine, state) pair, and the search
//! is the same Pike VM as the plain one: every live thread at once, the
//! leftmost start kept per thread, O(text × threads) steps whatever the
//! input, in slices, so the shell yields in a long search.

use super::{Scan, Tok, compile_class, tok_matches};
use std::collections::{BTreeMap, HashMap};

/// What the `!(…)` machines of one pattern may hold in all (threads in
/// their states, plus remembered moves); past this a search finds nothing
/// (no pattern an agent writes comes near it). About 16 MiB.
const MAX_DFA_SIZE: usize = 1 << 20;

/// Groups nested deeper than this are taken literally (the parser is
/// recursive, and a pattern is input).
const MAX_NESTING: usize = 64;

/// Whether `pattern` has an extended group (`?(`, `*(`, `+(`, `@(`,
/// `!(` not escaped).
pub fn has_extglob(pattern: &str) -> bool {
    let b = pattern.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'?' | b'*' | b'+' | b'@' | b'!' if b[i + 1] == b'(' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

#[derive(Clone, Debug)]
enum Ast {
    Tok(Tok),
    Star,
    Group(char, Vec<Vec<Ast>>),
}

/// Parses a pattern; a group without its `)` is taken literally.
fn parse(chars: &[char]) -> Vec<Ast> {
    let mut i = 0;
    let seq = parse_seq(chars, &mut i, 0);
    debug_assert_eq!(i, chars.len());
    seq
}

/// A sequence up to the end, or (inside a group: `depth` > 0) up to `|`
/// or `)`.
fn parse_seq(chars: &[char], i: &mut usize, depth: usize) -> Vec<Ast> {
    let mut out = Vec::new();
    while *i < chars.len() {
        let c = chars[*i];
        if depth > 0 && (c == '|' || c == ')') {
            break;
        }
        match c {
            '\\' if *i + 1 < chars.len() => {
                out.push(Ast::Tok(Tok::Lit(chars[*i + 1])));
                *i += 2;
                continue;
            }
            '?' | '*' | '+' | '@' | '!'
                if chars.get(*i + 1) == Some(&'(') && depth < MAX_NESTING =>
            {
                if let Some((alts, next)) = parse_group(chars, *i + 2, depth + 1) {
                    out.push(Ast::Group(c, alts));
                    *i = next;
                    continue;
                }
                out.push(Ast::Tok(Tok::Lit(c)));
            }
            '*' => out.push(Ast::Star),
            '?' => out.push(Ast::Tok(Tok::Any)),
            '[' => {
                if let Some((tok, next)) = compile_class(chars, *i) {
                    out.push(Ast::Tok(tok));
                    *i = next;
                    continue;
                }
                out.push(Ast::Tok(Tok::Lit('[')));
            }
            c => out.push(Ast::Tok(Tok::Lit(c))),
        }
        *i += 1;
    }
    out
}

/// The alternatives of a group whose body starts at `start`, and the index
/// after its `)`; `None` when it does not close.
fn parse_group(chars: &[char], start: usize, depth: usize) -> Option<(Vec<Vec<Ast>>, usize)> {
    let mut i = start;
    let mut alts = Vec::new();
    loop {
        alts.push(parse_seq(chars, &mut i, depth));
        match chars.get(i) {
            Some('|') => i += 1,
            Some(')') => return Some((alts, i + 1)),
            _ => return None,
        }
    }
}

/// The pattern read backwards (for suffix searches): `!(p)` reversed is
/// `!(p reversed)`, as complement and reversal commute.
fn reverse(seq: &[Ast]) -> Vec<Ast> {
    seq.iter()
        .rev()
        .map(|a| match a {
            Ast::Group(k, alts) => Ast::Group(*k, alts.iter().map(|s| reverse(s)).collect()),
            other => other.clone(),
        })
        .collect()
}

#[derive(Clone, Debug)]
enum Inst {
    /// Consumes a character the token matches.
    Tok(Tok, usize),
    Split(usize, usize),
    Jmp(usize),
    /// Enters `!(…)` machine `k`.
    Not(usize),
    Match,
}

/// A thread: a plain NFA position, or a state of a `!(…)` machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Th {
    At(usize),
    In(usize, usize),
}

/// The deterministic machine of one `!(p)`: states are sets of threads of
/// `@(p)`'s NFA, made as the text reaches them.
struct Machine {
    start: usize,
    accept: usize,
    exit: usize,
    states: Vec<Vec<Th>>,
    accepting: Vec<bool>,
    index: HashMap<Vec<Th>, usize>,
    moves: HashMap<(usize, char), usize>,
}

/// A compiled extended pattern.
pub struct Prog {
    insts: Vec<Inst>,
    start: usize,
    accept: usize,
    machines: Vec<Machine>,
    /// What the machines hold (see [`MAX_DFA_SIZE`]).
    made: usize,
}

impl Prog {
    /// `pattern` compiled, read backwards when `backward`.
    pub fn new(pattern: &str, backward: bool) -> Self {
        let chars: Vec<char> = pattern.chars().collect();
        let mut ast = parse(&chars);
        if backward {
            ast = reverse(&ast);
        }
        let mut p = Prog { insts: Vec::new(), start: 0, accept: 0, machines: Vec::new(), made: 0 };
        p.accept = p.push(Inst::Match);
        p.start = p.seq(&ast, p.accept);
        p
    }

    fn push(&mut self, i: Inst) -> usize {
        self.insts.push(i);
        self.insts.len() - 1
    }

    fn seq(&mut self, seq: &[Ast], mut next: usize) -> usize {
        for a in seq.iter().rev() {
            next = self.piece(a, next);
        }
        next
    }

    /// Any one of the alternatives, then `next`.
    fn alts(&mut self, alts: &[Vec<Ast>], next: usize) -> usize {
        let entries: Vec<usize> = alts.iter().map(|s| self.seq(s, next)).collect();
        let mut entry = *entries.last().unwrap_or(&next);
        for &e in entries.iter().rev().skip(1) {
            entry = self.push(Inst::Split(e, entry));
        }
        entry
    }

    fn piece(&mut self, a: &Ast, next: usize) -> usize {
        match a {
            Ast::Tok(t) => self.push(Inst::Tok(t.clone(), next)),
            Ast::Star => {
                let l = self.push(Inst::Jmp(next));
                let any = self.push(Inst::Tok(Tok::Any, l));
                self.insts[l] = Inst::Split(any, next);
                l
            }
            Ast::Group('@', alts) => self.alts(alts, next),
            Ast::Group('?', alts) => {
                let body = self.alts(alts, next);
                self.push(Inst::Split(body, next))
            }
            Ast::Group('*', alts) => {
                let l = self.push(Inst::Jmp(next));
                let body = self.alts(alts, l);
                self.insts[l] = Inst::Split(body, next);
                l
            }
            Ast::Group('+', alts) => {
                let l = self.push(Inst::Jmp(next));
                let body = self.alts(alts, l);
                self.insts[l] = Inst::Split(body, next);
                body
            }
            Ast::Group(_, alts) => {
                let accept = self.push(Inst::Match);
                let start = self.alts(alts, accept);
                self.machines.push(Machine {
                    start,
                    accept,
                    exit: next,
                    states: Vec::new(),
                    accepting: Vec::new(),
                    index: HashMap::new(),
                    moves: HashMap::new(),
                });
                self.push(Inst::Not(self.machines.len() - 1))
            }
        }
    }

    /// Adds `t` (and what it reaches without a character) to `set` with
    /// start `st`, keeping the leftmost start per thread.
    fn close(&mut self, set: &mut BTreeMap<Th, usize>, t: Th, st: usize) -> Option<()> {
        let mut work = vec![(t, st)];
        while let Some((t, st)) = work.pop() {
            if set.get(&t).is_some_and(|&old| old <= st) {
                continue;
            }
            set.insert(t, st);
            match t {
                Th::At(i) => match self.insts[i] {
                    Inst::Split(a, b) => {
                        work.push((Th::At(b), st));
                        work.push((Th::At(a), st));
                    }
                    Inst::Jmp(a) => work.push((Th::At(a), st)),
                    Inst::Not(k) => {
                        let d = self.initial(k)?;
                        work.push((Th::In(k, d), st));
                    }
                    Inst::Tok(..) | Inst::Match => {}
                },
                Th::In(k, d) => {
                    if !self.machines[k].accepting[d] {
                        work.push((Th::At(self.machines[k].exit), st));
                    }
                }
            }
        }
        Some(())
    }

    /// The threads `set` moves to on `c`.
    fn step(&mut self, set: &BTreeMap<Th, usize>, c: char) -> Option<BTreeMap<Th, usize>> {
        let mut next = BTreeMap::new();
        for (&t, &st) in set {
            match t {
                Th::At(i) => {
                    if let Inst::Tok(tok, to) = &self.insts[i]
                        && tok_matches(tok, c)
                    {
                        let to = *to;
                        self.close(&mut next, Th::At(to), st)?;
                    }
                }
                Th::In(k, d) => {
                    let e = self.advance(k, d, c)?;
                    self.close(&mut next, Th::In(k, e), st)?;
                }
            }
        }
        Some(next)
    }

    /// Machine `k`'s state for the empty text.
    fn initial(&mut self, k: usize) -> Option<usize> {
        let mut set = BTreeMap::new();
        self.close(&mut set, Th::At(self.machines[k].start), 0)?;
        self.intern(k, set)
    }

    fn intern(&mut self, k: usize, set: BTreeMap<Th, usize>) -> Option<usize> {
        let key: Vec<Th> = set.into_keys().collect();
        if let Some(&d) = self.machines[k].index.get(&key) {
            return Some(d);
        }
        if self.made + key.len() + 1 > MAX_DFA_SIZE {
            return None;
        }
        self.made += key.len() + 1;
        let m = &mut self.machines[k];
        let accepting = key.contains(&Th::At(m.accept));
        m.states.push(key.clone());
        m.accepting.push(accepting);
        m.index.insert(key, m.states.len() - 1);
        Some(m.states.len() - 1)
    }

    /// Machine `k`'s move from state `d` on `c`.
    fn advance(&mut self, k: usize, d: usize, c: char) -> Option<usize> {
        if let Some(&e) = self.machines[k].moves.get(&(d, c)) {
            return Some(e);
        }
        let set: BTreeMap<Th, usize> = self.machines[k].states[d].iter().map(|&t| (t, 0)).collect();
        let next = self.step(&set, c)?;
        let e = self.intern(k, next)?;
        if self.made < MAX_DFA_SIZE {
            self.made += 1;
            self.machines[k].moves.insert((d, c), e);
        }
        Some(e)
    }
}

/// A search of `text` for an extended pattern; the same contract as the
/// plain `Search` (positions are byte offsets, counted from the end when
/// `backward`).
pub struct ExtSearch<'a> {
    prog: &'a mut Prog,
    pub(super) scan: Scan<'a>,
    threads: BTreeMap<Th, usize>,
    /// A machine grew past [`MAX_DFA_SIZE`]: the search finds nothing.
    failed: bool,
}

impl<'a> ExtSearch<'a> {
    pub fn new(prog: &'a mut Prog, text: &'a str, from: usize, backward: bool) -> Self {
        ExtSearch {
            prog,
            scan: Scan::new(text, from, backward),
            threads: BTreeMap::new(),
            failed: false,
        }
    }

    /// As the plain search's `run`: `Some(result)` when over, `None` when
    /// there is more to do after `fuel` steps.
    pub fn run(&mut self, mut fuel: usize) -> Option<Option<(usize, usize)>> {
        let len = self.scan.text.len();
        loop {
            if self.failed {
                return Some(None);
            }
            let pos = self.scan.pos;
            if self.scan.starts_at(pos) {
                let start = Th::At(self.prog.start);
                if self.prog.close(&mut self.threads, start, pos).is_none() {
                    self.failed = true;
                    continue;
                }
            }
            if let Some(&s) = self.threads.get(&Th::At(self.prog.accept))
                && self.scan.offer(s, pos)
            {
                return Some(self.scan.best);
            }
            if let Some((bs, _)) = self.scan.best {
                self.threads.retain(|_, st| *st <= bs);
            }
            let alive = self.threads.keys().any(|t| *t != Th::At(self.prog.accept));
            let more = !self.scan.anchored && self.scan.best.is_none();
            if pos >= len || (!alive && !more) {
                return Some(self.scan.best);
            }
            let Some(c) = self.scan.char_at(pos) else { return Some(self.scan.best) };
            let work = self.threads.len() + 1;
            match self.prog.step(&self.threads, c) {
                Some(next) => self.threads = next,
                None => {
                    self.failed = true;
                    continue;
                }
            }
            self.scan.pos = pos + c.len_utf8();
            fuel = fuel.saturating_sub(work);
            if fuel == 0 {
                return None;
            }
        }
    }
}

/// Whether `text` matches all of the extended `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let mut prog = Prog::new(pattern, false);
    let mut s = ExtSearch::new(&mut prog, text, 0, false);
    matches!(s.run(usize::MAX), Some(Some((0, e))) if e == text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_groups() {
        let yes = |p: &str, t: &str| assert!(matches(p, t), "{p} should match {t}");
        let no = |p: &str, t: &str| assert!(!matches(p, t), "{p} should not match {t}");
        yes("*.@(md|toml)", "README.md");
        yes("*.@(md|toml)", "Cargo.toml");
        no("*.@(md|toml)", "main.rs");
        yes("!(lib).rs", "main.rs");
        no("!(lib).rs", "lib.rs");
        yes("!(*.md)", "a.rs");
        no("!(*.md)", "keep.md");
        yes("+([a-z])+([0-9])", "abc123");
        no("+([a-z])+([0-9])", "abc");
        yes("?(x)y", "y");
        yes("?(x)y", "xy");
        no("?(x)y", "xxy");
        yes("*(ab)", "");
        yes("*(ab)", "ababab");
        no("*(ab)", "aba");
        yes("a!(b)c", "ac");
        yes("a!(b)c", "abbc");
        no("a!(b)c", "abc");
        yes("!(!(x))", "x");
        no("!(!(x))", "y");
        yes("\\@(x)", "@(x)");
        yes("@(a", "@(a");
    }

    #[test]
    fn deep_nesting_and_large_machines_are_bounded() {
        // Nested past MAX_NESTING: the rest is literal, and nothing recurses
        // without end.
        let deep = "@(".repeat(100_000) + "x" + &")".repeat(100_000);
        assert!(!matches(&deep, "x"));
        // A complement over a pattern whose machine would be huge stops at
        // its bound instead of growing without end.
        let wide = format!("!({})", "*a*b".repeat(2000));
        let text = "ab".repeat(5000);
        let mut prog = Prog::new(&wide, false);
        let mut s = ExtSearch::new(&mut prog, &text, 0, false);
        assert_eq!(s.run(usize::MAX), Some(None));
        assert!(s.failed, "the machine should have hit its bound");
        assert!(s.prog.made <= MAX_DFA_SIZE);
    }

    #[test]
    fn backward_is_the_reverse() {
        let rev = |s: &str| s.chars().rev().collect::<String>();
        for (p, t) in [("!(lib).rs", "main.rs"), ("+(ab)c", "ababc"), ("x!(y*)", "xz")] {
            let mut prog = Prog::new(p, true);
            let mut s = ExtSearch::new(&mut prog, t, 0, true);
            let got = matches!(s.run(usize::MAX), Some(Some((0, e))) if e == t.len());
            assert_eq!(got, matches(p, t), "{p} on {t}");
            assert!(got, "{p} on {}", rev(t));
        }
    }

    #[test]
    fn long_texts_take_linear_steps() {
        let text = "a".repeat(200_000) + "b";
        let mut prog = Prog::new("*(a|aa)!(c)", false);
        let mut s = ExtSearch::new(&mut prog, &text, 0, false);
        let mut slices = 0;
        while s.run(1 << 16).is_none() {
            slices += 1;
        }
        // A few threads per character: bounded slices, not a quadratic count.
        assert!(slices < 200, "{slices} slices");
    }
}
