//! The process's memory allocator: mimalloc, tuned once per role.
//!
//! glibc's malloc took a fifth of `vigie hunt`'s CPU, and its arena locks made
//! the reader and writer threads wait on each other (one frees what the other
//! allocated). With mimalloc the hunt does 21 to 27 % more events per
//! CPU-second (`scripts/bench/hunt`, docs/vigie-hunt.md).

use libmimalloc_sys::mi_option_t;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// Options of mimalloc v2's `mi_option_e` that libmimalloc-sys does not name
// (the version is pinned by Cargo.lock).
const ARENA_EAGER_COMMIT: mi_option_t = 4;
const PURGE_DELAY: mi_option_t = 15;

/// mimalloc commits whole arenas up front on Linux, which raised the peak RSS
/// of `vigie hunt` by 35 MB; committing pages as they are used costs no
/// measurable speed. The option must be set before the first allocation
/// creates the first arena, hence a constructor that runs before `main`.
#[used]
#[unsafe(link_section = ".init_array")]
static COMMIT_AS_USED: extern "C" fn() = commit_as_used;

extern "C" fn commit_as_used() {
    // SAFETY: an option setter; it allocates nothing and may run at any time.
    unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0) }
}

/// For the agent, which lives on every endpoint under a memory budget: give
/// freed pages back at once instead of after 10 ms (a file storm's peak RSS
/// went from 56 to 49 MB; glibc: 51 MB).
pub fn favour_memory() {
    // SAFETY: as above.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) }
}
