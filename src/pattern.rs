//! Shell patterns: matching (`case`, `[[ == ]]`, `${X%pat}`) and pathname
//! expansion against the workspace. The shell's, and also `git tag -l`'s
//! (a host command), which is why this leaf sits beside `shell`, not in it.
//!
//! A pattern arrives as text in which quoted characters are escaped with a
//! backslash (expansion does that), so `"*".txt` is `\*.txt`. Directory
//! listings go through the workspace capability only.

mod extglob;

pub use extglob::has_extglob;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Lit(char),
    Any,
    Star,
    /// `[…]`: negated, and ranges (single chars are `(c, c)`).
    Class(bool, Vec<(char, char)>),
}

fn class_name(name: &str, c: char) -> bool {
    match name {
        "alpha" => c.is_alphabetic(),
        "digit" => c.is_ascii_digit(),
        "alnum" => c.is_alphanumeric(),
        "upper" => c.is_uppercase(),
        "lower" => c.is_lowercase(),
        "space" => c.is_whitespace(),
        "punct" => c.is_ascii_punctuation(),
        "xdigit" => c.is_ascii_hexdigit(),
        _ => false,
    }
}

fn compile(p: &str) -> Vec<Tok> {
    let chars: Vec<char> = p.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                out.push(Tok::Lit(chars[i + 1]));
                i += 2;
                continue;
            }
            '*' => out.push(Tok::Star),
            '?' => out.push(Tok::Any),
            '[' => {
                if let Some((tok, next)) = compile_class(&chars, i) {
                    out.push(tok);
                    i = next;
                    continue;
                }
                out.push(Tok::Lit('['));
            }
            c => out.push(Tok::Lit(c)),
        }
        i += 1;
    }
    out
}

/// Parses `[…]` starting at `start`; returns the token and the index after `]`.
fn compile_class(chars: &[char], start: usize) -> Option<(Tok, usize)> {
    let mut i = start + 1;
    let neg = matches!(chars.get(i), Some('!') | Some('^'));
    if neg {
        i += 1;
    }
    let mut items = Vec::new();
    let mut first = true;
    while i < chars.len() {
        let c = chars[i];
        if c == ']' && !first {
            return Some((Tok::Class(neg, items), i + 1));
        }
        first = false;
        if c == '[' && chars.get(i + 1) == Some(&':') {
            // Counted in chars, not bytes: `i` indexes `chars`.
            if let Some(len) = chars[i + 2..].windows(2).position(|w| w == [':', ']']) {
                let name: String = chars[i + 2..i + 2 + len].iter().collect();
                // Named classes are encoded as a range from NUL to a marker.
                for ch in (0u8..128).map(char::from).filter(|&ch| class_name(&name, ch)) {
                    items.push((ch, ch));
                }
                i += 2 + len + 2;
                continue;
            }
        }
        let c = if c == '\\' && i + 1 < chars.len() {
            i += 1;
            chars[i]
        } else {
            c
        };
        if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|&e| e != ']') {
            items.push((c, chars[i + 2]));
            i += 3;
        } else {
            items.push((c, c));
            i += 1;
        }
    }
    None
}

fn tok_matches(t: &Tok, c: char) -> bool {
    match t {
        Tok::Lit(l) => *l == c,
        Tok::Any => true,
        Tok::Star => true,
        Tok::Class(neg, items) => items.iter().any(|&(a, b)| a <= c && c <= b) != *neg,
    }
}

/// NFA steps (a state times a character) between two yields of a search
/// in the shell: about a millisecond of work.
const SLICE: usize = 1 << 16;

/// No thread in this state.
const DEAD: usize = usize::MAX;

/// Which match a search wants.
#[derive(Clone, Copy, PartialEq)]
enum Want {
    /// The first end reached (the shortest match from an anchored start).
    Shortest,
    /// The leftmost start, then the longest match from it.
    Longest,
}

/// What a search looks for and how far it got, the same for both engines
/// (the plain [`Search`] and the extended one). Positions are byte offsets
/// into `text`; a backward search walks from the end and counts from it.
struct Scan<'a> {
    text: &'a str,
    backward: bool,
    /// Threads start only at `from` (else at every position).
    anchored: bool,
    want: Want,
    /// An empty match does not count.
    nonempty: bool,
    from: usize,
    /// Offset (from the search's own end) reached.
    pos: usize,
    best: Option<(usize, usize)>,
}

