//! The interpreter's state: variables, functions, positional parameters,
//! options, the working directory, and the budget that bounds one command
//! line. A subshell (`( … )`, a pipeline stage, `$( … )`) is a clone; the
//! budget is shared by all clones, so limits hold for the whole line.

use crate::exec::Executor;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Deepest nesting of function calls, `eval`, `source` and substitutions.
pub const MAX_DEPTH: usize = 1000;
/// Most commands (builtin or guest) one command line may run.
pub const MAX_COMMANDS: u64 = 2_000_000;
/// Largest value a variable or a command substitution may hold.
pub const MAX_VALUE: usize = 64 << 20;
/// Largest array index (bash's own limit is `i64::MAX`; arrays are sparse,
/// so an index is not an allocation, and this one fits every target).
pub const MAX_ARRAY: usize = i64::MAX as usize;

/// Checks an array index against [`MAX_ARRAY`] (bash's wording for the rest).
pub fn array_index(name: &str, index: usize) -> Result<usize, String> {
    if index > MAX_ARRAY {
        return Err(format!("{name}[{index}]: bad array subscript"));
    }
    Ok(index)
}

/// What a variable or an array element costs beyond its text: the map
/// entry, the `String` and the allocator's rounding, roughly.
const ENTRY_BYTES: usize = 64;

/// Indexed array elements, sparse: `a[1000000000]=x` holds one element.
pub type Array = BTreeMap<usize, String>;

/// Associative array elements (`declare -A`), in key order (bash keeps
/// them in hash order, which no script can rely on).
pub type Keyed = BTreeMap<String, String>;

/// An array from a list (`a=(x y z)`), indexed from 0.
pub fn array_of(items: Vec<String>) -> Array {
    items.into_iter().enumerate().collect()
}

/// What one value of a list (an array element, a word, a line) costs
/// against the memory budget.
pub fn item_bytes(s: &str) -> usize {
    ENTRY_BYTES + s.len()
}

/// What a list of values costs against the memory budget.
pub fn list_bytes(list: &[String]) -> usize {
    list.iter().map(|s| item_bytes(s)).sum()
}

fn array_bytes(a: &Array) -> usize {
    a.values().map(|s| item_bytes(s)).sum()
}

fn keyed_bytes(k: &Keyed) -> usize {
    k.iter().map(|(k, v)| k.len() + item_bytes(v)).sum()
}

/// Host work the interpreter does between two yields at most (compound
/// commands check it; simple commands yield every time): the server's other
/// tasks, stop requests and the host-time meter get in at least this often.
pub const YIELD_EVERY: std::time::Duration = std::time::Duration::from_millis(1);

/// One shell variable.
#[derive(Clone, Debug, Default)]
pub struct Var {
    pub value: String,
    /// Indexed array elements when the variable is an array (`a=(x y)`).
    pub array: Option<Array>,
    /// Elements by key when the variable is an associative array.
    pub keyed: Option<Keyed>,
    /// Passed to guests in their environment.
    pub exported: bool,
    /// `readonly`: assignments and `unset` fail.
    pub readonly: bool,
    /// `declare -i`: assignments are arithmetic.
    pub integer: bool,
    /// What it is charged against the budget as it stands in [`Vars`].
    cost: usize,
}

impl Var {
    /// What the variable costs against the command's memory budget.
    fn bytes(&self) -> usize {
        ENTRY_BYTES
            + self.value.len()
            + self.array.as_ref().map_or(0, array_bytes)
            + self.keyed.as_ref().map_or(0, keyed_bytes)
    }

    /// The element named `key` of an associative array.
    pub fn by_key(&self, key: &str) -> Option<&str> {
        self.keyed.as_ref()?.get(key).map(String::as_str)
    }

    /// Element `i` (a plain variable is element 0).
    pub fn element(&self, i: usize) -> Option<&str> {
        if self.keyed.is_some() {
            return self.by_key(&i.to_string());
        }
        match &self.array {
            Some(a) => a.get(&i).map(String::as_str),
            None => (i == 0).then_some(self.value.as_str()),
        }
    }

    /// The element a negative index names (`${a[-1]}`: counted back from
    /// one past the highest index, as bash does).
    pub fn element_from_end(&self, back: usize) -> Option<&str> {
        let top = match &self.array {
            Some(a) => a.keys().next_back().map_or(0, |k| k + 1),
            None => 1,
        };
        top.checked_sub(back).and_then(|i| self.element(i))
    }

    /// The values in index order (`"${a[@]}"`).
    pub fn items(&self) -> Vec<String> {
        if let Some(k) = &self.keyed {
            return k.values().cloned().collect();
        }
        match &self.array {
            Some(a) => a.values().cloned().collect(),
            None => vec![self.value.clone()],
        }
    }

