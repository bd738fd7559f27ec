//! The data region of a ring: a run of bytes that producer and consumer hand back and forth.
//!
//! In a normal build a [`Region`] is a raw pointer and a length (into a shared mapping or a heap
//! buffer). Under loom each 8-byte word of the region also has a loom `UnsafeCell<()>` that is
//! touched whenever the ring code starts or finishes using a range of the region. loom then
//! reports any pair of such accesses that are not ordered by happens-before, which is exactly a
//! producer writing a record the consumer may still be reading (or the reverse).
//!
//! Record header words are accessed atomically ([`Region::load_word`], [`Region::store_word`]):
//! an SPSC record's header is its ready word, which the producer stores with Release once the
//! record is written and the consumer polls with Acquire. In a normal build the word is the
//! region's own 8 bytes seen as an `AtomicU64`; under loom, whose atomics cannot be overlaid on
//! plain bytes, each word of a heap region has a loom `AtomicU64` of its own next to its cell.

use std::ptr::NonNull;

/// Granularity of the loom access tracking; every record boundary is a multiple of it.
#[cfg(loom)]
const WORD: usize = 8;

/// A borrowed view of a ring's data region. Copying it does not copy the bytes; the owner
/// (a mapping or a heap allocation) must outlive every copy.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Region {
    ptr: NonNull<u8>,
    len: usize,
    /// One loom cell per word (heap regions under loom); `None` for shared mappings, which
    /// loom models never use.
    #[cfg(loom)]
    cells: Option<NonNull<loom::cell::UnsafeCell<()>>>,
    /// One loom atomic per word (heap regions under loom): the header words.
    #[cfg(loom)]
    atoms: Option<NonNull<loom::sync::atomic::AtomicU64>>,
}

impl Region {
    /// # Safety
    /// `ptr..ptr+len` must be valid for reads and writes for as long as the `Region` (or any
    /// copy) is used, and be 8-byte aligned.
    pub(crate) unsafe fn new(ptr: NonNull<u8>, len: usize) -> Self {
        Region {
            ptr,
            len,
            #[cfg(loom)]
            cells: None,
            #[cfg(loom)]
            atoms: None,
        }
    }

    /// A region whose accesses loom tracks.
    ///
    /// # Safety
    /// As [`Region::new`]; `cells` and `atoms` must each point to `len.div_ceil(8)` elements
    /// that live as long as the region.
    #[cfg(loom)]
    pub(crate) unsafe fn tracked(
        ptr: NonNull<u8>,
        len: usize,
        cells: NonNull<loom::cell::UnsafeCell<()>>,
        atoms: NonNull<loom::sync::atomic::AtomicU64>,
    ) -> Self {
        Region {
            ptr,
            len,
            cells: Some(cells),
            atoms: Some(atoms),
        }
    }

    /// Whether `off..off+len` lies inside the region. Every offset derived from memory a peer
    /// can write goes through this check before it is used.
    #[inline]
    pub(crate) fn contains(&self, off: usize, len: usize) -> bool {
        off <= self.len && len <= self.len - off
    }

    /// Loads the aligned 64-bit word at `off` (a record header) atomically.
    ///
    /// # Safety
    /// `off` must be 8-byte aligned and `self.contains(off, 8)`. The word may be written
    /// concurrently (atomically, by the peer's producer) — that is what the ready word is for;
    /// a peer that breaks the protocol can write anything there, and the caller validates what
    /// it reads.
    #[inline]
    pub(crate) unsafe fn load_word(&self, off: usize, order: super::Ordering) -> u64 {
        debug_assert!(off % 8 == 0 && self.contains(off, 8));
        // SAFETY: in bounds and aligned (caller contract).
        unsafe { self.word(off) }.load(order)
    }

    /// Stores the aligned 64-bit word at `off` (a record header) atomically.
    ///
    /// # Safety
    /// As [`Region::load_word`]; the caller owns the word for writing under the ring protocol
    /// (it lies in free space, or is the ready word of a record it is publishing).
    #[inline]
    pub(crate) unsafe fn store_word(&self, off: usize, v: u64, order: super::Ordering) {
        debug_assert!(off % 8 == 0 && self.contains(off, 8));
        // A store claims the word as a write (loom): a payload read of the same bytes that
        // it is not ordered with is the producer writing over a record being read. Loads are
        // not tracked, as the consumer polls the word while the producer stores it.
        self.track_write(off, 8);
        // SAFETY: in bounds and aligned (caller contract).
        unsafe { self.word(off) }.store(v, order)
    }