impl<'a> Scan<'a> {
    fn new(text: &'a str, from: usize, backward: bool) -> Self {
        let (anchored, want, nonempty, pos, best) = (true, Want::Longest, false, from, None);
        Scan { text, backward, anchored, want, nonempty, from, pos, best }
    }

    /// The next character from offset `pos` on.
    fn char_at(&self, pos: usize) -> Option<char> {
        if self.backward {
            self.text[..self.text.len() - pos].chars().next_back()
        } else {
            self.text[pos..].chars().next()
        }
    }

    /// Whether new threads start at `pos`.
    fn starts_at(&self, pos: usize) -> bool {
        self.best.is_none() && (!self.anchored || pos == self.from)
    }

    /// Offers a match from `start` to `end`: leftmost first, and from the
    /// same start the later end. `true` when the search is over (the
    /// shortest was wanted, and this match taken).
    fn offer(&mut self, start: usize, end: usize) -> bool {
        if (self.nonempty && end <= start) || self.best.is_some_and(|(bs, _)| start > bs) {
            return false;
        }
        self.best = Some((start, end));
        self.want == Want::Shortest
    }
}

/// A search of `text` for the pattern's tokens, run as an NFA whose states
/// are positions in the token list (state `j`: tokens `..j` matched), with
/// every live thread tracked at once (Thompson's construction, with the
/// start of the leftmost thread kept per state, as a Pike VM does). It
/// takes O(text × pattern) steps whatever the input, where the classic
/// backtracking match takes exponential or, for `${x##*z}`, cubic time,
/// and it can stop after a slice of work and go on later, so the shell
/// yields in the middle of a long search.
///
/// Positions are byte offsets into `text`. A backward search walks from
/// the end with the tokens reversed (for suffixes), and reports positions
/// counted from the end.
struct Search<'a> {
    toks: Vec<Tok>,
    scan: Scan<'a>,
    starts: Vec<usize>,
    next: Vec<usize>,
}

impl<'a> Search<'a> {
    fn new(toks: &[Tok], text: &'a str, from: usize, backward: bool) -> Self {
        let mut toks = toks.to_vec();
        if backward {
            toks.reverse();
        }
        let m = toks.len();
        Search {
            toks,
            scan: Scan::new(text, from, backward),
            starts: vec![DEAD; m + 1],
            next: vec![DEAD; m + 1],
        }
    }

    /// Follows the stars' empty moves (a star may match nothing).
    fn close(toks: &[Tok], set: &mut [usize]) {
        for j in 0..toks.len() {
            if set[j] != DEAD && toks[j] == Tok::Star && set[j] < set[j + 1] {
                set[j + 1] = set[j];
            }
        }
    }

    /// Runs for about `fuel` steps: `Some(result)` when the search is over,
    /// `None` when it has more to do.
    fn run(&mut self, mut fuel: usize) -> Option<Option<(usize, usize)>> {
        let m = self.toks.len();
        let len = self.scan.text.len();
        loop {
            let pos = self.scan.pos;
            if self.scan.starts_at(pos) && self.starts[0] > pos {
                self.starts[0] = pos;
                Self::close(&self.toks, &mut self.starts);
            }
            let s = self.starts[m];
            if s != DEAD && self.scan.offer(s, pos) {
                return Some(self.scan.best);
            }
            if let Some((bs, _)) = self.scan.best {
                for st in self.starts.iter_mut() {
                    if *st != DEAD && *st > bs {
                        *st = DEAD;
                    }
                }
            }
            let alive = self.starts[..m].iter().any(|&st| st != DEAD);
            let more = !self.scan.anchored && self.scan.best.is_none();
            if pos >= len || (!alive && !more) {
                return Some(self.scan.best);
            }
            let Some(c) = self.scan.char_at(pos) else { return Some(self.scan.best) };
            self.next.iter_mut().for_each(|n| *n = DEAD);
            for j in 0..m {
                let st = self.starts[j];
                if st == DEAD {
                    continue;
                }
                let to = match &self.toks[j] {
                    Tok::Star => j,
                    t if tok_matches(t, c) => j + 1,
                    _ => continue,
                };
                if st < self.next[to] {
                    self.next[to] = st;
                }
            }
            Self::close(&self.toks, &mut self.next);
            std::mem::swap(&mut self.starts, &mut self.next);
            self.scan.pos = pos + c.len_utf8();
            fuel = fuel.saturating_sub(m + 1);
            if fuel == 0 {
                return None;
            }
        }
    }

