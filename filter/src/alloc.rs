//! The module's allocator: small blocks from free lists by size class, the
//! rest from the standard one (wasi-libc's dlmalloc).
//!
//! A request allocates and frees a few hundred small blocks (header names
//! and values, the decision's strings, the ledger line), and with dlmalloc
//! those calls were the largest part of the filter's own instructions. Here
//! a block of at most [`LARGEST`] bytes is popped from its class's list and
//! pushed back when freed, a handful of instructions each. A VM runs on one
//! thread (Envoy gives each worker its own), so the lists need no lock.
//!
//! Blocks of a class are carved from slabs taken from the standard
//! allocator and never given back: what the module holds is at most each
//! class's highest use at once, rounded up to a slab. (The standard
//! allocator keeps what it frees too: wasm memory never shrinks.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr::null_mut;

/// Block sizes: 16 bytes to [`LARGEST`], doubling.
const CLASSES: usize = 8;
const SMALLEST_SHIFT: u32 = 4;
const LARGEST: usize = 1 << (SMALLEST_SHIFT as usize + CLASSES - 1);
/// Every block is aligned to its slab's alignment, at least this.
const ALIGN: usize = 16;
/// Blocks carved per slab (a slab of 16-byte blocks is 512 bytes, of the
/// largest 64 KiB).
const BLOCKS_PER_SLAB: usize = 32;

struct Lists {
    /// Each class's first free block; a free block holds the next one's address.
    free: [*mut u8; CLASSES],
    /// Each class's slab being carved: the next block and the slab's end.
    next: [*mut u8; CLASSES],
    end: [*mut u8; CLASSES],
}

pub struct Classes(UnsafeCell<Lists>);

// SAFETY: the module runs on one thread (wasm32 without threads); the
// allocator is never shared across threads.
unsafe impl Sync for Classes {}

impl Classes {
    pub const fn new() -> Self {
        Classes(UnsafeCell::new(Lists {
            free: [null_mut(); CLASSES],
            next: [null_mut(); CLASSES],
            end: [null_mut(); CLASSES],
        }))
    }
}

/// The class of a block of `layout`, if one fits it.
fn class_of(layout: Layout) -> Option<usize> {
    if layout.size() > LARGEST || layout.align() > ALIGN {
        return None;
    }
    let size = layout.size().max(1 << SMALLEST_SHIFT);
    // The smallest power of two >= size, as a shift past the smallest class.
    let shift = usize::BITS - (size - 1).leading_zeros();
    Some(shift.saturating_sub(SMALLEST_SHIFT) as usize)
}

fn block_size(class: usize) -> usize {
    1 << (SMALLEST_SHIFT as usize + class)
}

unsafe impl GlobalAlloc for Classes {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            // SAFETY: the caller's layout, passed on.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: one thread; no reference to the lists outlives this call.
        let lists = unsafe { &mut *self.0.get() };
        let (Some(free), Some(next), Some(end)) =
            (lists.free.get_mut(class), lists.next.get_mut(class), lists.end.get_mut(class))
        else {
            return null_mut();
        };
        if !free.is_null() {
            let block = *free;
            // SAFETY: a free block of this class holds the next free block's address.
            *free = unsafe { block.cast::<*mut u8>().read() };
            return block;
        }
        let size = block_size(class);
        if *next == *end {
            let Ok(slab) = Layout::from_size_align(size * BLOCKS_PER_SLAB, ALIGN) else { return null_mut() };
            // SAFETY: a valid, non-zero layout.
            let start = unsafe { System.alloc(slab) };
            if start.is_null() {
                return null_mut();
            }
            *next = start;
            // SAFETY: within (one past the end of) the slab just allocated.
            *end = unsafe { start.add(slab.size()) };
        }
        let block = *next;
        // SAFETY: `next` < `end` within one slab, both multiples of `size` apart.
        *next = unsafe { block.add(size) };
        block
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout) else {
            // SAFETY: allocated by `System` with this layout (see `alloc`).
            return unsafe { System.dealloc(ptr, layout) };
        };
        // SAFETY: one thread; no reference to the lists outlives this call.
        let lists = unsafe { &mut *self.0.get() };
        if let Some(free) = lists.free.get_mut(class) {
            // SAFETY: the block is ours again, at least 16 bytes and aligned to 16.
            unsafe { ptr.cast::<*mut u8>().write(*free) };
            *free = ptr;
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else { return null_mut() };
        match (class_of(layout), class_of(new_layout)) {
            // Still fits its block.
            (Some(old), Some(new)) if old == new => ptr,
            // SAFETY: both from `System`, the caller's layout and size passed on.
            (None, None) => unsafe { System.realloc(ptr, layout, new_size) },
            _ => {
                // SAFETY: a valid layout; the old block is read up to the smaller size, then freed.
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_fall_in_the_smallest_class_that_holds_them() {
        let class = |size, align| class_of(Layout::from_size_align(size, align).unwrap());
        assert_eq!(class(0, 1), Some(0));
        assert_eq!(class(1, 1), Some(0));
        assert_eq!(class(16, 8), Some(0));
        assert_eq!(class(17, 1), Some(1));
        assert_eq!(class(32, 1), Some(1));
        assert_eq!(class(33, 16), Some(2));
        assert_eq!(class(LARGEST, 1), Some(CLASSES - 1));
        assert_eq!(class(LARGEST + 1, 1), None);
        assert_eq!(class(8, 32), None, "an alignment past 16 goes to the standard allocator");
        for size in 1..=LARGEST {
            let c = class(size, 1).unwrap();
            assert!(block_size(c) >= size && (c == 0 || block_size(c - 1) < size), "{size}");
        }
    }

    #[test]
    fn blocks_are_reused_and_never_overlap() {
        let a = Classes::new();
        let layout = |size| Layout::from_size_align(size, 8).unwrap();
        unsafe {
            let mut live: Vec<(*mut u8, usize)> = Vec::new();
            // Enough blocks to need several slabs of every class.
            for i in 0..2000usize {
                let size = 1 + (i * 37) % (LARGEST + 300);
                let p = a.alloc(layout(size));
                assert!(!p.is_null());
                assert_eq!(p as usize % ALIGN, 0);
                std::ptr::write_bytes(p, (i % 251) as u8, size);
                live.push((p, size));
                if i % 3 == 0 {
                    let (p, size) = live.swap_remove(i % live.len());
                    a.dealloc(p, layout(size));
                }
            }
            // Every live block still holds what was written to it: none overlapped.
            let mut spans: Vec<(usize, usize)> = live.iter().map(|(p, s)| (*p as usize, *p as usize + s)).collect();
            spans.sort();
            assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0));
            // A freed block is handed out again before a new one is carved.
            let (p, size) = live.pop().unwrap();
            a.dealloc(p, layout(size));
            assert_eq!(a.alloc(layout(size)), p);
            // Growing within a class keeps the block; past it moves the bytes.
            let q = a.alloc(layout(20));
            std::ptr::write_bytes(q, 7, 20);
            assert_eq!(a.realloc(q, layout(20), 32), q);
            let r = a.realloc(q, layout(20), 100);
            assert_ne!(r, q);
            assert!((0..20).all(|i| *r.add(i) == 7));
            let big = a.realloc(r, layout(100), 10_000);
            assert!((0..20).all(|i| *big.add(i) == 7));
            a.dealloc(big, layout(10_000));
        }
    }
}