    /// The indices or keys that are set (`"${!a[@]}"`).
    pub fn keys(&self) -> Vec<String> {
        if let Some(k) = &self.keyed {
            return k.keys().cloned().collect();
        }
        match &self.array {
            Some(a) => a.keys().map(usize::to_string).collect(),
            None => vec!["0".to_owned()],
        }
    }
}

/// The variables of one shell, their cost charged to the command line's
/// [`Budget`]: a copy (a subshell) is charged again, and what a shell drops
/// is given back.
pub struct Vars {
    map: HashMap<String, Var>,
    bytes: usize,
    budget: Arc<Budget>,
}

impl Clone for Vars {
    fn clone(&self) -> Self {
        // A clone cannot fail: it is charged in full, and a budget pushed
        // past its limit stops the line at its next command.
        self.budget.force(self.bytes);
        Self { map: self.map.clone(), bytes: self.bytes, budget: self.budget.clone() }
    }
}

impl Drop for Vars {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// A variable's value saved for later (by `local` or a `VAR=x` prefix of a
/// function call), charged while it is kept.
#[derive(Clone)]
pub struct Saved {
    pub name: String,
    pub var: Option<Var>,
    _lease: Lease,
}

impl Vars {
    fn new(budget: Arc<Budget>) -> Self {
        Self { map: HashMap::new(), bytes: 0, budget }
    }

    pub fn get(&self, name: &str) -> Option<&Var> {
        self.map.get(name)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.map.keys()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Var)> {
        self.map.iter()
    }

    /// A copy of `name` to put back later, charged while it is kept.
    pub fn save(&self, name: &str) -> Saved {
        let var = self.map.get(name).cloned();
        let bytes = var.as_ref().map_or(0, |v| v.cost);
        Saved { name: name.to_owned(), var, _lease: Lease::held(&self.budget, bytes) }
    }

    /// Charges a change of `old` bytes to `new` bytes.
    fn recharge(&mut self, old: usize, new: usize) -> Result<(), MemoryLimit> {
        if new > old {
            self.budget.charge(new - old)?;
        } else {
            self.budget.release(old - new);
        }
        self.bytes = self.bytes - old + new;
        Ok(())
    }

    /// Puts a whole variable in place (an array, or a saved one put back).
    pub fn insert(&mut self, name: String, mut var: Var) -> Result<(), MemoryLimit> {
        var.cost = var.bytes() + name.len();
        let old = self.map.get(&name).map_or(0, |v| v.cost);
        self.recharge(old, var.cost)?;
        self.map.insert(name, var);
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Option<Var> {
        let v = self.map.remove(name)?;
        let _ = self.recharge(v.cost, 0);
        Some(v)
    }

    /// Changes only the flags of a variable (creating it, empty, if need be).
    pub fn flags(&mut self, name: &str, f: impl FnOnce(&mut Var)) {
        if !self.map.contains_key(name) {
            let _ = self.insert(name.to_owned(), Var::default());
        }
        if let Some(v) = self.map.get_mut(name) {
            f(v);
        }
    }

    /// Sets the value of a scalar (an array becomes a scalar).
    fn set_value(&mut self, name: &str, value: String) -> Result<(), SetError> {
        let old = match self.map.get(name) {
            Some(v) if v.readonly => return Err(SetError::Readonly),
            Some(v) => v.cost,
            None => 0,
        };
        let new = ENTRY_BYTES + value.len() + name.len();
        self.recharge(old, new)?;
        let v = self.map.entry(name.to_owned()).or_default();
        v.value = value;
        v.array = None;
        v.keyed = None;
        v.cost = new;
        Ok(())
    }

    /// Sets the element named `key` of an associative array (`m[k]=v`).
    fn set_key(&mut self, name: &str, key: String, value: String) -> Result<(), SetError> {
        let Some(v) = self.map.get(name) else { return Ok(()) };
        if v.readonly {
            return Err(SetError::Readonly);
        }
        let old = v.by_key(&key).map_or(0, |s| key.len() + item_bytes(s));
        let new = key.len() + item_bytes(&value);
        let cost = v.cost - old + new;
        self.recharge(old, new)?;
        let v = self.map.get_mut(name).expect("looked up above");
        v.keyed.get_or_insert_default().insert(key, value);
        v.cost = cost;
        Ok(())
    }

    /// Removes the element named `key` of an associative array.
    fn remove_key(&mut self, name: &str, key: &str) {
        let Some(v) = self.map.get_mut(name) else { return };
        let Some(removed) = v.keyed.as_mut().and_then(|k| k.remove(key)) else { return };
        let freed = key.len() + item_bytes(&removed);
        v.cost -= freed;
        let _ = self.recharge(freed, 0);
    }

    /// Sets element `i` of an array (a scalar becomes element 0 of one).
    fn set_element(&mut self, name: &str, i: usize, value: String) -> Result<(), SetError> {
        let Some(v) = self.map.get(name) else {
            let first = if i == 0 { value.clone() } else { String::new() };
            let var =
                Var { value: first, array: Some(Array::from([(i, value)])), ..Default::default() };
            return Ok(self.insert(name.to_owned(), var)?);
        };
        if v.readonly {
            return Err(SetError::Readonly);
        }
        let Some(a) = &v.array else {
            // A scalar's value becomes element 0, as in bash.
            let mut a = Array::new();
            if !v.value.is_empty() {
                a.insert(0, v.value.clone());
            }
            a.insert(i, value);
            let var = Var { array: Some(a), ..v.clone() };
            return Ok(self.insert(name.to_owned(), var)?);
        };
        // The element's text, and `$a` when it is element 0.
        let old_elem = a.get(&i).map_or(0, |s| item_bytes(s));
        let scalar = if i == 0 { value.len() } else { v.value.len() };
        let old = old_elem + v.value.len();
        let new = item_bytes(&value) + scalar;
        let cost = v.cost - old + new;
        self.recharge(old, new)?;
        let v = self.map.get_mut(name).expect("looked up above");
        if i == 0 {
            v.value = value.clone();
        }
        v.array.get_or_insert_default().insert(i, value);
        v.cost = cost;
        Ok(())
    }

    /// Removes element `i` of an array in place (`unset 'a[i]'`), giving
    /// its bytes back; `$a` follows element 0.
    fn remove_element(&mut self, name: &str, i: usize) {
        let Some(v) = self.map.get_mut(name) else { return };
        let Some(removed) = v.array.as_mut().and_then(|a| a.remove(&i)) else { return };
        let old_scalar = v.value.len();
        if i == 0 {
            v.value.clear();
        }
        let freed = item_bytes(&removed) + old_scalar - v.value.len();
        v.cost -= freed;
        let _ = self.recharge(freed, 0);
    }
}

/// The positional parameters (`$1…`), charged like variables: a copy (a
/// subshell) is charged again.
#[derive(Clone)]
pub struct Args {
    list: Vec<String>,
    lease: Lease,
}

impl Args {
    /// Charged in full: past the budget, the line stops at its next command.
    pub fn new(budget: &Arc<Budget>, list: Vec<String>) -> Self {
        let lease = Lease::held(budget, list_bytes(&list));
        Self { list, lease }
    }