    /// Runs to the end, yielding to the runtime between slices when asked
    /// (the shell's searches; a search for a file name need not).
    async fn finish(mut self, yielding: bool) -> Option<(usize, usize)> {
        loop {
            if let Some(r) = self.run(SLICE) {
                return r;
            }
            if yielding {
                tokio::task::yield_now().await;
            }
        }
    }
}

/// Whether the tokens match all of `text`.
fn match_toks(toks: &[Tok], text: &str) -> bool {
    let mut search = Search::new(toks, text, 0, false);
    matches!(search.run(usize::MAX), Some(Some((0, e))) if e == text.len())
}

/// Whether `text` matches the whole `pattern` (for short texts: a file
/// name, a tag; the shell uses [`matches_yielding`]).
pub fn matches(pattern: &str, text: &str) -> bool {
    match_toks(&compile(pattern), text)
}

/// Whether `text` matches the whole `pattern` read as an extended pattern
/// (`extglob`), for short texts (the fuzz targets).
pub fn matches_extended(pattern: &str, text: &str) -> bool {
    extglob::matches(pattern, text)
}

/// A test of single characters against `pattern`, compiled once (for
/// `${x^^[aeiou]}`, which asks it of every character of a value).
pub fn char_matcher(pattern: &str) -> impl Fn(char) -> bool {
    let toks = compile(pattern);
    move |c| {
        let mut buf = [0u8; 4];
        match_toks(&toks, c.encode_utf8(&mut buf))
    }
}

/// Whether `text` matches the whole `pattern`, yielding in a long search;
/// `ext`: extended patterns (`extglob`) are recognised.
pub async fn matches_yielding(pattern: &str, text: &str, ext: bool) -> bool {
    let found = Compiled::new(pattern, ext, false).search(text, 0).finish().await;
    matches!(found, Some((0, e)) if e == text.len())
}

/// A pattern compiled for searches in one direction, by the plain engine
/// or, for a pattern with extended groups when `extglob` is on, the
/// extended one (whose `!(…)` machines grow as searches use them). One
/// compiled pattern serves every search of a replacement.
struct Compiled {
    engine: Engine,
    backward: bool,
}

enum Engine {
    Plain(Vec<Tok>),
    Ext(extglob::Prog),
}

impl Compiled {
    fn new(pattern: &str, ext: bool, backward: bool) -> Self {
        let engine = if ext && has_extglob(pattern) {
            Engine::Ext(extglob::Prog::new(pattern, backward))
        } else {
            Engine::Plain(compile(pattern))
        };
        Compiled { engine, backward }
    }

    /// A search of `text` from `from`.
    fn search<'a>(&'a mut self, text: &'a str, from: usize) -> Searcher<'a> {
        match &mut self.engine {
            Engine::Plain(toks) => Searcher::Plain(Search::new(toks, text, from, self.backward)),
            Engine::Ext(prog) => {
                Searcher::Ext(Box::new(extglob::ExtSearch::new(prog, text, from, self.backward)))
            }
        }
    }
}

