//! Giving memory that commands freed back to the system.
//!
//! The allocator (mimalloc) keeps freed pages in the heap of the thread that
//! freed them, and purges them to the system only when later allocations
//! pass by. A command may hold up to max-memory on the host (its shell's
//! values) and free it on a worker thread that then goes idle: without this
//! the server's resident memory would stay at its high-water mark. So every
//! worker thread, when it parks with nothing to do, collects its heap, at
//! most once a second.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// A thread collects at most this often.
const EVERY: Duration = Duration::from_secs(1);

thread_local! {
    static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// For a runtime's `on_thread_park`: collects this thread's heap if it has
/// not for [`EVERY`].
pub fn on_park() {
    let now = Instant::now();
    let due = LAST.with(|l| {
        let due = l.get().is_none_or(|t| now.duration_since(t) >= EVERY);
        if due {
            l.set(Some(now));
        }
        due
    });
    if due {
        collect();
    }
}

/// Turns transparent huge pages off for this process and the workers it
/// starts (the setting is inherited across `fork` and `exec`).
///
/// mimalloc asks for huge pages on its arenas (`MADV_HUGEPAGE`), so every
/// large buffer the server makes afresh (an `fs/readFile` of 50 MB is read
/// into one, encoded into a second and framed into a third) faults in 2 MiB
/// at a time. A profile of that case showed the server zeroing huge pages
/// in those faults for much of its time. Measured with the bench,
/// alternating: `fs/readFile` 50 MB 130/140 → 258/262 MB/s, and a short
/// command's server CPU no different beyond the noise (90/104 → 104/97 µs
/// per `echo`). Best effort: a kernel without the setting keeps its default.
pub fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

/// Collects on a thread of its own every [`EVERY`] too: the arenas' free
/// memory is purged from any thread, and a worker that stays busy may not
/// park for a long time.
pub fn start_background() {
    let _ = std::thread::Builder::new().name("mem-release".into()).spawn(|| {
        loop {
            std::thread::sleep(EVERY);
            collect();
        }
    });
}

/// Returns the calling thread's free pages (and the arenas' purged ones)
/// to the system. Harmless when mimalloc is not the global allocator: its
/// own heaps are then empty.
pub fn collect() {
    #[allow(unsafe_code)]
    // SAFETY: mi_collect takes no pointers and may be called on any thread at
    // any time; it only releases memory that is free.
    unsafe {
        libmimalloc_sys::mi_collect(true)
    };
}

/// The multi-threaded async runtime every command of the binary runs on
/// (`serve`, `exec`, `run`, and each tenant's worker), with `threads`
/// worker threads (0: one per core), parking through [`on_park`].
pub fn runtime(threads: u32) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        builder.worker_threads(threads as usize);
    }
    builder.on_thread_park(on_park).enable_all().build()
}