    /// Puts `list` in place; returns the old parameters (charged while kept).
    pub fn replace(&mut self, list: Vec<String>) -> Args {
        let new = Args::new(&self.lease.budget, list);
        std::mem::replace(self, new)
    }

    /// `shift N`.
    pub fn shift(&mut self, n: usize) {
        let n = n.min(self.list.len());
        let gone = list_bytes(&self.list[..n]);
        self.list.drain(..n);
        self.lease.budget.release(gone);
        self.lease.bytes -= gone;
    }
}

impl std::ops::Deref for Args {
    type Target = [String];
    fn deref(&self) -> &[String] {
        &self.list
    }
}

/// Why an assignment failed.
#[derive(Debug)]
pub enum SetError {
    Readonly,
    Memory(MemoryLimit),
}

impl From<MemoryLimit> for SetError {
    fn from(m: MemoryLimit) -> Self {
        Self::Memory(m)
    }
}

impl SetError {
    /// Bash's message for `name`.
    pub fn message(&self, name: &str) -> String {
        match self {
            Self::Readonly => format!("{name}: readonly variable"),
            Self::Memory(m) => m.to_string(),
        }
    }
}

/// The command line used up its memory budget (max-memory): what the shell
/// and host commands hold for it, like a guest's linear memory.
#[derive(Debug, Clone, Copy)]
pub struct MemoryLimit {
    pub max: usize,
}

impl std::fmt::Display for MemoryLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "memory limit exceeded (max-memory is {} MiB); command stopped", self.max >> 20)
    }
}

/// `set -e`, `-u`, `-x`, `-o pipefail`, `-f`, and `shopt -s globstar`,
/// `nullglob`, `dotglob`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    pub errexit: bool,
    pub nounset: bool,
    pub xtrace: bool,
    pub pipefail: bool,
    pub noglob: bool,
    /// `set -C`: `>` does not overwrite an existing file (`>|` does).
    pub noclobber: bool,
    pub glob: crate::pattern::GlobOptions,
}

/// How control leaves the normal flow of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unwind {
    Break(usize),
    Continue(usize),
    Return(i32),
    /// `exit`, `set -e`, or a fatal expansion error: leave this (sub)shell.
    Exit(i32),
}

/// The result of running anything: a status, or control leaving.
pub type Outcome = Result<i32, Unwind>;

