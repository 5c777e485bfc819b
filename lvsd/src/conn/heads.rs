//! The connection table's memory: bucket arrays of chain heads and the
//! entry pool, each a mapping placed for huge pages and touched only as far
//! as it is used.
//!
//! A table sized for a million connections has 4 MiB of heads per key and
//! 48 MiB of entries, and each packet reads a head and an entry at random
//! places: on 4 KiB pages nearly every lookup also misses the TLB (a
//! two-level page walk under virtualisation). A region of 2 MiB or more is
//! therefore its own anonymous mapping, on a 2 MiB boundary, and the kernel
//! is asked (`MADV_HUGEPAGE`, before the first write) to back it with huge
//! pages, which transparent huge pages in their default `madvise` mode only
//! do for memory that asks. Where the kernel has none to give, it works the
//! same on small pages.
//!
//! A mapping starts as zeros the kernel has not yet provided: a page
//! becomes resident when first written, so the table's resident size
//! follows the part of the arrays its buckets use (see `Table::grow`) and
//! the entries it has held, while the address space for its capacity is
//! reserved once and never moves or copies.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// One x86-64/arm64 huge page.
const HUGE_PAGE: usize = 2 << 20;
/// The smallest page mmap deals in on x86-64 and (most) arm64 kernels; a
/// 16 or 64 KiB page kernel rounds the mapping up itself.
const SMALL_PAGE: usize = 4096;

/// A private anonymous mapping of at least `bytes`, zero until written.
struct Region {
    ptr: NonNull<u8>,
    /// Bytes mapped: `bytes` rounded up to whole pages.
    len: usize,
}

// SAFETY: a `Region` owns its mapping exclusively, like a `Box<[u8]>`.
unsafe impl Send for Region {}
// SAFETY: shared access only reads, through the owners' `&[T]`.
unsafe impl Sync for Region {}

impl Region {
    /// Aborts like `Vec` when the address space runs out.
    fn new(bytes: usize) -> Region {
        let layout = std::alloc::Layout::from_size_align(bytes.max(1), HUGE_PAGE)
            .expect("connection table region size");
        // Regions under a huge page (IPv6 tables, small limits) stay on
        // small pages: a huge one would make 2 MiB resident for a few KiB.
        let huge = bytes >= HUGE_PAGE;
        let (align, len) = if huge {
            (HUGE_PAGE, bytes.next_multiple_of(HUGE_PAGE))
        } else {
            (0, bytes.max(1).next_multiple_of(SMALL_PAGE))
        };
        // Map `align` more than needed and trim the start to a boundary.
        let over = len + align;
        // SAFETY: a new private anonymous mapping; nothing else is affected.
        // NORESERVE: only the pages written are ever charged.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                over,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            std::alloc::handle_alloc_error(layout);
        }
        let base = raw as usize;
        let start = if huge {
            base.next_multiple_of(HUGE_PAGE)
        } else {
            base
        };
        // SAFETY: both ranges lie inside the mapping just made and hold
        // nothing yet; `start - base` and the tail are whole small pages.
        unsafe {
            if start > base {
                libc::munmap(raw, start - base);
            }
            let tail = base + over - (start + len);
            if tail > 0 {
                libc::munmap((start + len) as *mut libc::c_void, tail);
            }
            if huge {
                // A hint: failure (no THP in this kernel) changes nothing.
                libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
            }
        }
        let Some(ptr) = NonNull::new(start as *mut u8) else {
            std::alloc::handle_alloc_error(layout)
        };
        Region { ptr, len }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: exactly the part of the mapping `new` kept.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A fixed number of `u32` chain heads, all zero at first.
pub struct Heads {
    region: Region,
    len: usize,
}

impl Heads {
    pub fn zeroed(len: usize) -> Heads {
        let bytes = len
            .checked_mul(std::mem::size_of::<u32>())
            .expect("bucket array size");
        Heads {
            region: Region::new(bytes),
            len,
        }
    }
}

impl Deref for Heads {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        // SAFETY: the region holds `len` u32s (zero until written, a valid
        // u32), page-aligned, for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.region.ptr.as_ptr().cast(), self.len) }
    }
}

impl DerefMut for Heads {
    fn deref_mut(&mut self) -> &mut [u32] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.region.ptr.as_ptr().cast(), self.len) }
    }
}

/// A vector of `Copy` values with a fixed capacity reserved up front: it
/// never reallocates, so it never copies or briefly doubles a large table.
/// (Only `Copy` values go in, so nothing needs dropping.)
pub struct Pool<T> {
    region: Region,
    len: usize,
    cap: usize,
    _values: PhantomData<T>,
}

impl<T: Copy> Pool<T> {
    pub fn with_capacity(cap: usize) -> Pool<T> {
        let bytes = cap
            .checked_mul(std::mem::size_of::<T>())
            .expect("entry pool size");
        assert!(std::mem::align_of::<T>() <= SMALL_PAGE);
        Pool {
            region: Region::new(bytes),
            len: 0,
            cap,
            _values: PhantomData,
        }
    }

    /// Appends `v` and returns its index, or gives `v` back when full.
    pub fn push(&mut self, v: T) -> Result<usize, T> {
        if self.len == self.cap {
            return Err(v);
        }
        // SAFETY: `len < cap`, so the slot lies inside the region, aligned
        // (page-aligned start, `T`-sized slots).
        unsafe { self.region.ptr.as_ptr().cast::<T>().add(self.len).write(v) };
        self.len += 1;
        Ok(self.len - 1)
    }
}

impl<T: Copy> Deref for Pool<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the first `len` slots were written by `push`.
        unsafe { std::slice::from_raw_parts(self.region.ptr.as_ptr().cast(), self.len) }
    }
}

impl<T: Copy> DerefMut for Pool<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.region.ptr.as_ptr().cast(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_start_zeroed_aligned_and_hold_their_values() {
        for len in [1usize, 16, 1 << 20, (1 << 20) + 3] {
            let mut h = Heads::zeroed(len);
            assert_eq!(h.len(), len);
            assert!(h.iter().all(|&v| v == 0));
            h[0] = 9;
            h[len - 1] = 7;
            assert_eq!(h[len - 1], 7);
            assert_eq!(h[0], if len == 1 { 7 } else { 9 });
            if len * 4 >= HUGE_PAGE {
                assert_eq!(h.as_ptr() as usize % HUGE_PAGE, 0);
            }
        }
    }

    #[test]
    fn pool_holds_what_was_pushed_up_to_its_capacity() {
        for cap in [1u32, 3, 100_000] {
            let n = cap as usize;
            let mut p: Pool<(u64, u32)> = Pool::with_capacity(n);
            for i in 0..cap {
                assert_eq!(p.push((u64::from(i), !i)), Ok(i as usize));
            }
            assert_eq!(p.push((7, 7)), Err((7, 7)), "full at {cap}");
            assert_eq!(p.len(), n);
            assert!((0..cap).all(|i| p[i as usize] == (u64::from(i), !i)));
            p[n - 1].0 = 42;
            assert_eq!(p[n - 1], (42, !(cap - 1)));
        }
        let empty: Pool<u32> = Pool::with_capacity(0);
        assert!(empty.is_empty());
    }
}
