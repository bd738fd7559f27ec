//! Heap storage: a ring's memory in this process, for rings between threads (`channel()`)
//! and for the loom models, which can only use this storage.
//!
//! The data region is laid out as in a shared mapping (128-byte aligned, slot headers inside
//! their slots), so a heap ring moves the same cache lines as a shared one. Under loom the
//! region also gets one loom cell per 8-byte word, touched on every access (see
//! [`Region`]), and slot headers live in an array of their own, as loom's atomics cannot
//! be placed in plain bytes. This is the only file that builds heap rings, so the ring files
//! do not know about either difference.
//!
//! A heap ring may also have an endpoint registry (`shm::ModelRegistry`) and a claim table,
//! as a shared ring has ([`HeapRing::build_registered`]): that is how the loom models reach the
//! registry and crash-recovery code of MPMC rings. The rings of `channel()` have neither.

use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use super::doorbell::HeapBell;
use super::region::Region;
use crate::storage::{Backing, Registry, Storage};

/// Zeroed heap memory for the data region of an in-process ring, aligned as a shared mapping's
/// data region is (128 bytes, the pair of cache lines that the adjacent-line prefetcher moves
/// together), so that heap and shared rings lay out their records alike. Without it, a ring's
/// cache-line pairs depend on where the allocator put the buffer, and throughput between two
/// threads changes several-fold from one ring to the next.
struct HeapBytes(Box<[Chunk]>);

#[repr(C, align(128))]
struct Chunk(std::cell::UnsafeCell<[u64; 16]>);

impl HeapBytes {
    /// At least `len` zeroed bytes.
    fn zeroed(len: usize) -> HeapBytes {
        HeapBytes(
            (0..len.div_ceil(128))
                .map(|_| Chunk(std::cell::UnsafeCell::new([0; 16])))
                .collect(),
        )
    }

    /// The first byte. The bytes may be written through it (they are inside `UnsafeCell`s)
    /// for as long as `self` lives and is not moved out of its box.
    fn ptr(&self) -> NonNull<u8> {
        NonNull::from(&*self.0).cast::<u8>()
    }

    /// Number of bytes.
    fn len(&self) -> usize {
        self.0.len() * 128
    }
}

/// A ring's memory on the heap: its control block `C` and a zeroed data region, with a slot
/// header `M` at the start of every slot if the ring has slots, and, for a ring built with
/// [`HeapRing::build_registered`], an endpoint registry and a claim table of `K` lines.
pub(crate) struct HeapRing<C, M = (), K = ()> {
    ctrl: Box<C>,
    data: HeapBytes,
    data_len: usize,
    registry: Option<Box<dyn Registry + Send + Sync>>,
    claims: Box<[K]>,
    /// The doorbell for ends parked in an event loop (see `doorbell`).
    bell: Arc<HeapBell>,
    #[cfg(loom)]
    meta: Box<[M]>,
    #[cfg(loom)]
    cells: Box<[loom::cell::UnsafeCell<()>]>,
    #[cfg(loom)]
    atoms: Box<[loom::sync::atomic::AtomicU64]>,
    _meta: std::marker::PhantomData<M>,
}

impl<C, M, K> fmt::Debug for HeapRing<C, M, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeapRing")
            .field("bytes", &self.data_len)
            .field("registry", &self.registry.is_some())
            .finish_non_exhaustive()
    }
}

// SAFETY: the data bytes are accessed only through `Region` under the ring protocol, which
// gives each byte a single owner at a time; the control block and slot headers are atomics
// (`C`, `M` and the claim lines `K` are themselves `Send + Sync`).
unsafe impl<C: Send + Sync, M: Send + Sync, K: Send + Sync> Sync for HeapRing<C, M, K> {}
// SAFETY: as above; nothing in it is tied to a thread.
unsafe impl<C: Send + Sync, M: Send + Sync, K: Send + Sync> Send for HeapRing<C, M, K> {}

impl<C, M, K> Backing for HeapRing<C, M, K>
where
    C: Send + Sync + 'static,
    M: Send + Sync + 'static,
    K: Send + Sync + 'static,
{
    fn registry(&self) -> Option<&dyn Registry> {
        self.registry.as_deref().map(|r| r as &dyn Registry)
    }

    fn bell(&self) -> Option<&Arc<HeapBell>> {
        Some(&self.bell)
    }
}

/// A heap ring's parts, as the ring code uses them.
pub(crate) struct HeapParts<C, K = ()> {
    pub(crate) ctrl: NonNull<C>,
    pub(crate) region: Region,
    /// Slot `i`'s header is at `meta + i * meta_stride`.
    pub(crate) meta: NonNull<u8>,
    pub(crate) meta_stride: usize,
    /// The first line of the claim table (`build_registered`), one per registry entry.
    pub(crate) claims: Option<NonNull<K>>,
    pub(crate) storage: Storage,
}

