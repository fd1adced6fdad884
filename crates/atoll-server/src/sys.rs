//! The one place the server talks to libc directly.

/// Returns freed heap memory to the operating system. glibc keeps large
/// freed blocks for reuse; after a rare big allocation (Argon2's 19 MiB)
/// that would otherwise stay in the process's RSS for good.
#[allow(unsafe_code)]
pub fn release_free_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it
    // takes no pointers from us and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
