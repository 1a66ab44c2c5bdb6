// SPDX-License-Identifier: GPL-2.0

//! Slab caches that live as long as the module, and `Box` allocators over them.
//!
//! Most drivers create their caches in module init and destroy them in module exit. A
//! [`StaticCache<T>`] is a `static` that holds such a cache: [`StaticCache::init`] creates it
//! and returns `&'static KmemCache<T>`, so its objects are `SlabBox<'static, T>` with no
//! lifetime to thread through the driver. Destroying it is `unsafe`
//! ([`StaticCache::destroy`]): the module promises that none of its objects is alive, which
//! holds when every object is owned by the module's data, dropped before exit completes.
//!
//! [`static_cache_allocator!`](crate::static_cache_allocator) also declares an
//! [`Allocator`](kernel::alloc::Allocator) over such a cache, so that `Box<T, ThatAllocator>`
//! works with the whole KBox API for `T`, and converts to and from `SlabBox<'static, T>` at no
//! cost.
//!
//! # Examples
//!
//! ```
//! use kernel::alloc::Box;
//! use rslab::cache::CacheOptions;
//!
//! struct Node {
//!     key: u64,
//! }
//!
//! // `#[macro_export]` puts the macro at the root of the crate that mounts the library.
//! crate::static_cache_allocator!(
//!     /// Allocates `Node`s from `NODE_CACHE`.
//!     pub NodeAlloc, NODE_CACHE: Node
//! );
//!
//! // Module init:
//! NODE_CACHE.init(c"rslab_doc_nodes", CacheOptions::new())?;
//! let n = Box::<Node, NodeAlloc>::new(Node { key: 1 }, GFP_KERNEL)?;
//! assert_eq!(n.key, 1);
//! // The same object as a `SlabBox<'static, Node>`, and back: one pointer either way.
//! let n = NodeAlloc::from_slab_box(NodeAlloc::into_slab_box(n));
//! drop(n);
//! // Module exit, after every `Node` box is gone:
//! // SAFETY: Every `Node` was dropped, and nothing else uses `NODE_CACHE`.
//! unsafe { NODE_CACHE.destroy() };
//! # Ok::<(), Error>(())
//! ```

use super::{
    cache::{free_object, CacheOptions, KmemCache},
    gfp,
};
use core::{alloc::Layout, cell::UnsafeCell, mem::MaybeUninit, ptr::NonNull};
use kernel::{
    alloc::{AllocError, Flags, NumaNode},
    bindings,
    prelude::*,
    str::CStr,
    sync::atomic::{Acquire, Atomic, Full, Relaxed, Release},
};

const EMPTY: i32 = 0;
const BUSY: i32 = 1;
const READY: i32 = 2;

/// A slab cache in a `static`, created in module init and destroyed in module exit.
///
/// # Invariants
///
/// `cache` is initialised exactly while `state` is `READY`; while it is `BUSY` one thread has
/// exclusive access to `cache`.
pub struct StaticCache<T> {
    state: Atomic<i32>,
    cache: UnsafeCell<MaybeUninit<KmemCache<T>>>,
}

// SAFETY: `cache` is written only by the one thread that moved `state` to `BUSY`, and shared
// (as `&KmemCache<T>`, which is `Sync`) only while it is `READY`.
unsafe impl<T> Sync for StaticCache<T> {}