impl<C: Send + Sync + 'static, M: Send + Sync + 'static> HeapRing<C, M> {
    /// Allocates a ring: `ctrl`, `data_len` zeroed bytes, and `slots` slot headers made by
    /// `meta(i)`, one every `stride` bytes of the region (`slots * stride <= data_len`;
    /// `stride` a multiple of `M`'s alignment, which is at most 128).
    pub(crate) fn build(
        ctrl: C,
        data_len: usize,
        slots: usize,
        stride: usize,
        meta: impl Fn(usize) -> M,
    ) -> HeapParts<C> {
        HeapRing::<C, M>::alloc(ctrl, data_len, slots, stride, meta, None, [])
    }
}

impl<C, M, K> HeapRing<C, M, K>
where
    C: Send + Sync + 'static,
    M: Send + Sync + 'static,
    K: Send + Sync + 'static,
{
    /// As [`HeapRing::build`], for a ring with an endpoint registry and a claim table, as a
    /// shared ring has: the storage's `registry()` is `registry`, and `claims` (one line per
    /// registry entry) is the claim table.
    pub(crate) fn build_registered(
        ctrl: C,
        data_len: usize,
        slots: usize,
        stride: usize,
        meta: impl Fn(usize) -> M,
        registry: impl Registry + Send + Sync + 'static,
        claims: impl IntoIterator<Item = K>,
    ) -> HeapParts<C, K> {
        let registry: Box<dyn Registry + Send + Sync> = Box::new(registry);
        HeapRing::<C, M, K>::alloc(ctrl, data_len, slots, stride, meta, Some(registry), claims)
    }

    fn alloc(
        ctrl: C,
        data_len: usize,
        slots: usize,
        stride: usize,
        meta: impl Fn(usize) -> M,
        registry: Option<Box<dyn Registry + Send + Sync>>,
        claims: impl IntoIterator<Item = K>,
    ) -> HeapParts<C, K> {
        const { assert!(!std::mem::needs_drop::<M>() && std::mem::align_of::<M>() <= 128) };
        assert!(slots.checked_mul(stride).is_some_and(|n| n <= data_len));
        assert!(slots == 0 || stride % std::mem::align_of::<M>() == 0);
        let data = HeapBytes::zeroed(data_len);
        #[cfg(not(loom))]
        for i in 0..slots {
            // SAFETY: `i * stride + size_of::<M>() <= data_len` when M fits its stride (the
            // ring's slot size is at least its header); the offset is a multiple of M's
            // alignment from a 128-byte aligned start; the bytes are ours (not yet shared).
            // `M` needs no drop, so overwriting zero bytes leaks nothing.
            unsafe { data.ptr().add(i * stride).cast::<M>().write(meta(i)) };
        }
        let ring = Arc::new(HeapRing::<C, M, K> {
            ctrl: Box::new(ctrl),
            data,
            data_len,
            registry,
            claims: claims.into_iter().collect(),
            bell: Arc::new(HeapBell::new()),
            #[cfg(loom)]
            meta: (0..slots).map(meta).collect(),
            #[cfg(loom)]
            cells: (0..data_len.div_ceil(8))
                .map(|_| loom::cell::UnsafeCell::new(()))
                .collect(),
            #[cfg(loom)]
            atoms: (0..data_len.div_ceil(8))
                .map(|_| loom::sync::atomic::AtomicU64::new(0))
                .collect(),
            _meta: std::marker::PhantomData::<M>,
        });
        #[cfg(not(loom))]
        let _ = &meta;
        // Pointers are taken after the move into the Arc, which keeps everything in place.
        let ctrl = NonNull::from(&*ring.ctrl);
        // SAFETY: `data` holds at least `data_len` writable bytes, 128-byte aligned, owned by
        // `ring`, which every handle keeps alive (and in place) through the storage.
        #[cfg(not(loom))]
        let region = unsafe { Region::new(ring.data.ptr(), data_len) };
        // SAFETY: as above; `cells` and `atoms` hold one element per word of the region and
        // live as long.
        #[cfg(loom)]
        let region = unsafe {
            Region::tracked(
                ring.data.ptr(),
                data_len,
                NonNull::from(&*ring.cells).cast(),
                NonNull::from(&*ring.atoms).cast(),
            )
        };
        #[cfg(not(loom))]
        let (meta, meta_stride) = (ring.data.ptr(), stride);
        #[cfg(loom)]
        let (meta, meta_stride) = (
            NonNull::from(&*ring.meta).cast::<u8>(),
            std::mem::size_of::<M>(),
        );
        let claims = ring
            .registry
            .is_some()
            .then(|| NonNull::from(&*ring.claims).cast::<K>());
        debug_assert!(ring.data.len() >= data_len);
        HeapParts {
            ctrl,
            region,
            meta,
            meta_stride,
            claims,
            storage: Storage::new(ring),
        }
    }
}