/// A search by one of the two engines.
enum Searcher<'a> {
    Plain(Search<'a>),
    Ext(Box<extglob::ExtSearch<'a>>),
}

impl<'a> Searcher<'a> {
    /// Sets how the search runs (see [`Search`]).
    fn with(mut self, anchored: bool, want: Want, nonempty: bool) -> Self {
        let scan = match &mut self {
            Searcher::Plain(s) => &mut s.scan,
            Searcher::Ext(s) => &mut s.scan,
        };
        (scan.anchored, scan.want, scan.nonempty) = (anchored, want, nonempty);
        self
    }

    /// Runs to the end, yielding to the runtime between slices.
    async fn finish(self) -> Option<(usize, usize)> {
        match self {
            Searcher::Plain(s) => s.finish(true).await,
            Searcher::Ext(mut s) => loop {
                if let Some(r) = s.run(SLICE) {
                    return r;
                }
                tokio::task::yield_now().await;
            },
        }
    }
}

/// Whether the pattern has an unescaped `*`, `?` or `[…]`. Scans the text
/// without compiling it: a word holding a long value is asked this often.
pub fn has_glob(pattern: &str) -> bool {
    let bytes = pattern.as_bytes();
    let mut i = 0;
    let mut bracket = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'*' | b'?' => return true,
            b'[' => bracket = true,
            _ => {}
        }
        i += 1;
    }
    // A `[` is a class only when it closes: ask the compiler, rarely.
    bracket && compile(pattern).iter().any(|t| !matches!(t, Tok::Lit(_)))
}

/// Bytes a pattern of `len` bytes takes once compiled (its tokens), for
/// the memory budget of the shell that matches it.
pub fn compiled_bytes(len: usize) -> usize {
    len.saturating_mul(std::mem::size_of::<Tok>() + std::mem::size_of::<char>())
}

/// Removes the escaping backslashes of a pattern. A lone backslash at the
/// end is kept: it escapes nothing, and matching takes it literally.
pub fn unescape(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next().unwrap_or('\\'));
        } else {
            out.push(c);
        }
    }
    out
}

/// Escapes pattern characters so the text matches only itself.
pub fn escape(text: &str) -> String {
    // `(` too: with `extglob`, `@(`, `!(`, `+(` open groups.
    if !text.bytes().any(|b| matches!(b, b'*' | b'?' | b'[' | b']' | b'\\' | b'(')) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '(') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Which part `${X#…}`-style removal takes.
#[derive(Clone, Copy)]
pub enum Trim {
    ShortPrefix,
    LongPrefix,
    ShortSuffix,
    LongSuffix,
}

/// `${X#p}`, `${X##p}`, `${X%p}`, `${X%%p}`: one anchored search, forward
/// for a prefix and backward for a suffix.
pub async fn trim(value: &str, pattern: &str, how: Trim, ext: bool) -> String {
    let (backward, want) = match how {
        Trim::ShortPrefix => (false, Want::Shortest),
        Trim::LongPrefix => (false, Want::Longest),
        Trim::ShortSuffix => (true, Want::Shortest),
        Trim::LongSuffix => (true, Want::Longest),
    };
    let mut compiled = Compiled::new(pattern, ext, backward);
    match compiled.search(value, 0).with(true, want, false).finish().await {
        Some((_, k)) if backward => value[..value.len() - k].to_owned(),
        Some((_, k)) => value[k..].to_owned(),
        None => value.to_owned(),
    }
}

/// `${X/p/r}` (first), `${X//p/r}` (all), `${X/#p/r}`, `${X/%p/r}`: at each
/// place, the leftmost match and the longest from there, as bash does.
/// `None` when the result would pass `max` bytes (a long value with every
/// character replaced by a long value is the square of both).
pub async fn replace(
    value: &str,
    pattern: &str,
    with: &str,
    all: bool,
    anchor: Option<bool>,
    max: usize,
    ext: bool,
) -> Option<String> {
    if pattern.is_empty() {
        return Some(value.to_owned());
    }

    match anchor {
        Some(true) => {
            return match Compiled::new(pattern, ext, false).search(value, 0).finish().await {
                Some((_, k)) => bounded(format!("{with}{}", &value[k..]), max),
                None => Some(value.to_owned()),
            };
        }
        Some(false) => {
            return match Compiled::new(pattern, ext, true).search(value, 0).finish().await {
                Some((_, k)) => bounded(format!("{}{with}", &value[..value.len() - k]), max),
                None => Some(value.to_owned()),
            };
        }
        None => {}
    }
    let mut compiled = Compiled::new(pattern, ext, false);
    let mut out = String::new();
    let mut i = 0;
    while i < value.len() {
        let search = compiled.search(value, i).with(false, Want::Longest, true);
        let Some((s, e)) = search.finish().await else { break };
        if out.len() + (s - i) + with.len() > max {
            return None;
        }
        out.push_str(&value[i..s]);
        out.push_str(with);
        i = e;
        if !all {
            break;
        }
    }
    out.push_str(&value[i..]);
    bounded(out, max)
}

