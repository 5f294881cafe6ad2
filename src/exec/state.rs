//! The data of one guest's store: its WASI context, the write guard's
//! records, and the memory limiter. The engine's linker and the guard's
//! wrappers are written against it (the guard through [`Guarded`]).

use super::guard::{FsGuard, Guarded};
use wasmtime::ResourceLimiter;
use wasmtime_wasi::p1::WasiP1Ctx;

/// Per-store data of a running guest.
pub struct GuestState {
    pub wasi: WasiP1Ctx,
    /// Read-only areas and the disk quota for the guest's own writes.
    pub guard: FsGuard,
    pub limiter: MemoryLimiter,
    /// Set when the epoch callback stopped the guest for its CPU budget.
    pub cpu_exhausted: bool,
}

/// Caps linear memory and tables, and remembers that the cap was hit so the
/// outcome can name the limit instead of reporting the guest's own abort.
pub struct MemoryLimiter {
    max_memory: usize,
    /// A growth past the cap was refused.
    pub hit: bool,
    /// The largest size granted, for accounting.
    pub peak: usize,
}

impl MemoryLimiter {
    pub fn new(max_memory: usize) -> Self {
        Self { max_memory, hit: false, peak: 0 }
    }
}

/// Table elements a guest may have; generous for real programs.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.hit = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl Guarded for GuestState {
    fn wasi(&mut self) -> &mut WasiP1Ctx {
        &mut self.wasi
    }

    fn guard(&mut self) -> &mut FsGuard {
        &mut self.guard
    }
}
