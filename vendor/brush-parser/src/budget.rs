//! A bound on the work of one parse (a wasm-exec-server patch; not in
//! upstream brush-parser).
//!
//! The parsers here backtrack, and a host that parses text an attacker wrote
//! needs to know that no input keeps a thread busy. [`with_step_limit`] runs a
//! parse with a number of steps; the grammars' hot rules and the tokenizer's
//! loop each take one. The step past the limit unwinds out of the parse at
//! once (with [`std::panic::resume_unwind`], which runs no panic hook), so no
//! grammar ever sees a starved rule fail, and nothing half-parsed is cached.

use std::cell::Cell;

thread_local! {
    static LEFT: Cell<u64> = const { Cell::new(u64::MAX) };
}

/// The parse ran out of steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepLimitExceeded;

impl std::fmt::Display for StepLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("parser step limit exceeded")
    }
}

impl std::error::Error for StepLimitExceeded {}

/// Runs `parse` on this thread with at most `steps` parser steps. Calls nest:
/// the inner limit applies inside, and the outer one is restored after. A
/// panic of the parser's own passes through unchanged.
pub fn with_step_limit<R>(steps: u64, parse: impl FnOnce() -> R) -> Result<R, StepLimitExceeded> {
    struct Restore(u64);
    impl Drop for Restore {
        fn drop(&mut self) {
            LEFT.with(|left| left.set(self.0));
        }
    }
    let outer = LEFT.with(|left| left.replace(steps.min(u64::MAX - 1)));
    let _restore = Restore(outer);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse)) {
        Ok(result) => Ok(result),
        Err(payload) if payload.is::<StepLimitExceeded>() => Err(StepLimitExceeded),
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

/// Takes one step; unwinds to [`with_step_limit`] when none is left.
pub(crate) fn step() {
    steps(1);
}

/// Takes `n` steps at once, for a rule that does about `n` times the work of
/// a word-grammar rule; unwinds to [`with_step_limit`] when they are not
/// left.
pub(crate) fn steps(n: u64) {
    LEFT.with(|left| match left.get() {
        u64::MAX => {}
        have if have < n => std::panic::resume_unwind(Box::new(StepLimitExceeded)),
        have => left.set(have - n),
    });
}
