//! A bucket array of chain heads, placed for huge pages.
//!
//! A table sized for a million connections has 4 MiB of heads per key, and
//! each packet reads one at a random place: on 4 KiB pages nearly every
//! lookup also misses the TLB (a two-level page walk under virtualisation).
//! The array is therefore allocated on a 2 MiB boundary and the kernel is
//! asked (`MADV_HUGEPAGE`, before the first write) to back it with huge
//! pages, which transparent huge pages in their default `madvise` mode only
//! do for memory that asks. Where the kernel has none to give, the array
//! works the same on small pages.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Alignment of the array: one x86-64/arm64 huge page.
const HUGE_PAGE: usize = 2 << 20;

/// A fixed number of `u32`s, all starting as one value.
pub struct Heads {
    ptr: NonNull<u32>,
    len: usize,
    layout: Layout,
}

// SAFETY: `Heads` owns its memory exclusively, like a `Vec<u32>`.
unsafe impl Send for Heads {}
// SAFETY: shared access only reads, through `&[u32]`.
unsafe impl Sync for Heads {}

impl Heads {
    /// `len` heads, each `value`. Aborts like `Vec` when memory runs out.
    pub fn new(len: usize, value: u32) -> Heads {
        let len = len.max(1);
        let bytes = len
            .checked_mul(std::mem::size_of::<u32>())
            .expect("bucket array size overflows");
        // Small arrays (tests, tiny limits) need no huge page of their own.
        let align = if bytes >= HUGE_PAGE {
            HUGE_PAGE
        } else {
            std::mem::align_of::<u32>()
        };
        let layout = Layout::from_size_align(bytes, align).expect("bucket array layout");
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw.cast::<u32>()) else {
            handle_alloc_error(layout)
        };
        if align == HUGE_PAGE {
            // A hint: failure (no THP in this kernel) changes nothing.
            // SAFETY: the range is inside the allocation just made, and
            // starts on a page boundary.
            unsafe {
                libc::madvise(raw.cast(), bytes - bytes % HUGE_PAGE, libc::MADV_HUGEPAGE);
            }
        }
        // SAFETY: `len` u32s were just allocated, suitably aligned.
        unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), len) }.fill(value);
        Heads { ptr, len, layout }
    }
}

impl Deref for Heads {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        // SAFETY: `len` initialised u32s live at `ptr` while `self` does.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for Heads {
    fn deref_mut(&mut self) -> &mut [u32] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Heads {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout.
        unsafe { dealloc(self.ptr.as_ptr().cast(), self.layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_huge_arrays_hold_their_values() {
        for len in [1usize, 16, 1 << 20, (1 << 20) + 3] {
            let mut h = Heads::new(len, u32::MAX);
            assert_eq!(h.len(), len);
            assert!(h.iter().all(|&v| v == u32::MAX));
            h[0] = 9;
            h[len - 1] = 7;
            assert_eq!(h[len - 1], 7);
            assert_eq!(h[0], if len == 1 { 7 } else { 9 });
            if len * 4 >= HUGE_PAGE {
                assert_eq!(h.as_ptr() as usize % HUGE_PAGE, 0);
            }
        }
    }
}