fn bounded(s: String, max: usize) -> Option<String> {
    (s.len() <= max).then_some(s)
}

/// `shopt` options of pathname expansion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobOptions {
    /// `**` matches any number of directories (and files, as the last part).
    pub globstar: bool,
    /// A pattern that matches nothing expands to nothing.
    pub nullglob: bool,
    /// `*` matches names that start with a dot.
    pub dotglob: bool,
    /// Pathname patterns match names without regard to case.
    pub nocaseglob: bool,
    /// `case` and `[[ == ]]` match without regard to case (the shell's).
    pub nocasematch: bool,
    /// A pathname pattern that matches nothing is an error (the shell's).
    pub failglob: bool,
    /// Extended patterns: `?(…)`, `*(…)`, `+(…)`, `@(…)`, `!(…)`.
    pub extglob: bool,
}

impl GlobOptions {
    /// The option `shopt` calls `name`, if it is one of these.
    pub fn flag(&mut self, name: &str) -> Option<&mut bool> {
        Some(match name {
            "globstar" => &mut self.globstar,
            "nullglob" => &mut self.nullglob,
            "dotglob" => &mut self.dotglob,
            "nocaseglob" => &mut self.nocaseglob,
            "nocasematch" => &mut self.nocasematch,
            "failglob" => &mut self.failglob,
            "extglob" => &mut self.extglob,
            _ => return None,
        })
    }
}

/// Directory entries one expansion may look at: a `**` over a huge tree
/// stops there (with what it found), so no pattern walks without end.
const MAX_GLOB_ENTRIES: usize = 200_000;

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() || dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// One segment of a pathname pattern, compiled.
enum Segment {
    Plain(Vec<Tok>),
    /// With extended groups: matched by [`extglob`] (names are short).
    Ext(String),
}

/// One directory still to look at.
enum Task {
    /// Match segment `seg` (and the ones after it) in `dir`; `text` is the
    /// match so far, as the pattern spelled it.
    Walk { dir: String, text: String, seg: usize },
    /// Below a `**`: this directory, then every one below it (not through
    /// symlinks), each followed by the segments from `rest`; with no
    /// segments after it, every file and directory below.
    Star { dir: String, text: String, rest: usize, top: bool },
}

/// Pathname expansion of a pattern (relative to `cwd`, or absolute) with
/// the `shopt` options, in progress: [`Glob::step`] looks at one directory,
/// so a caller can yield (and be stopped) between directories, however
/// large the tree; [`Glob::finish`] gives the sorted matches, empty when
/// none. Only the workspace is listed, and [`MAX_GLOB_ENTRIES`] entries at
/// most are looked at.
pub struct Glob<'a> {
    ws: &'a crate::fs::Workspace,
    opts: GlobOptions,
    cwd: String,
    segs: Vec<String>,
    /// Each segment compiled, or `None` when it has no pattern characters.
    toks: Vec<Option<Segment>>,
    trailing_slash: bool,
    /// Entries left to look at.
    budget: usize,
    tasks: Vec<Task>,
    out: Vec<String>,
}

impl<'a> Glob<'a> {
    pub fn new(ws: &'a crate::fs::Workspace, cwd: &str, pattern: &str, opts: GlobOptions) -> Self {
        let absolute = pattern.starts_with('/');
        let base = if absolute { "/" } else { cwd };
        let segs: Vec<String> =
            pattern.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect();
        let toks = segs
            .iter()
            .map(|s| {
                let s = if opts.nocaseglob { s.to_lowercase() } else { s.clone() };
                if opts.extglob && has_extglob(&s) {
                    Some(Segment::Ext(s))
                } else {
                    has_glob(&s).then(|| Segment::Plain(compile(&s)))
                }
            })
            .collect();
        let prefix = if absolute { "/" } else { "" };
        Glob {
            ws,
            opts,
            cwd: cwd.to_owned(),
            toks,
            trailing_slash: pattern.ends_with('/'),
            budget: MAX_GLOB_ENTRIES,
            tasks: vec![Task::Walk { dir: base.to_owned(), text: prefix.to_owned(), seg: 0 }],
            segs,
            out: Vec::new(),
        }
    }