/// What a whole command line may use, shared by its subshells: commands
/// run, and the memory its shells hold (variables in every copy, captured
/// output, words being built, here-documents, sourced scripts).
#[derive(Debug)]
pub struct Budget {
    commands: AtomicU64,
    memory: AtomicUsize,
    max_memory: usize,
    /// A limit of the line (memory, subshells) was hit: every shell of the
    /// line stops at its next command or loop turn.
    over: AtomicBool,
    /// Subshells (pipeline stages, `$( … )`) alive at once.
    live_shells: AtomicUsize,
    /// A limit hit where nobody could say so (a copy pushed the budget
    /// over): the next command says it.
    unreported: std::sync::Mutex<Option<String>>,
}

/// Subshells one command line may have alive at once (`f(){ f|f; }; f`
/// ends here).
pub const MAX_LIVE_SHELLS: usize = 256;

/// Host commands hold their buffers against the line's budget too.
impl crate::hostcmd::Meter for Budget {
    fn take(&self, bytes: usize) -> Result<(), String> {
        self.charge(bytes).map_err(|m| m.to_string())
    }

    fn give(&self, bytes: usize) {
        self.release(bytes);
    }

    fn room(&self) -> usize {
        Budget::room(self)
    }
}

impl Budget {
    pub fn new(max_memory: usize) -> Self {
        Self {
            commands: AtomicU64::new(0),
            memory: AtomicUsize::new(0),
            max_memory,
            over: AtomicBool::new(false),
            live_shells: AtomicUsize::new(0),
            unreported: std::sync::Mutex::new(None),
        }
    }

    /// Takes one command from the budget: its number in the line (0 for
    /// the first), or `None` once the budget is spent.
    pub fn take(&self) -> Option<u64> {
        let n = self.commands.fetch_add(1, Ordering::Relaxed);
        (n < MAX_COMMANDS).then_some(n)
    }

    /// Charges `n` bytes, or refuses (and marks the line over budget).
    pub fn charge(&self, n: usize) -> Result<(), MemoryLimit> {
        let was = self.memory.fetch_add(n, Ordering::Relaxed);
        if was.saturating_add(n) > self.max_memory {
            self.memory.fetch_sub(n, Ordering::Relaxed);
            self.over.store(true, Ordering::Relaxed);
            return Err(MemoryLimit { max: self.max_memory });
        }
        Ok(())
    }

    /// Charges `n` bytes that are held already (a copy of a shell's
    /// variables): past the limit the line stops at its next command.
    pub fn force(&self, n: usize) {
        let was = self.memory.fetch_add(n, Ordering::Relaxed);
        if was.saturating_add(n) > self.max_memory && !self.over.swap(true, Ordering::Relaxed) {
            let msg = MemoryLimit { max: self.max_memory }.to_string();
            *self.unreported.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
        }
    }

    /// The message of a limit hit that nobody has reported yet.
    pub fn take_unreported(&self) -> Option<String> {
        self.unreported.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub fn release(&self, n: usize) {
        self.memory.fetch_sub(n, Ordering::Relaxed);
    }

    /// Whether `n` more bytes would fit now (for a value about to be built).
    pub fn fits(&self, n: usize) -> Result<(), MemoryLimit> {
        if self.memory.load(Ordering::Relaxed).saturating_add(n) > self.max_memory {
            self.over.store(true, Ordering::Relaxed);
            return Err(MemoryLimit { max: self.max_memory });
        }
        Ok(())
    }

    /// Bytes the line may still take.
    pub fn room(&self) -> usize {
        self.max_memory.saturating_sub(self.used())
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.memory.load(Ordering::Relaxed)
    }

    /// The line hit one of its limits somewhere (the shell that hit it said
    /// which): it stops.
    pub fn halted(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    /// Holds `n` bytes until the lease is dropped.
    pub fn lease(self: &Arc<Self>, n: usize) -> Result<Lease, MemoryLimit> {
        self.charge(n)?;
        Ok(Lease { budget: self.clone(), bytes: n })
    }

    /// Counts one more live subshell, unless the line has
    /// [`MAX_LIVE_SHELLS`].
    pub fn subshell(self: &Arc<Self>) -> Result<SubshellSlot, String> {
        self.live_shells
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_LIVE_SHELLS).then_some(n + 1)
            })
            .map_err(|_| {
                self.over.store(true, Ordering::Relaxed);
                format!(
                    "too many subshells at once (at most {MAX_LIVE_SHELLS} in one command line); \
                     command stopped"
                )
            })?;
        Ok(SubshellSlot(self.clone()))
    }
}

/// Bytes a value being built holds against the [`Budget`], given back on
/// drop; it can grow. A copy is charged again.
pub struct Lease {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Lease {
    /// A lease on `bytes` that are held already (a copy, a saved value):
    /// charged in full, past the limit too, which stops the line at its
    /// next command.
    fn held(budget: &Arc<Budget>, bytes: usize) -> Self {
        budget.force(bytes);
        Self { budget: budget.clone(), bytes }
    }