    /// The atomic word at `off`.
    ///
    /// # Safety
    /// `off` 8-byte aligned and `self.contains(off, 8)`.
    #[cfg(not(loom))]
    #[inline(always)]
    unsafe fn word(&self, off: usize) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: the region is valid memory, 8-byte aligned (`Region::new` contract) and
        // `off` is in bounds and aligned, so the address is a valid, aligned `AtomicU64`
        // (same size and alignment as `u64` on every target the crate builds for), which
        // every process accesses only atomically.
        unsafe {
            &*self
                .ptr
                .as_ptr()
                .add(off)
                .cast::<std::sync::atomic::AtomicU64>()
        }
    }

    /// The atomic word at `off`: the word's own loom atomic.
    ///
    /// # Safety
    /// `off` 8-byte aligned and `self.contains(off, 8)`.
    #[cfg(loom)]
    #[inline(always)]
    unsafe fn word(&self, off: usize) -> &loom::sync::atomic::AtomicU64 {
        let atoms = self
            .atoms
            .expect("loom models use heap regions, which have per-word atomics");
        // SAFETY: `off / 8 < len.div_ceil(8)`, the number of atomics (`tracked` contract).
        unsafe { &*atoms.as_ptr().add(off / 8) }
    }

    /// A shared slice of `off..off+len`.
    ///
    /// # Safety
    /// `self.contains(off, len)`; the caller owns the range for reading under the ring protocol
    /// for the lifetime `'a` it picks, and nothing in this process writes it meanwhile.
    #[inline]
    pub(crate) unsafe fn slice<'a>(&self, off: usize, len: usize) -> &'a [u8] {
        debug_assert!(self.contains(off, len));
        self.track_read(off, len);
        // SAFETY: in bounds (caller contract); u8 has no invalid bit patterns and the region is
        // initialised memory (zeroed at creation).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(off), len) }
    }

    /// A mutable slice of `off..off+len`.
    ///
    /// # Safety
    /// `self.contains(off, len)`; the caller owns the range exclusively for the lifetime `'a`.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut<'a>(&self, off: usize, len: usize) -> &'a mut [u8] {
        debug_assert!(self.contains(off, len));
        self.track_write(off, len);
        // SAFETY: in bounds (caller contract), exclusively owned by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(off), len) }
    }

    /// Marks the start or end of a read of `off..off+len` (loom only).
    #[inline]
    pub(crate) fn track_read(&self, _off: usize, _len: usize) {
        #[cfg(loom)]
        if let Some(cells) = self.cells {
            for i in self.words(_off, _len) {
                // SAFETY: `words` yields indices below len.div_ceil(8), the cell count.
                unsafe { (*cells.as_ptr().add(i)).with(|_| ()) }
            }
        }
    }

    /// Marks the start or end of a write of `off..off+len` (loom only).
    #[inline]
    pub(crate) fn track_write(&self, _off: usize, _len: usize) {
        #[cfg(loom)]
        if let Some(cells) = self.cells {
            for i in self.words(_off, _len) {
                // SAFETY: `words` yields indices below len.div_ceil(8), the cell count.
                unsafe { (*cells.as_ptr().add(i)).with_mut(|_| ()) }
            }
        }
    }

    #[cfg(loom)]
    fn words(&self, off: usize, len: usize) -> std::ops::Range<usize> {
        let end = (off + len).min(self.len);
        (off / WORD)..end.div_ceil(WORD)
    }
}

/// Copies the first `dst.len().min(src.len())` bytes of `src`, which another process may be
/// writing right now, into `dst` with volatile reads (eight bytes at a time), so that the
/// compiler assumes nothing about them: what lands in `dst` is a snapshot the caller owns,
/// which stays put while it is validated and used. Returns how many bytes were copied.
///
/// # Safety
/// `src` must be valid for reads for the duration of the call (a mapping that stays mapped;
/// its contents may change).
pub(crate) unsafe fn copy_out_volatile(src: NonNull<[u8]>, dst: &mut [u8]) -> usize {
    let n = dst.len().min(src.len());
    let src = src.cast::<u8>();
    let words = n / 8;
    for i in 0..words {
        // SAFETY: `i * 8 + 8 <= n`, inside the source (caller contract); `[u8; 8]` has
        // alignment 1, so any address is fine.
        let w = unsafe { src.as_ptr().add(i * 8).cast::<[u8; 8]>().read_volatile() };
        dst[i * 8..i * 8 + 8].copy_from_slice(&w);
    }
    for (i, b) in dst.iter_mut().enumerate().take(n).skip(words * 8) {
        // SAFETY: `i < n`, inside the source (caller contract).
        *b = unsafe { src.as_ptr().add(i).read_volatile() };
    }
    n
}

/// Copies a message into its place in the ring (`dst.len() == src.len()`). Messages of 8 to
/// 16 bytes, the most common small size, are moved with two overlapping 8-byte copies
/// inline instead of a call to `memcpy`.
#[inline(always)]
pub(crate) fn copy_in(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if (8..=16).contains(&n) && dst.len() == n {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..].copy_from_slice(&src[n - 8..]);
    } else {
        dst.copy_from_slice(src);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    #[test]
    fn copy_in_copies_every_length_exactly() {
        let src: Vec<u8> = (1..=40).collect();
        for n in 0..=src.len() {
            let mut dst = [0u8; 48];
            super::copy_in(&mut dst[3..3 + n], &src[..n]);
            assert_eq!(&dst[3..3 + n], &src[..n], "length {n}");
            assert!(
                dst[..3].iter().chain(&dst[3 + n..]).all(|&b| b == 0),
                "length {n}"
            );
        }
    }

    #[test]
    fn copy_out_volatile_copies_every_length_and_offset_exactly() {
        let src: Vec<u8> = (1..=48).collect();
        for off in 0..8 {
            for n in 0..=40 {
                // One byte more room than the source has: only the source's bytes are copied.
                let mut dst = vec![0u8; n + 1];
                let from = std::ptr::NonNull::from(&src[off..off + n]);
                // SAFETY: `from` is a live slice of `src`, which lives through the call.
                let copied = unsafe { super::copy_out_volatile(from, &mut dst) };
                assert_eq!(copied, n, "offset {off}, length {n}");
                assert_eq!(&dst[..n], &src[off..off + n], "offset {off}, length {n}");
                assert_eq!(dst[n], 0, "offset {off}, length {n}");
            }
        }
    }
}