    /// Looks at one directory; `false` when the expansion is complete.
    pub fn step(&mut self) -> bool {
        match self.tasks.pop() {
            Some(Task::Walk { dir, text, seg }) => self.walk(&dir, &text, seg),
            Some(Task::Star { dir, text, rest, top }) => self.star(&dir, &text, rest, top),
            None => return false,
        }
        if self.budget == 0 {
            self.tasks.clear();
        }
        !self.tasks.is_empty()
    }

    /// The matches, sorted.
    pub fn finish(self) -> Vec<String> {
        let Glob { ws, cwd, mut out, trailing_slash, .. } = self;
        if trailing_slash {
            // `*/` matches directories only, and keeps the slash.
            let is_dir = |p: &String| {
                let abs = if p.starts_with('/') { p.clone() } else { join(&cwd, p) };
                ws.relative(&abs)
                    .is_some_and(|rel| ws.dir().metadata(&rel).is_ok_and(|m| m.is_dir()))
            };
            out = out
                .into_iter()
                .filter(is_dir)
                .map(|p| if p.ends_with('/') { p } else { p + "/" })
                .collect();
        }
        out.sort();
        out.dedup();
        out
    }

    /// The names in `abs_dir` (sorted; `.` and `..` never), or none.
    fn names(&mut self, abs_dir: &str, dots: bool) -> Vec<String> {
        let Some(rel) = self.ws.relative(abs_dir) else { return Vec::new() };
        let Ok(entries) = self.ws.dir().read_dir(&rel) else { return Vec::new() };
        let mut names = Vec::new();
        for e in entries.flatten() {
            if self.budget == 0 {
                break;
            }
            self.budget -= 1;
            let Ok(n) = e.file_name().into_string() else { continue };
            if n != "." && n != ".." && (dots || !n.starts_with('.')) {
                names.push(n);
            }
        }
        names.sort();
        names
    }

    fn is_dir(&self, abs: &str, follow: bool) -> bool {
        self.ws.relative(abs).is_some_and(|rel| {
            let m = if follow {
                self.ws.dir().metadata(&rel)
            } else {
                self.ws.dir().symlink_metadata(&rel)
            };
            m.is_ok_and(|m| m.is_dir())
        })
    }

    fn walk(&mut self, abs_dir: &str, text: &str, seg: usize) {
        let Some(pat) = self.segs.get(seg) else { return };
        let last = seg + 1 == self.segs.len();
        if pat == "**" && self.opts.globstar {
            let (dir, text) = (abs_dir.to_owned(), text.to_owned());
            self.tasks.push(Task::Star { dir, text, rest: seg + 1, top: true });
            return;
        }
        let Some(toks) = self.toks[seg].take() else {
            let name = unescape(pat);
            let abs = join(abs_dir, &name);
            if last {
                let exists = self
                    .ws
                    .relative(&abs)
                    .is_some_and(|rel| self.ws.dir().symlink_metadata(&rel).is_ok());
                if exists {
                    self.out.push(join(text, &name));
                }
            } else {
                self.tasks.push(Task::Walk { dir: abs, text: join(text, &name), seg: seg + 1 });
            }
            return;
        };
        let dots = self.opts.dotglob || pat.starts_with('.') || pat.starts_with("\\.");
        for name in self.names(abs_dir, dots) {
            let name_cased = if self.opts.nocaseglob { name.to_lowercase() } else { name.clone() };
            let matched = match &toks {
                Segment::Plain(toks) => match_toks(toks, &name_cased),
                Segment::Ext(pattern) => extglob::matches(pattern, &name_cased),
            };
            if !matched {
                continue;
            }
            if last {
                self.out.push(join(text, &name));
            } else {
                let abs = join(abs_dir, &name);
                if self.is_dir(&abs, true) {
                    self.tasks.push(Task::Walk { dir: abs, text: join(text, &name), seg: seg + 1 });
                }
            }
        }
        self.toks[seg] = Some(toks);
    }