impl<T> StaticCache<T> {
    /// An empty cache slot, for a `static`.
    pub const fn new() -> Self {
        // INVARIANT: `EMPTY`, and `cache` is uninitialised.
        Self {
            state: Atomic::new(EMPTY),
            cache: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Creates the cache. Fails with `EBUSY` if it exists already, or as [`KmemCache::new`].
    ///
    /// # Context
    ///
    /// Process context; may sleep.
    pub fn init(
        &'static self,
        name: &CStr,
        options: CacheOptions,
    ) -> Result<&'static KmemCache<T>> {
        self.state.cmpxchg(EMPTY, BUSY, Full).map_err(|_| EBUSY)?;
        match KmemCache::new(name, options) {
            Ok(c) => {
                // SAFETY: `state` is `BUSY` and was moved there by this thread.
                unsafe { (*self.cache.get()).write(c) };
                // INVARIANT: `cache` is initialised.
                self.state.store(READY, Release);
                self.get().ok_or(EINVAL)
            }
            Err(e) => {
                // INVARIANT: `cache` is still uninitialised.
                self.state.store(EMPTY, Release);
                Err(e)
            }
        }
    }

    /// The cache, if it has been created.
    #[inline]
    pub fn get(&'static self) -> Option<&'static KmemCache<T>> {
        if self.state.load(Acquire) != READY {
            return None;
        }
        // SAFETY: `READY` means `cache` is initialised and stays so until `destroy`, whose
        // caller guarantees that no reference obtained here is still in use.
        Some(unsafe { (*self.cache.get()).assume_init_ref() })
    }

    /// Destroys the cache, if it exists.
    ///
    /// # Safety
    ///
    /// No object of the cache and no reference returned by [`Self::get`] or [`Self::init`] may
    /// be alive or used afterwards, and no other thread may call into `self` concurrently.
    pub unsafe fn destroy(&'static self) {
        if self.state.cmpxchg(READY, BUSY, Full).is_ok() {
            // SAFETY: `state` was `READY`, so `cache` is initialised; this thread owns it now.
            unsafe { (*self.cache.get()).assume_init_drop() };
            // INVARIANT: `cache` is uninitialised again.
            self.state.store(EMPTY, Relaxed);
        }
    }

    /// The allocator behind [`static_cache_allocator!`](crate::static_cache_allocator).
    ///
    /// Serves exactly `Layout::new::<T>()` (and zero-sized layouts, with a dangling pointer);
    /// any other layout, and an allocation before [`Self::init`], fails with [`AllocError`].
    ///
    /// Frees with `kfree()`, which needs no cache: a `Box` of the allocator may also hold an
    /// object of another module-lifetime cache of `T`, converted from a `SlabBox<'static, T>`
    /// (see [`static_cache_allocator!`](crate::static_cache_allocator)), and may be dropped
    /// even if the cache was never created.
    ///
    /// The allocations of the allocator are, by definition, the objects of live slab caches
    /// that hold `Layout::new::<T>()`, by their start address: the ones this function returns,
    /// and those of any `SlabBox<'static, T>`. It treats them all alike: `kfree()` to free,
    /// the same pointer for the same layout, failure (leaving the object alone) otherwise.
    ///
    /// # Safety
    ///
    /// As [`kernel::alloc::Allocator::realloc`], with every allocation passed in being one of
    /// the allocator's as defined above.
    pub unsafe fn realloc(
        &'static self,
        ptr: Option<NonNull<u8>>,
        layout: Layout,
        old_layout: Layout,
        flags: Flags,
        nid: NumaNode,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let this = Layout::new::<T>();
        let old = ptr.filter(|_| old_layout.size() != 0);
        if layout.size() == 0 {
            if let Some(p) = old {
                // SAFETY: By the safety requirements `p` is an object of a live slab cache,
                // given up by the caller.
                unsafe { free_object(p) };
            }
            let dangling = NonNull::new(layout.align() as *mut u8).ok_or(AllocError)?;
            return Ok(NonNull::slice_from_raw_parts(dangling, 0));
        }
        let cache = self.get().ok_or(AllocError)?;
        if layout.size() != this.size() || layout.align() > this.align() {
            return Err(AllocError);
        }
        if let Some(p) = old {
            // Same size: the object already fits.
            return Ok(NonNull::slice_from_raw_parts(p, layout.size()));
        }
        let node = if nid == NumaNode::NO_NODE {
            bindings::NUMA_NO_NODE
        } else {
            (0..bindings::MAX_NUMNODES as i32)
                .find(|&i| NumaNode::new(i).ok() == Some(nid))
                .ok_or(AllocError)?
        };
        let gfp = gfp::slab(flags)?;
        // SAFETY: `cache` is a live cache, and `node` is `NUMA_NO_NODE` or a node number below
        // `MAX_NUMNODES`.
        let p = unsafe { super::helpers::kmem_cache_alloc_node(cache.as_raw(), gfp, node) };
        let p = NonNull::new(p.cast::<u8>()).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(p, layout.size()))
    }
}

impl<T> Default for StaticCache<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Declares a module-lifetime slab cache for a type and an allocator over it.
///
/// `static_cache_allocator!(pub NodeAlloc, NODE_CACHE: Node)` declares
/// `static NODE_CACHE: StaticCache<Node>` and a zero-sized `NodeAlloc` implementing
/// [`Allocator`](kernel::alloc::Allocator), so that `Box<Node, NodeAlloc>` allocates from the
/// cache. The allocator serves `Node`'s layout only; any other layout fails cleanly with
/// [`AllocError`]. `NodeAlloc::from_slab_box` and `NodeAlloc::into_slab_box` convert between
/// `SlabBox<'static, Node>` (from [`KmemCache::alloc`] or a sheaf slot of a module-lifetime
/// cache) and `Box<Node, NodeAlloc>`: both are the object's pointer, freed with `kfree()`, so
/// the conversions cost nothing.
///
/// The macro names [`StaticCache`] through the path of the library: `rslab` at the root of the
/// crate by default, or the path given after `in`, for a library mounted elsewhere:
/// `static_cache_allocator!(in crate::driver::slab; pub NodeAlloc, NODE_CACHE: Node)`.
///
/// Both items are documented (the kernel builds with `-Wmissing_docs`); doc comments and
/// attributes written before the allocator's name are added to the allocator. See the
/// [module documentation](self) for an example.
#[macro_export]
macro_rules! static_cache_allocator {
    (in $($lib:ident)::+; $(#[$attr:meta])* $vis:vis $alloc:ident, $cache:ident: $ty:ty) => {
        $crate::static_cache_allocator!(
            @lib [$($lib)::+] $(#[$attr])* $vis $alloc, $cache: $ty
        );
    };
    ($(#[$attr:meta])* $vis:vis $alloc:ident, $cache:ident: $ty:ty) => {
        $crate::static_cache_allocator!(
            @lib [$crate::rslab] $(#[$attr])* $vis $alloc, $cache: $ty
        );
    };
    (@lib [$($lib:tt)*] $(#[$attr:meta])* $vis:vis $alloc:ident, $cache:ident: $ty:ty) => {
        #[doc = concat!(
            "The slab cache behind [`", stringify!($alloc), "`], for `", stringify!($ty),
            "` objects: created in module init, destroyed in module exit."
        )]
        $vis static $cache: $($lib)*::static_cache::StaticCache<$ty> =
            $($lib)*::static_cache::StaticCache::new();

        $(#[$attr])*
        #[doc = concat!("Allocator over the `", stringify!($cache), "` slab cache.")]
        $vis struct $alloc;

        // SAFETY: `StaticCache::realloc` implements `Allocator::realloc` for its allocations
        // (the start of any object of a live slab cache of this layout; see its
        // documentation), which stay valid until freed through it.
        unsafe impl ::kernel::alloc::Allocator for $alloc {
            const MIN_ALIGN: usize = ::core::mem::align_of::<$ty>();

            #[inline]
            unsafe fn realloc(
                ptr: ::core::option::Option<::core::ptr::NonNull<u8>>,
                layout: ::core::alloc::Layout,
                old_layout: ::core::alloc::Layout,
                flags: ::kernel::alloc::Flags,
                nid: ::kernel::alloc::NumaNode,
            ) -> ::core::result::Result<::core::ptr::NonNull<[u8]>, ::kernel::alloc::AllocError> {
                // SAFETY: Every allocation of this allocator comes from this cache, or from a
                // `SlabBox<'static, _>` through `from_slab_box`.
                unsafe { $cache.realloc(ptr, layout, old_layout, flags, nid) }
            }
        }

        // `from_slab_box` and `into_slab_box` may go unused in a module; `#[expect]` would then
        // fail in the modules that use them.
        impl $alloc {
            /// Converts a box of a module-lifetime cache of the type into a `Box` of this
            /// allocator. Both are the object's pointer: this costs nothing.
            #[inline]
            #[allow(dead_code)]
            $vis fn from_slab_box(
                object: $($lib)*::cache::SlabBox<'static, $ty>,
            ) -> ::kernel::alloc::Box<$ty, $alloc> {
                // A zero-sized `$ty` has no cache, and its `Box` would never free the object.
                ::kernel::static_assert!(::core::mem::size_of::<$ty>() != 0);
                let ptr = $($lib)*::cache::SlabBox::into_raw(object);
                // SAFETY: `ptr` is the start of an object of a live slab cache of `$ty`'s layout
                // holding a `$ty`: by `StaticCache::realloc`'s definition, an allocation of this
                // allocator, owned from here on by the `Box`.
                unsafe { ::kernel::alloc::Box::from_raw(ptr) }
            }

            /// Converts a `Box` of this allocator into a `SlabBox<'static, _>`, at no cost.
            #[inline]
            #[allow(dead_code)]
            $vis fn into_slab_box(
                object: ::kernel::alloc::Box<$ty, $alloc>,
            ) -> $($lib)*::cache::SlabBox<'static, $ty> {
                // A zero-sized `$ty` has no cache (`KmemCache::new` refuses it), and its `Box`
                // holds a dangling pointer.
                ::kernel::static_assert!(::core::mem::size_of::<$ty>() != 0);
                let ptr = ::kernel::alloc::Box::into_raw(object);
                // SAFETY: A `Box` of this allocator of a non-zero-sized `$ty` holds the start of
                // an object of a module-lifetime cache (this one, or another one through
                // `from_slab_box`), holding a `$ty` that the `Box` gives up.
                unsafe { $($lib)*::cache::SlabBox::from_raw(ptr) }
            }
        }
    };
}

#[cfg(rslab_lib_tests)]
#[kernel::macros::kunit_tests(rslab_static_cache)]
mod tests {
    use super::super::check;
    use super::*;
    use kernel::alloc::{Box, Vec};

    #[derive(Debug, PartialEq)]
    struct Item {
        a: u64,
        b: [u32; 5],
    }

    crate::static_cache_allocator!(ItemAlloc, ITEM_CACHE: Item);

    /// A second module-lifetime cache of `Item`, whose objects `ItemAlloc` boxes may hold too.
    static OTHER_CACHE: StaticCache<Item> = StaticCache::new();

    #[test]
    fn one_box_type_for_static_caches() -> Result {
        use super::super::cache::SlabBox;
        use core::mem::size_of;
        use kernel::{
            types::ForeignOwnable,
            xarray::{AllocKind, XArray},
        };

        check!(
            size_of::<SlabBox<'static, Item>>() == size_of::<usize>()
                && size_of::<Box<Item, ItemAlloc>>() == size_of::<usize>(),
            "boxes of a static cache are one pointer"
        );
        let cache = ITEM_CACHE.init(c"rslab_test_static_box", CacheOptions::new())?;
        let other = OTHER_CACHE.init(c"rslab_test_static_other", CacheOptions::new())?;
        let r = (|| -> Result {
            // From `alloc`, a `Box` of the allocator, and back.
            let b = ItemAlloc::from_slab_box(cache.alloc(Item { a: 1, b: [1; 5] }, GFP_KERNEL)?);
            check!(b.a == 1, "SlabBox -> Box");
            let sb: SlabBox<'static, Item> = ItemAlloc::into_slab_box(b);
            check!(sb.b == [1; 5], "Box -> SlabBox");
            let b = Box::<Item, ItemAlloc>::new(Item { a: 2, b: [2; 5] }, GFP_KERNEL)?;
            check!(ItemAlloc::into_slab_box(b).a == 2, "Box::new -> SlabBox");
            // An object of the other cache, freed by the allocator's `Box`.
            drop(ItemAlloc::from_slab_box(
                other.alloc(Item { a: 3, b: [3; 5] }, GFP_KERNEL)?,
            ));

            // Handed to C and back.
            let raw = cache
                .alloc(Item { a: 4, b: [4; 5] }, GFP_KERNEL)?
                .into_foreign();
            check!(
                raw as usize % <SlabBox<'static, Item> as ForeignOwnable>::FOREIGN_ALIGN == 0,
                "foreign pointer alignment"
            );
            // SAFETY: `raw` came from `into_foreign` and is not taken back yet.
            let seen = unsafe { <SlabBox<'static, Item> as ForeignOwnable>::borrow(raw) }.a;
            // SAFETY: `raw` came from `into_foreign`; this takes it back, once.
            let back = unsafe { <SlabBox<'static, Item> as ForeignOwnable>::from_foreign(raw) };
            check!(seen == 4 && back.a == 4, "ForeignOwnable round trip");

            // Stored in the kernel's XArray, which frees what it still holds when dropped.
            let xa = KBox::pin_init(
                XArray::<SlabBox<'static, Item>>::new(AllocKind::Alloc),
                GFP_KERNEL,
            )?;
            for i in 0..8u64 {
                let o = cache.alloc(Item { a: i, b: [0; 5] }, GFP_KERNEL)?;
                check!(
                    xa.lock().store(i as usize * 3, o, GFP_KERNEL).is_ok(),
                    "XArray store"
                );
            }
            check!(xa.lock().get(9).map(|o| o.a) == Some(3), "XArray get");
            let removed = xa.lock().remove(21);
            check!(removed.map(|o| o.a) == Some(7), "XArray remove");
            drop(xa);
            Ok(())
        })();
        // SAFETY: Every object of both caches was dropped inside the closure above, and this
        // test is their only user.
        unsafe {
            ITEM_CACHE.destroy();
            OTHER_CACHE.destroy();
        }
        r
    }

    #[test]
    fn box_over_a_static_cache() -> Result {
        check!(
            Box::<Item, ItemAlloc>::new(Item { a: 0, b: [0; 5] }, GFP_KERNEL).is_err(),
            "allocation before init succeeded"
        );
        let cache = ITEM_CACHE.init(c"rslab_test_static", CacheOptions::new())?;
        let second = ITEM_CACHE.init(c"rslab_test_static2", CacheOptions::new());
        check!(matches!(second, Err(e) if e == EBUSY), "second init");
        let r = (|| -> Result {
            let b = Box::<Item, ItemAlloc>::new(Item { a: 5, b: [6; 5] }, GFP_KERNEL)?;
            check!(b.a == 5 && b.b == [6; 5], "contents");
            check!(
                Box::<Item, ItemAlloc>::new(Item { a: 0, b: [0; 5] }, GFP_KERNEL | __GFP_HIGHMEM)
                    .is_err(),
                "__GFP_HIGHMEM accepted"
            );
            let z = Box::<Item, ItemAlloc>::new_uninit(GFP_KERNEL | __GFP_ZERO)?;
            // SAFETY: Zeroed memory is a valid `Item`.
            let z = unsafe { z.assume_init() };
            check!(*z == Item { a: 0, b: [0; 5] }, "__GFP_ZERO");
            let p = Box::<Item, ItemAlloc>::pin(Item { a: 1, b: [1; 5] }, GFP_KERNEL)?;
            check!(p.a == 1, "pin");
            let sb = cache.alloc(Item { a: 2, b: [2; 5] }, GFP_KERNEL)?;
            check!(sb.a == 2, "SlabBox from the same cache");
            // Other layouts fail cleanly.
            check!(
                Vec::<Item, ItemAlloc>::with_capacity(2, GFP_KERNEL).is_err(),
                "two Items from a one-Item cache"
            );
            let mut one = Vec::<Item, ItemAlloc>::with_capacity(1, GFP_KERNEL)?;
            one.push(Item { a: 3, b: [3; 5] }, GFP_NOWAIT)?;
            check!(
                one.push(Item { a: 4, b: [4; 5] }, GFP_KERNEL).is_err(),
                "growing past one Item"
            );
            check!(
                one.len() == 1 && one[0].a == 3,
                "failed grow kept the contents"
            );
            Ok(())
        })();
        // SAFETY: Every object of the cache was dropped inside the closure above, and this test
        // is the cache's only user.
        unsafe { ITEM_CACHE.destroy() };
        r?;
        check!(
            ITEM_CACHE.get().is_none(),
            "cache still there after destroy"
        );
        check!(
            Box::<Item, ItemAlloc>::new(Item { a: 0, b: [0; 5] }, GFP_KERNEL).is_err(),
            "allocation after destroy succeeded"
        );
        Ok(())
    }
}