    /// Grows the lease to `n` bytes.
    pub fn grow_to(&mut self, n: usize) -> Result<(), MemoryLimit> {
        if n > self.bytes {
            self.budget.charge(n - self.bytes)?;
            self.bytes = n;
        }
        Ok(())
    }
}

impl Clone for Lease {
    fn clone(&self) -> Self {
        Self::held(&self.budget, self.bytes)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// One live subshell of a line, counted until dropped.
pub struct SubshellSlot(Arc<Budget>);

impl Drop for SubshellSlot {
    fn drop(&mut self) {
        self.0.live_shells.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The interpreter of one command line (and, cloned, of its subshells).
#[derive(Clone)]
pub struct Shell {
    /// Runs guests; owns the workspace capability every path goes through.
    pub exec: Executor,
    /// The command runs on a terminal (`tty: true`): its stdin is a person.
    pub terminal: bool,
    pub vars: Vars,
    /// Saved values for `local`, one frame per function call.
    pub locals: Vec<Vec<Saved>>,
    pub funcs: HashMap<String, Arc<brush_parser::ast::FunctionBody>>,
    /// `$1…`.
    pub positional: Args,
    /// `$0`, also the prefix of error messages (`bash: line 1: …`).
    pub arg0: String,
    /// Visible absolute working directory, always inside the workspace.
    pub cwd: String,
    /// `$?`.
    pub status: i32,
    pub opts: Options,
    pub budget: Arc<Budget>,
    /// Nesting of functions, `eval`, `source` and substitutions.
    pub depth: usize,
    /// Enclosing loops, for `break`/`continue` and the stdin guard.
    pub loops: usize,
    /// Inside an `if`/`while` condition, `&&`/`||` operand or `!`: `set -e`
    /// does not apply.
    pub in_condition: usize,
    /// Line of the command being run, for messages.
    pub line: usize,
    /// Running a function body (for `return` and `local`).
    pub in_function: usize,
    /// Status of the last command substitution in the current command
    /// (the status of `x=$(false)`).
    pub last_subst: Option<i32>,
    /// When this shell last let other tasks in ([`YIELD_EVERY`]).
    pub last_yield: std::time::Instant,
    /// `$$`: a process id of the sandbox's own, never the server's (which
    /// would tell a command about the host), different for each shell.
    pub pid: u32,
    /// Background jobs (`cmd &`) this shell started and has not waited for.
    pub jobs: Jobs,
    /// `trap '…' EXIT`: run when this shell (the line, or a subshell) ends.
    pub exit_trap: ExitTrap,
    /// `trap '…' ERR`: run after a command fails where `set -e` would
    /// stop (outside functions; subshells start without it).
    pub err_trap: ExitTrap,
    /// `getopts`' place inside a group of options (`-ab`): the OPTIND it
    /// was at and the next letter's offset in that argument.
    pub getopts_at: (usize, usize),
    /// Command substitutions this shell runs inside (`set -x` repeats the
    /// first character of PS4 once more for each).
    pub substitution_level: usize,
    /// Where the text being run came from (`-c`, a script's or sourced
    /// file's name), and where each function was defined: bash names a
    /// function's errors after it (`environment` for a `-c` line's).
    pub origin: Arc<str>,
    pub func_origins: HashMap<String, Arc<str>>,
    /// The name errors start with inside a function call (else `$0`).
    pub err_name: Option<Arc<str>>,
    /// Running an ERR trap's action: `$LINENO` and messages keep the line
    /// of the command that failed (an EXIT trap's count from its own, as
    /// bash's do).
    pub in_trap: bool,
}

/// A shell's EXIT or ERR trap. A subshell starts without its parent's (bash
/// resets traps in subshells), so cloning gives none.
#[derive(Default, Debug)]
pub struct ExitTrap(pub Option<Arc<str>>);

impl Clone for ExitTrap {
    fn clone(&self) -> Self {
        ExitTrap(None)
    }
}

/// Background jobs a shell may have running at once (a `&` flood ends at
/// this, named).
pub const MAX_JOBS: usize = 64;

/// One background job: its `$!` and its status, when it ends (in a mutex
/// only so that a shell is `Sync`; it is only ever used through `&mut`).
pub struct Job {
    pub pid: u32,
    pub done: std::sync::Mutex<futures::future::BoxFuture<'static, Option<i32>>>,
}

/// A shell's background jobs. A subshell starts with none (bash's `wait` in
/// a subshell does not wait for its parent's jobs); dropping them (the
/// command stopped) aborts them.
#[derive(Default)]
pub struct Jobs {
    pub running: Vec<Job>,
    /// `$!`: the last one started.
    pub last: Option<u32>,
}

impl Clone for Jobs {
    fn clone(&self) -> Self {
        Jobs { running: Vec::new(), last: self.last }
    }
}

/// The next sandbox process id: 100 on, wrapping below Linux's default
/// `pid_max` (32768), like real pids.
pub fn next_pid() -> u32 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    100 + (NEXT.fetch_add(1, Ordering::Relaxed) % 32_600) as u32
}

impl Shell {
    /// A fresh shell with the given environment (all exported).
    pub fn new(
        exec: Executor,
        env: &[(String, String)],
        cwd: String,
        arg0: String,
        args: Vec<String>,
        budget: Arc<Budget>,
    ) -> Self {
        let mut vars = Vars::new(budget.clone());
        for (k, v) in env {
            let var = Var { value: v.clone(), exported: true, ..Default::default() };
            // The environment is the client's, bounded by the frame size.
            let _ = vars.insert(k.clone(), var);
        }
        let mut sh = Self {
            exec,
            vars,
            locals: Vec::new(),
            funcs: HashMap::new(),
            positional: Args::new(&budget, args),
            arg0,
            cwd: cwd.clone(),
            status: 0,
            opts: Options::default(),
            budget,
            depth: 0,
            loops: 0,
            in_condition: 0,
            line: 1,
            in_function: 0,
            last_subst: None,
            last_yield: std::time::Instant::now(),
            pid: next_pid(),
            jobs: Jobs::default(),
            exit_trap: ExitTrap::default(),
            err_trap: ExitTrap::default(),
            getopts_at: (0, 0),
            substitution_level: 0,
            origin: Arc::from("-c"),
            func_origins: HashMap::new(),
            err_name: None,
            in_trap: false,
            terminal: false,
        };
        sh.set_exported("PWD", &cwd);
        if !sh.vars.contains_key("IFS") {
            let _ =
                sh.vars.insert("IFS".into(), Var { value: " \t\n".into(), ..Default::default() });
        }
        sh
    }

    /// Yields to the runtime: other tasks, a stop request (the command is
    /// dropped while it waits) and the host-time meter get in.
    pub async fn yield_now(&mut self) {
        tokio::task::yield_now().await;
        self.last_yield = std::time::Instant::now();
    }

    /// The line hit one of its limits: its own (memory, subshells), or the
    /// command's CPU budget in one of its guests (the others would get no
    /// CPU either): it ends with 137.
    pub fn halted(&self) -> bool {
        self.budget.halted()
            || crate::exec::scope::current_stats()
                .is_some_and(|s| s.cpu_limit_hit.load(Ordering::Relaxed))
    }

    /// Yields when [`YIELD_EVERY`] of work has passed since the last time,
    /// and only then: each yield hands the task to the pool's other thread.
    pub async fn yield_if_due(&mut self) {
        if self.last_yield.elapsed() >= YIELD_EVERY {
            self.yield_now().await;
        }
    }

    /// Yields when it is due ([`Shell::yield_if_due`]): a loop of compound
    /// commands (`while ((1)); do ((i++)); done`) never holds a thread for
    /// longer, and stays stoppable. Fails once the line is over its memory
    /// budget.
    pub async fn pause(&mut self) -> Result<(), Unwind> {
        self.yield_if_due().await;
        if self.halted() { Err(Unwind::Exit(137)) } else { Ok(()) }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(|v| v.value.as_str())
    }

    /// Assigns a variable; fails (with bash's message) when it is readonly
    /// or the value does not fit the line's memory budget.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        // `declare -i`: the value is an arithmetic expression.
        if self.vars.get(name).is_some_and(|v| v.integer) {
            let n = super::arith::eval(self, value)?;
            return self.vars.set_value(name, n.to_string()).map_err(|e| e.message(name));
        }
        self.vars.set_value(name, value.to_owned()).map_err(|e| e.message(name))
    }

    pub fn set_exported(&mut self, name: &str, value: &str) {
        let _ = self.vars.set_value(name, value.to_owned());
        self.vars.flags(name, |v| v.exported = true);
    }

    /// Assigns an array (`a=(x y z)`); `$a` is its first element.
    pub fn set_array(&mut self, name: &str, items: Array) -> Result<(), String> {
        if self.vars.get(name).is_some_and(|v| v.readonly) {
            return Err(format!("{name}: readonly variable"));
        }
        let exported = self.vars.get(name).is_some_and(|v| v.exported);
        let value = items.get(&0).cloned().unwrap_or_default();
        let var = Var { value, array: Some(items), exported, ..Default::default() };
        self.vars.insert(name.to_owned(), var).map_err(|e| e.to_string())
    }

    /// Whether `name` is an associative array (`declare -A`).
    pub fn is_assoc(&self, name: &str) -> bool {
        self.vars.get(name).is_some_and(|v| v.keyed.is_some())
    }

    /// Makes `name` an associative array (`declare -A name`), empty unless
    /// it is one already.
    pub fn make_assoc(&mut self, name: &str) -> Result<(), String> {
        if self.is_assoc(name) {
            return Ok(());
        }
        self.set_assoc(name, Keyed::new())
    }

    /// Assigns a whole associative array (`m=([k]=v …)`).
    pub fn set_assoc(&mut self, name: &str, items: Keyed) -> Result<(), String> {
        let old = self.vars.get(name);
        if old.is_some_and(|v| v.readonly) {
            return Err(format!("{name}: readonly variable"));
        }
        let exported = old.is_some_and(|v| v.exported);
        let var = Var { keyed: Some(items), exported, ..Default::default() };
        self.vars.insert(name.to_owned(), var).map_err(|e| e.to_string())
    }

    /// Assigns one element of an associative array (`m[k]=v`).
    pub fn set_key(&mut self, name: &str, key: String, value: String) -> Result<(), String> {
        self.vars.set_key(name, key, value).map_err(|e| e.message(name))
    }

    /// Puts `file` first in `BASH_SOURCE` (a sourced file or a script
    /// starts); returns the outer value for [`Shell::leave_source`].
    pub fn enter_source(&mut self, file: &str) -> Vec<String> {
        let outer = self.vars.get("BASH_SOURCE").map(|v| v.items()).unwrap_or_default();
        let items: Array =
            std::iter::once(file.to_owned()).chain(outer.iter().cloned()).enumerate().collect();
        let _ = self.set_array("BASH_SOURCE", items);
        outer
    }

    /// Puts the outer `BASH_SOURCE` back.
    pub fn leave_source(&mut self, outer: Vec<String>) {
        if outer.is_empty() {
            self.vars.remove("BASH_SOURCE");
        } else {
            let _ = self.set_array("BASH_SOURCE", outer.into_iter().enumerate().collect());
        }
    }

    /// Assigns one element of an array (`a[i]=x`): the others stay where
    /// they are, so a loop of these is not quadratic.
    pub fn set_element(&mut self, name: &str, i: usize, value: String) -> Result<(), String> {
        self.vars.set_element(name, i, value).map_err(|e| e.message(name))
    }

    pub fn unset(&mut self, name: &str) -> Result<(), String> {
        // `unset 'a[i]'`: one element of an array (the others keep their
        // indices, as bash's sparse arrays do).
        if let Some((base, rest)) = name.split_once('[')
            && let Some(index) = rest.strip_suffix(']')
        {
            if self.vars.get(base).is_some_and(|v| v.readonly) {
                return Err(format!("{base}: cannot unset: readonly variable"));
            }
            if self.is_assoc(base) {
                self.vars.remove_key(base, index);
                return Ok(());
            }
            let i = super::arith::eval(self, index)?;
            let Some(var) = self.vars.get(base) else { return Ok(()) };
            let len = var.array.as_ref().map_or(1, |a| a.keys().next_back().map_or(0, |k| k + 1));
            let is_array = var.array.is_some();
            let i = if i < 0 { i + len as i64 } else { i };
            let Ok(i) = usize::try_from(i) else {
                return Err(format!("{base}[{index}]: bad array subscript"));
            };
            // In place: a loop of these over a large array is not quadratic.
            match (is_array, i) {
                (true, _) => self.vars.remove_element(base, i),
                (false, 0) => {
                    self.vars.remove(base);
                }
                (false, _) => {}
            }
            return Ok(());
        }
        if self.vars.get(name).is_some_and(|v| v.readonly) {
            return Err(format!("{name}: cannot unset: readonly variable"));
        }
        self.vars.remove(name);
        Ok(())
    }

    /// `local NAME`: remembers the outer value for the end of the call.
    pub fn make_local(&mut self, name: &str) {
        if self.locals.last().is_some_and(|f| !f.iter().any(|s| s.name == name)) {
            let saved = self.vars.save(name);
            self.locals.last_mut().expect("checked above").push(saved);
        }
    }

    /// Puts back what `local` or a `VAR=x` prefix saved.
    pub fn restore(&mut self, saved: Saved) {
        match saved.var {
            // A refusal marks the line over budget, which stops it.
            Some(v) => {
                let _ = self.vars.insert(saved.name, v);
            }
            None => {
                self.vars.remove(&saved.name);
            }
        }
    }

    /// The environment a guest sees: exported variables and the command's
    /// own `VAR=x` prefixes.
    pub fn env_for_guest(&self, extra: &[(String, String)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .vars
            .iter()
            .filter(|(k, v)| v.exported && !extra.iter().any(|(e, _)| e == *k))
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect();
        env.extend(extra.iter().cloned());
        env.sort();
        env
    }

    /// `bash: line N: ` — the prefix bash puts on runtime errors.
    pub fn err_prefix(&self) -> String {
        format!("{}: line {}: ", self.err_name.as_deref().unwrap_or(&self.arg0), self.line)
    }

    /// The root-relative path of a (possibly relative) path the script
    /// names, or `None` when it leaves the workspace.
    pub fn resolve(&self, path: &str) -> Option<std::path::PathBuf> {
        self.exec.workspace.relative(&self.absolute(path))
    }

    /// What `set -x` puts before a traced command: PS4 (default `+ `),
    /// its first character repeated once per level of substitution.
    pub fn trace_prefix(&self) -> String {
        let ps4 = self.get("PS4").unwrap_or("+ ");
        let mut chars = ps4.chars();
        let Some(first) = chars.next() else { return String::new() };
        let mut out: String = std::iter::repeat_n(first, self.substitution_level + 1).collect();
        out.push_str(chars.as_str());
        out
    }

    /// Where `path` lives: in the workspace, or below the sandbox's private
    /// `/tmp` ([`crate::fs::Workspace::locate`]).
    pub fn locate(&self, path: &str) -> Option<(&cap_std::fs::Dir, std::path::PathBuf)> {
        self.exec.workspace.locate(&self.absolute(path))
    }

    /// A path made absolute against the working directory (not normalized).
    pub fn absolute(&self, path: &str) -> String {
        crate::fs::path::absolute(&self.cwd, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_an_element_gives_its_bytes_back() {
        let budget = Arc::new(Budget::new(1 << 20));
        let mut vars = Vars::new(budget.clone());
        vars.set_element("a", 0, "x".repeat(500)).expect("fits");
        vars.set_element("a", 7, "y".repeat(300)).expect("fits");
        let both = budget.used();
        vars.remove_element("a", 0);
        assert_eq!(vars.get("a").map(|v| v.value.as_str()), Some(""));
        assert_eq!(vars.get("a").map(Var::keys), Some(vec!["7".to_owned()]));
        assert!(budget.used() <= both - 1000, "element 0 and $a given back");
        assert_eq!(vars.get("a").map(|v| v.cost), vars.get("a").map(Var::bytes).map(|b| b + 1));
        vars.remove_element("a", 7);
        vars.remove("a");
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn associative_elements_are_charged_and_given_back() {
        let budget = Arc::new(Budget::new(1 << 20));
        let mut vars = Vars::new(budget.clone());
        let var = Var { keyed: Some(Keyed::new()), ..Default::default() };
        vars.insert("m".into(), var).expect("fits");
        let empty = budget.used();
        vars.set_key("m", "k".repeat(100), "v".repeat(1000)).expect("fits");
        assert!(budget.used() >= empty + 1100);
        // Replacing a value charges only the difference.
        vars.set_key("m", "k".repeat(100), "w".into()).expect("fits");
        assert!(budget.used() < empty + 1000);
        assert!(vars.set_key("m", "x".into(), "b".repeat(2 << 20)).is_err());
        vars.remove_key("m", &"k".repeat(100));
        assert_eq!(budget.used(), empty);
        assert_eq!(vars.get("m").map(Var::keys), Some(Vec::new()));
        vars.remove("m");
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn variables_are_charged_and_given_back() {
        let budget = Arc::new(Budget::new(1 << 20));
        let mut vars = Vars::new(budget.clone());
        vars.set_value("x", "a".repeat(1000)).expect("fits");
        let one = budget.used();
        assert!(one >= 1000);
        // Sparse: a huge index is one element.
        vars.set_element("a", 1 << 40, "y".into()).expect("fits");
        vars.set_element("a", 3, "z".into()).expect("fits");
        assert_eq!(
            vars.get("a").map(Var::keys),
            Some(vec!["3".to_owned(), (1u64 << 40).to_string()])
        );
        assert!(budget.used() < one + 1000);
        // A copy is charged again; dropping it gives it back.
        let copy = vars.clone();
        let two = budget.used();
        drop(copy);
        assert_eq!(budget.used(), two / 2);
        // Too large: refused, nothing charged, and the line is halted.
        let before = budget.used();
        assert!(vars.set_value("big", "b".repeat(2 << 20)).is_err());
        assert_eq!(budget.used(), before);
        assert!(budget.halted());
        let saved = vars.save("x");
        assert!(budget.used() > before);
        drop(saved);
        vars.remove("x");
        vars.remove("a");
        assert_eq!(budget.used(), 0);
        let args = Args::new(&budget, vec!["q".repeat(100); 3]);
        let mut copy = args.clone();
        copy.shift(2);
        drop(args);
        drop(copy);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn budget_runs_out() {
        let b = Budget::new(1 << 20);
        assert_eq!(b.take(), Some(0));
        b.commands.store(MAX_COMMANDS - 1, Ordering::Relaxed);
        assert_eq!(b.take(), Some(MAX_COMMANDS - 1));
        assert_eq!(b.take(), None);
    }
}