    fn star(&mut self, dir: &str, text: &str, rest: usize, top: bool) {
        let rest_empty = rest >= self.segs.len();
        if !rest_empty {
            let (d, t) = (dir.to_owned(), text.to_owned());
            self.tasks.push(Task::Walk { dir: d, text: t, seg: rest });
        } else if top && !text.is_empty() {
            // `src/**` matches `src/` itself too, as in bash.
            self.out.push(format!("{}/", text.trim_end_matches('/')));
        }
        let dots = self.opts.dotglob;
        for name in self.names(dir, dots).into_iter().rev() {
            let abs = join(dir, &name);
            let t = join(text, &name);
            if rest_empty {
                self.out.push(t.clone());
            }
            if self.is_dir(&abs, false) {
                self.tasks.push(Task::Star { dir: abs, text: t, rest, top: false });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matching() {
        assert!(matches("*.rs", "main.rs"));
        assert!(!matches("*.rs", "main.rsx"));
        assert!(matches("a?c", "abc"));
        assert!(matches("[a-c]x", "bx"));
        assert!(!matches("[!a-c]x", "bx"));
        assert!(matches("\\*", "*"));
        assert!(!matches("\\*", "x"));
        assert!(matches("*", ""));
        assert!(matches("[[:digit:]]*", "1abc"));
        // A class name that is not ASCII must not throw the position off.
        assert!(matches("[[:éé:]x]", "x"));
    }

    #[test]
    fn a_trailing_backslash_is_literal() {
        // Found by `fuzz/` (shell_parse): `unescape` dropped it while
        // matching kept it, so a glob segment without wildcards looked for
        // another name than the one that matches.
        assert!(matches("a\\", "a\\"));
        assert_eq!(unescape("a\\"), "a\\");
        assert_eq!(unescape("\\*x\\\\"), "*x\\");
    }

    #[tokio::test]
    async fn extended_trims_and_replacements() {
        assert_eq!(trim("000123", "+(0)", Trim::LongPrefix, true).await, "123");
        assert_eq!(trim("000123", "+(0)", Trim::ShortPrefix, true).await, "00123");
        assert_eq!(trim("a.tar.gz", ".@(gz|bz2)", Trim::ShortSuffix, true).await, "a.tar");
        assert_eq!(trim("x.rs.bak", ".!(rs)", Trim::ShortSuffix, true).await, "x.rs");
        // Off, the same text is a plain pattern.
        assert_eq!(trim("000123", "+(0)", Trim::LongPrefix, false).await, "000123");
        assert_eq!(
            replace("a1b22c333", "+([0-9])", "#", true, None, usize::MAX, true).await,
            Some("a#b#c#".to_owned())
        );
        assert!(matches_yielding("*.@(md|toml)", "Cargo.toml", true).await);
        assert!(!matches_yielding("*.@(md|toml)", "Cargo.toml", false).await);
    }

    #[tokio::test]
    async fn trims_and_replacements() {
        assert_eq!(trim("src/main.rs", "*/", Trim::ShortPrefix, false).await, "main.rs");
        assert_eq!(trim("a/b/c", "*/", Trim::LongPrefix, false).await, "c");
        assert_eq!(trim("file.tar.gz", ".*", Trim::ShortSuffix, false).await, "file.tar");
        assert_eq!(trim("file.tar.gz", ".*", Trim::LongSuffix, false).await, "file");
        assert_eq!(trim("héllo wörld", "*ö", Trim::LongPrefix, false).await, "rld");
        assert_eq!(
            replace("a-b-c", "-", "+", false, None, usize::MAX, false).await.expect("fits"),
            "a+b-c"
        );
        assert_eq!(
            replace("a-b-c", "-", "+", true, None, usize::MAX, false).await.expect("fits"),
            "a+b+c"
        );
        assert_eq!(
            replace("abc", "a", "X", false, Some(true), usize::MAX, false).await.expect("fits"),
            "Xbc"
        );
        assert_eq!(
            replace("abc", "c", "X", false, Some(false), usize::MAX, false).await.expect("fits"),
            "abX"
        );
        assert_eq!(
            replace("aXbXc", "X*", "-", true, None, usize::MAX, false).await.expect("fits"),
            "a-"
        );
        assert_eq!(
            replace("ééé", "?", "z", true, None, usize::MAX, false).await.expect("fits"),
            "zzz"
        );
    }

    /// The backtracking matcher this module had, kept as the reference
    /// the automaton is checked against.
    fn reference_match(toks: &[Tok], text: &[char]) -> bool {
        match toks.split_first() {
            None => text.is_empty(),
            Some((Tok::Star, rest)) => (0..=text.len()).any(|k| reference_match(rest, &text[k..])),
            Some((t, rest)) => {
                !text.is_empty() && tok_matches(t, text[0]) && reference_match(rest, &text[1..])
            }
        }
    }

    fn reference_trim(value: &str, pattern: &str, how: Trim) -> String {
        let toks = compile(pattern);
        let chars: Vec<char> = value.chars().collect();
        let n = chars.len();
        let ok = |k: usize, prefix: bool| {
            if prefix {
                reference_match(&toks, &chars[..k])
            } else {
                reference_match(&toks, &chars[n - k..])
            }
        };
        let found = match how {
            Trim::ShortPrefix => (0..=n).find(|&k| ok(k, true)).map(|k| (k, true)),
            Trim::LongPrefix => (0..=n).rev().find(|&k| ok(k, true)).map(|k| (k, true)),
            Trim::ShortSuffix => (0..=n).find(|&k| ok(k, false)).map(|k| (k, false)),
            Trim::LongSuffix => (0..=n).rev().find(|&k| ok(k, false)).map(|k| (k, false)),
        };
        match found {
            Some((k, true)) => chars[k..].iter().collect(),
            Some((k, false)) => chars[..n - k].iter().collect(),
            None => value.to_owned(),
        }
    }

    fn reference_replace_all(value: &str, pattern: &str, with: &str) -> String {
        let toks = compile(pattern);
        let chars: Vec<char> = value.chars().collect();
        let n = chars.len();
        let (mut out, mut i) = (String::new(), 0);
        while i < n {
            if let Some(k) = (i + 1..=n).rev().find(|&e| reference_match(&toks, &chars[i..e])) {
                out.push_str(with);
                i = k;
                continue;
            }
            out.push(chars[i]);
            i += 1;
        }
        out
    }

    #[tokio::test]
    async fn the_automaton_agrees_with_backtracking() {
        // Every pattern over a small alphabet against every text: the same
        // answers as the exhaustive matcher.
        let atoms = ["a", "b", "é", "*", "?", "[ab]", "[!a]"];
        let mut patterns = vec![String::new()];
        for _ in 0..3 {
            let grown: Vec<String> = patterns
                .iter()
                .flat_map(|p| atoms.iter().map(move |a| format!("{p}{a}")))
                .collect();
            patterns.extend(grown);
        }
        patterns.sort();
        patterns.dedup();
        let mut texts = vec![String::new()];
        for _ in 0..4 {
            let grown: Vec<String> =
                texts.iter().flat_map(|t| ["a", "b", "é"].map(|c| format!("{t}{c}"))).collect();
            texts.extend(grown);
        }
        texts.sort();
        texts.dedup();
        for p in &patterns {
            let toks = compile(p);
            for t in texts.iter().step_by(3) {
                let chars: Vec<char> = t.chars().collect();
                assert_eq!(matches(p, t), reference_match(&toks, &chars), "{p:?} ~ {t:?}");
                for how in
                    [Trim::ShortPrefix, Trim::LongPrefix, Trim::ShortSuffix, Trim::LongSuffix]
                {
                    assert_eq!(
                        trim(t, p, how, false).await,
                        reference_trim(t, p, how),
                        "{p:?} {t:?}"
                    );
                }
                if !p.is_empty() {
                    let want = reference_replace_all(t, p, "-");
                    assert_eq!(
                        replace(t, p, "-", true, None, usize::MAX, false).await.expect("fits"),
                        want,
                        "{p:?} // {t:?}"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn long_values_take_linear_steps() {
        // Cubic for the backtracking matcher (every prefix length, each
        // tried at every star split): here one pass each.
        let long = "a".repeat(200_000);
        assert_eq!(trim(&long, "*z", Trim::LongPrefix, false).await, long);
        assert_eq!(
            replace(&long, "?", "z", true, None, usize::MAX, false).await.expect("fits").len(),
            long.len()
        );
        assert!(!matches_yielding("*a*a*a*a*b", &long, false).await);
    }
}
