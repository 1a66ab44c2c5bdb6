// SPDX-License-Identifier: GPL-2.0

//! Typed slab caches.
//!
//! A [`KmemCache<T>`] is a slab cache for objects of type `T`, created with
//! `__kmem_cache_create_args()` and destroyed when it is dropped.
// upstream-part alloc: begin
//!
//! Objects are handed out as [`SlabBox<'c, T>`], an owning pointer that borrows the cache: the
//! borrow checker, not a reference count, makes it impossible to destroy the cache while an
//! object still needs it. Allocation and free touch no atomic counter of rslab's.
// upstream-part alloc: end
//!
// upstream-omit: begin
//! For the common case of a cache that lives as long as the module, create it in module init
//! and keep it in a [`StaticCache`](super::static_cache::StaticCache); its objects are
//! `SlabBox<'static, T>`.
//!
// upstream-omit: end
// upstream-part alloc: begin
//! # Examples
//!
//! ```
//! use rslab::cache::{CacheOptions, KmemCache};
//!
//! struct Node {
//!     key: u64,
//!     value: u64,
//! }
//!
//! let cache = KmemCache::<Node>::new(c"rslab_doc_node", CacheOptions::new())?;
//! let n = cache.alloc(Node { key: 1, value: 2 }, GFP_KERNEL)?;
//! assert_eq!(n.key + n.value, 3);
//! drop(n);
//! drop(cache); // kmem_cache_destroy(); `n` could not outlive it.
//! # Ok::<(), Error>(())
//! ```
// upstream-part alloc: end

use core::{marker::PhantomData, mem, ptr::NonNull};
use kernel::{bindings, prelude::*, str::CStr};
// upstream-part alloc: begin
use core::ops::{Deref, DerefMut};
use kernel::alloc::{AllocError, Flags};
// upstream-part alloc: end
// upstream-part init: begin
use core::pin::Pin;
// upstream-part init: end
// upstream-part foreign: begin
use kernel::{ffi::c_void, types::ForeignOwnable};
// upstream-part foreign: end
// upstream-omit: begin
use core::ops::Range;
use kernel::{
    transmute::{AsBytes, FromBytes},
    uaccess::{UserSliceReader, UserSliceWriter},
};
// upstream-omit: end

// upstream-part alloc: begin
/// The flags the slab allocator does not accept: the kernel's `GFP_SLAB_BUG_MASK`
/// (`__GFP_DMA32 | __GFP_HIGHMEM | ~__GFP_BITS_MASK`, from `mm/internal.h`), built from the
/// bit numbers of `include/linux/gfp_types.h`.
pub const SLAB_BUG_MASK: u32 = (1 << bindings::___GFP_DMA32_BIT)
    | (1 << bindings::___GFP_HIGHMEM_BIT)
    | !((1 << bindings::___GFP_LAST_BIT) - 1);

#[cfg(rslab_kernel_crate)]
/// The raw `gfp_t` of `flags`.
#[inline]
pub(crate) fn raw_gfp(flags: Flags) -> u32 {
    flags.as_raw()
}

#[cfg(not(rslab_kernel_crate))]
/// The raw `gfp_t` of `flags`.
#[inline]
pub(crate) fn raw_gfp(flags: Flags) -> u32 {
    super::gfp::raw(flags)
}

/// The raw `gfp_t` of `flags` for a slab call, or [`AllocError`] for flags in
/// [`SLAB_BUG_MASK`]: the slab allocator would fix those up with an "Unexpected gfp" warning
/// and a stack dump.
#[inline]
pub(crate) fn slab_gfp(flags: Flags) -> Result<u32, AllocError> {
    let raw = raw_gfp(flags);
    if raw & SLAB_BUG_MASK != 0 {
        return Err(AllocError);
    }
    Ok(raw)
}
// upstream-part alloc: end

/// Creation-time flags of a slab cache (`SLAB_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CacheFlags(u32);

impl CacheFlags {
    /// No flags.
    pub const NONE: Self = Self(0);
    /// Align objects to a cache line (`SLAB_HWCACHE_ALIGN`).
    pub const HWCACHE_ALIGN: Self = Self(1 << bindings::_slab_flag_bits__SLAB_HWCACHE_ALIGN);
    /// Never merge this cache with another one (`SLAB_NO_MERGE`).
    pub const NO_MERGE: Self = Self(1 << bindings::_slab_flag_bits__SLAB_NO_MERGE);
    /// Charge every object to the memory cgroup of the task that allocates it
    /// (`SLAB_ACCOUNT`), as if each allocation passed `__GFP_ACCOUNT`. An object taken from a
    /// sheaf is charged when it is taken, and that charge is forced: it may exceed the
    /// cgroup's limit but never fails. Without `CONFIG_MEMCG` there is nothing to charge and
    /// this flag is empty.
    #[cfg(CONFIG_MEMCG)]
    pub const ACCOUNT: Self = Self(1 << bindings::_slab_flag_bits__SLAB_ACCOUNT);
    /// Charge every object to the memory cgroup of the task that allocates it
    /// (`SLAB_ACCOUNT`); empty, because this kernel has no `CONFIG_MEMCG`.
    #[cfg(not(CONFIG_MEMCG))]
    pub const ACCOUNT: Self = Self(0);
    // upstream-omit: begin
    /// Full slab debugging for this cache alone, as `slab_debug=FZPU,<name>` would give:
    /// consistency checks, red zones, poisoning and owner tracking. Such a cache has no
    /// per-CPU sheaves (sheaf capacity 0), so every prefill takes the oversize path.
    pub const DEBUG: Self = Self(
        1 << bindings::_slab_flag_bits__SLAB_CONSISTENCY_CHECKS
            | 1 << bindings::_slab_flag_bits__SLAB_RED_ZONE
            | 1 << bindings::_slab_flag_bits__SLAB_POISON
            | 1 << bindings::_slab_flag_bits__SLAB_STORE_USER,
    );
    // upstream-omit: end
}

impl core::ops::BitOr for CacheFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

// upstream-part sheaf: begin
/// Room set aside for the header of a sheaf (`struct slab_sheaf`, private to `mm/slub.c`: 32
/// bytes on 64-bit kernels of 7.x).
// upstream-omit: begin
/// The sheaf tests measure the running kernel's header and check that it fits.
// upstream-omit: end
pub const SHEAF_HEADER_MAX: usize = 64;

/// The most objects one sheaf can hold, per-CPU ([`CacheOptions::sheaf_capacity`]) or prefilled.
///
/// The kernel allocates a sheaf, its header and its array of object pointers, as one kmalloc
/// object, so they must fit `KMALLOC_MAX_SIZE`; a larger sheaf would make the page allocator
/// warn before the allocation fails.
pub const MAX_SHEAF_OBJECTS: usize =
    (bindings::KMALLOC_MAX_SIZE as usize - SHEAF_HEADER_MAX) / mem::size_of::<*mut u8>();
// upstream-part sheaf: end

/// How to create a [`KmemCache`].
#[derive(Clone, Copy, Debug)]
pub struct CacheOptions {
    // upstream-part sheaf: begin
    sheaf_capacity: u32,
    // upstream-part sheaf: end
    flags: CacheFlags,
    // upstream-omit: begin
    useroffset: usize,
    usersize: usize,
    // upstream-omit: end
}

impl CacheOptions {
    /// Defaults: no flags.
    // upstream-part sheaf: begin
    /// No minimum sheaf capacity (the kernel picks one).
    // upstream-part sheaf: end
    // upstream-omit: begin
    /// No usercopy region.
    // upstream-omit: end
    pub const fn new() -> Self {
        Self {
            // upstream-part sheaf: begin
            sheaf_capacity: 0,
            // upstream-part sheaf: end
            flags: CacheFlags::NONE,
            // upstream-omit: begin
            useroffset: 0,
            usersize: 0,
            // upstream-omit: end
        }
    }

    // upstream-omit: begin
    /// The bytes of each object that may be copied to or from user space: `size` bytes at
    /// `offset` (`kmem_cache_args.useroffset`/`usersize`).
    ///
    /// With `CONFIG_HARDENED_USERCOPY` (on in most distribution kernels) the kernel kills a task
    /// whose `copy_to_user()` or `copy_from_user()` touches a slab object outside its cache's
    /// region; a cache without one allows no copy at all. [`KmemCache::copy_to_user`] and
    /// [`KmemCache::copy_from_user`] check the region first and return an error instead.
    /// [`KmemCache::new`] refuses a region that does not lie within `T` with `EINVAL`.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::mem::{offset_of, size_of};
    /// use rslab::cache::{CacheOptions, KmemCache};
    ///
    /// #[repr(C)]
    /// struct Request {
    ///     owner: u64,
    ///     payload: [u8; 48],
    /// }
    ///
    /// // Only `payload` may travel to and from user space.
    /// let payload = offset_of!(Request, payload);
    /// let options = CacheOptions::new().usercopy(payload, size_of::<[u8; 48]>());
    /// let cache = KmemCache::<Request>::new(c"rslab_doc_usercopy", options)?;
    /// assert_eq!(cache.usercopy_region(), 8..56);
    /// # Ok::<(), Error>(())
    /// ```
    pub const fn usercopy(mut self, offset: usize, size: usize) -> Self {
        self.useroffset = offset;
        self.usersize = size;
        self
    }
    // upstream-omit: end

    // upstream-part sheaf: begin
    /// The minimum number of objects a per-CPU sheaf holds (`kmem_cache_args.sheaf_capacity`).
    /// Prefilling up to this many objects takes the fast path; the kernel may round it up.
    ///
    /// [`KmemCache::new`] refuses a capacity above [`MAX_SHEAF_OBJECTS`] with `E2BIG`.
    pub const fn sheaf_capacity(mut self, capacity: u32) -> Self {
        self.sheaf_capacity = capacity;
        self
    }
    // upstream-part sheaf: end

    /// Creation flags.
    pub const fn flags(mut self, flags: CacheFlags) -> Self {
        self.flags = flags;
        self
    }
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// A slab cache for objects of type `T`.
///
/// `KmemCache` has no `Drop` implementation of its own: the cache is destroyed by its
/// `RawCache` field, which does not mention `T`. That lets `T` hold references with the
/// cache's own lifetime (`Node<'c>` linking to `SlabBox<'c, Node<'c>>`), which drop checking
/// would otherwise refuse; destroying a cache never touches a `T`.
///
/// # Invariants
///
/// - `raw` is a cache created for objects of `size_of::<T>()` bytes aligned to at least
///   `align_of::<T>()`.
// upstream-omit: begin
/// - Its usercopy region is `useroffset..useroffset + usersize`, within `size_of::<T>()`.
// upstream-omit: end
pub struct KmemCache<T> {
    raw: RawCache,
    // upstream-omit: begin
    useroffset: usize,
    usersize: usize,
    // upstream-omit: end
    _t: PhantomData<T>,
}

// SAFETY: The cache owns no `T` (objects are owned by `SlabBox`, which carries its own `Send`
// bound), and `RawCache` may move between threads.
unsafe impl<T> Send for KmemCache<T> {}

// SAFETY: All slab operations on a cache are thread-safe, and `&KmemCache<T>` gives no access
// to any `T`.
unsafe impl<T> Sync for KmemCache<T> {}

/// An owned `struct kmem_cache`, destroyed on drop.
///
/// # Invariants
///
/// `0` points to a live cache owned by this value; `1` is its name, as `helpers::create()`
/// returned them together.
struct RawCache(NonNull<bindings::kmem_cache>, super::helpers::Name);

// SAFETY: A `struct kmem_cache` may be used and destroyed from any thread.
unsafe impl Send for RawCache {}

// SAFETY: All slab operations on a cache are thread-safe.
unsafe impl Sync for RawCache {}

impl Drop for RawCache {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the cache is live, made by `helpers::create()` and owned
        // by `self`, which is not used again. Every box, sheaf, slot and charged object of the
        // cache borrows the `KmemCache` that owns `self`, so none is alive and nothing uses the
        // cache afterwards. Objects may remain all the same, if their owner was leaked
        // (`mem::forget`): then, unless the cache was merged with another (then only a
        // reference is dropped, and the objects stay in the shared cache),
        // `kmem_cache_destroy()` warns "Slab cache still has objects",
        // lists them, and leaves the cache and its slabs allocated instead of freeing them, as
        // it does for C. Nothing can reach those objects any more, so that is a leak, not a
        // use after free.
        unsafe { super::helpers::destroy(self.0.as_ptr(), &self.1) };
    }
}

impl<T> KmemCache<T> {
    /// Creates a cache named `name` (shown in `/proc/slabinfo`) for objects of type `T`.
    ///
    /// Fails with `EINVAL` for a zero-sized `T` or one too large for a slab (the kernel's limit
    /// for a slab object is `KMALLOC_MAX_SIZE`), and with `ENOMEM` when the kernel cannot create
    /// the cache.
    // upstream-part sheaf: begin
    /// A sheaf capacity above [`MAX_SHEAF_OBJECTS`] fails with `E2BIG`.
    // upstream-part sheaf: end
    // upstream-omit: begin
    /// A usercopy region that does not lie within `T` fails with `EINVAL`.
    // upstream-omit: end
    ///
    /// The name must be one that tools can parse, and unique: an empty name or one with a space
    /// fails with `EINVAL` (with `CONFIG_DEBUG_VM` the kernel would warn about the space; sysfs
    /// about an empty name). A driver that creates one cache per device names each after its
    /// device.
    // upstream-omit: begin
    /// Alternatively, the devices share one [`StaticCache`].
    // upstream-omit: end
    ///
    /// With the library's C helpers (`cfg(rslab_helpers)`), which keep a list of the module's
    /// cache names, a name that a live cache of the same module already has fails with `EEXIST`
    /// (with `CONFIG_DEBUG_VM` the kernel would warn about the duplicate, and a second cache of
    /// one name that is not merged with the first is created without its sysfs directory, after
    /// a "cannot create duplicate filename" stack dump). Caches of other modules are not
    /// checked: the kernel does not export its list, so a name should carry the driver's
    /// prefix.
    ///
    // upstream-omit: begin
    /// [`StaticCache`]: super::static_cache::StaticCache
    ///
    // upstream-omit: end
    /// # Context
    ///
    /// Process context; may sleep.
    pub fn new(name: &CStr, options: CacheOptions) -> Result<Self> {
        let bytes = name.to_bytes();
        if bytes.is_empty() || bytes.contains(&b' ') {
            return Err(EINVAL);
        }
        let size = mem::size_of::<T>();
        if size == 0 || size > bindings::KMALLOC_MAX_SIZE as usize {
            return Err(EINVAL);
        }
        // upstream-part sheaf: begin
        if options.sheaf_capacity as usize > MAX_SHEAF_OBJECTS {
            return Err(E2BIG);
        }
        // upstream-part sheaf: end
        // upstream-omit: begin
        let (useroffset, usersize) = (options.useroffset, options.usersize);
        if useroffset
            .checked_add(usersize)
            .is_none_or(|end| end > size)
        {
            return Err(EINVAL);
        }
        // An empty region has no offset: the kernel warns about an offset without a size.
        let useroffset = if usersize == 0 { 0 } else { useroffset };
        // upstream-omit: end
        let mut args = bindings::kmem_cache_args {
            align: mem::align_of::<T>() as u32,
            // upstream-omit: begin
            // Both are at most `size`, which is at most `KMALLOC_MAX_SIZE`.
            useroffset: useroffset as u32,
            usersize: usersize as u32,
            // upstream-omit: end
            // upstream-part sheaf: begin
            sheaf_capacity: options.sheaf_capacity,
            // upstream-part sheaf: end
            ..pin_init::zeroed()
        };
        // SAFETY: `args` is a valid, initialised argument block for the duration of the call.
        let (ptr, name) = unsafe {
            super::helpers::create(
                name,
                size as u32,
                &mut args,
                options.flags.0 as bindings::slab_flags_t,
            )?
        };
        // INVARIANT: The cache was created for `size_of::<T>()` bytes at `align_of::<T>()` by
        // `helpers::create()`, and is owned by the new `RawCache`.
        // upstream-omit: begin
        // Its usercopy region was checked above.
        // upstream-omit: end
        Ok(Self {
            raw: RawCache(NonNull::new(ptr).ok_or(ENOMEM)?, name),
            // upstream-omit: begin
            useroffset,
            usersize,
            // upstream-omit: end
            _t: PhantomData,
        })
    }

    // upstream-omit: begin
    /// The bytes of each object that may be copied to or from user space (see
    /// [`CacheOptions::usercopy`]); empty when there is no region.
    pub fn usercopy_region(&self) -> Range<usize> {
        self.useroffset..self.useroffset + self.usersize
    }
    // upstream-omit: end

    /// The raw cache pointer, for calls the wrappers do not cover.
    pub fn as_raw(&self) -> *mut bindings::kmem_cache {
        self.raw.0.as_ptr()
    }

    // upstream-part alloc: begin
    /// Allocates an object and moves `value` into it.
    ///
    /// Fails with [`AllocError`] when the slab has no memory, or when `flags` has a bit the slab
    /// allocator does not accept (see [`SLAB_BUG_MASK`]).
    ///
    /// # Context
    ///
    /// May sleep if `flags` allows it.
    pub fn alloc(&self, value: T, flags: Flags) -> Result<SlabBox<'_, T>, AllocError> {
        let slot = self.alloc_uninit(slab_gfp(flags)?)?;
        // SAFETY: `slot` is valid for writes of a `T` and properly aligned.
        unsafe { slot.as_ptr().write(value) };
        // SAFETY: `slot` is an object of this cache and now holds an initialised `T`.
        Ok(unsafe { SlabBox::from_object(slot, self) })
    }
    // upstream-part alloc: end

    // upstream-part init: begin
    /// Allocates an object and initialises it in place with `init`. On error nothing leaks.
    ///
    /// Fails with `EINVAL` when `flags` has a bit the slab allocator does not accept (see
    /// [`SLAB_BUG_MASK`]), `ENOMEM` without memory, and with the initialiser's error.
    ///
    /// # Context
    ///
    /// May sleep if `flags` allows it.
    pub fn init<E>(&self, init: impl Init<T, E>, flags: Flags) -> Result<SlabBox<'_, T>>
    where
        Error: From<E>,
    {
        let slot = self.alloc_uninit(slab_gfp(flags).map_err(|_| EINVAL)?)?;
        // SAFETY: `slot` is valid for writes of a `T`, properly aligned, and not used again if
        // the initialiser fails.
        match unsafe { init.__init(slot.as_ptr()) } {
            // SAFETY: `slot` is an object of this cache and now holds an initialised `T`.
            Ok(()) => Ok(unsafe { SlabBox::from_object(slot, self) }),
            Err(e) => {
                // SAFETY: `slot` came from this cache and holds no value.
                unsafe { self.free_raw(slot) };
                Err(e.into())
            }
        }
    }

    /// Allocates an object, initialises it in place with the pinned initialiser `init`, and
    /// returns it pinned. On error nothing leaks; the errors are those of [`Self::init`].
    ///
    /// # Context
    ///
    /// May sleep if `flags` allows it.
    pub fn pin_init<E>(&self, init: impl PinInit<T, E>, flags: Flags) -> Result<Pin<SlabBox<'_, T>>>
    where
        Error: From<E>,
    {
        let slot = self.alloc_uninit(slab_gfp(flags).map_err(|_| EINVAL)?)?;
        // SAFETY: `slot` is valid for writes of a `T`, properly aligned, never moves (it is a
        // slab object until it is freed), and is not used again if the initialiser fails.
        match unsafe { super::pin_init_slot(slot.as_ptr(), init) } {
            // SAFETY: `slot` is an object of this cache and now holds an initialised `T`.
            Ok(()) => Ok(SlabBox::into_pin(unsafe {
                SlabBox::from_object(slot, self)
            })),
            Err(e) => {
                // SAFETY: `slot` came from this cache and holds no value.
                unsafe { self.free_raw(slot) };
                Err(e.into())
            }
        }
    }

    // upstream-part init: end

    // upstream-part alloc: begin
    /// Allocates an uninitialised object with `gfp`, raw flags checked by `slab_gfp()`.
    #[inline]
    fn alloc_uninit(&self, gfp: u32) -> Result<NonNull<T>, AllocError> {
        // SAFETY: By `RawCache`'s invariant, `self.as_raw()` is a live cache.
        let p = unsafe { super::helpers::kmem_cache_alloc(self.as_raw(), gfp) };
        NonNull::new(p.cast()).ok_or(AllocError)
    }
    // upstream-part alloc: end

    // upstream-part init: begin
    /// Returns an object's memory to the cache without dropping anything.
    ///
    /// # Safety
    ///
    /// `ptr` must be an object of this cache that is not used afterwards.
    pub(crate) unsafe fn free_raw(&self, ptr: NonNull<T>) {
        // SAFETY: By the safety requirements, `ptr` is an object of this live cache.
        unsafe { bindings::kmem_cache_free(self.as_raw(), ptr.as_ptr().cast()) };
    }
    // upstream-part init: end
}

// upstream-omit: begin
impl<T> KmemCache<T> {
    /// Returns bytes `offset..offset + len` of `object`, if they lie within the cache's usercopy
    /// region.
    fn user_bytes(
        &self,
        object: &SlabBox<'_, T>,
        offset: usize,
        len: usize,
    ) -> Result<NonNull<[u8]>>
    where
        T: AsBytes,
    {
        let region = self.usercopy_region();
        match offset.checked_add(len) {
            Some(end) if offset >= region.start && end <= region.end => {
                // SAFETY: `offset + len` is within `size_of::<T>()` by `KmemCache`'s invariant,
                // so the pointer stays inside the object.
                let start = unsafe { object.ptr.cast::<u8>().add(offset) };
                Ok(NonNull::slice_from_raw_parts(start, len))
            }
            _ => Err(EPERM),
        }
    }

    /// Copies bytes `offset..offset + len` of `object` to user space through `writer`.
    ///
    /// Fails with `EPERM`, copying nothing, when the bytes are not all inside the cache's
    /// usercopy region ([`CacheOptions::usercopy`]), where hardened usercopy would kill the
    /// task; with `EFAULT` as [`UserSliceWriter::write_slice`] does.
    ///
    /// # Safety
    ///
    /// `object` must be an object of this cache. A box stores no cache (it is one pointer), and
    /// with `CONFIG_HARDENED_USERCOPY` the kernel checks the copy against the region of the
    /// object's own cache: an object of another cache of `T`, whose region differs, would make
    /// it kill the task (`usercopy_abort()`).
    ///
    /// # Context
    ///
    /// Process context; may sleep (page faults).
    pub unsafe fn copy_to_user(
        &self,
        object: &SlabBox<'_, T>,
        writer: &mut UserSliceWriter,
        offset: usize,
        len: usize,
    ) -> Result
    where
        T: AsBytes,
    {
        let bytes = self.user_bytes(object, offset, len)?;
        // SAFETY: `T: AsBytes`, so every byte of the object is initialised; `bytes` lies within
        // the object, which is borrowed for the duration of the call.
        writer.write_slice(unsafe { bytes.as_ref() })
    }

    /// Copies `len` bytes from user space through `reader` into bytes `offset..offset + len`
    /// of `object`.
    ///
    /// Fails with `EPERM`, changing nothing, when the bytes are not all inside the cache's
    /// usercopy region; with `EFAULT` as [`UserSliceReader::read_slice`] does (the object may
    /// then hold part of the data).
    ///
    /// # Safety
    ///
    /// `object` must be an object of this cache (see [`Self::copy_to_user`]).
    ///
    /// # Context
    ///
    /// Process context; may sleep (page faults).
    pub unsafe fn copy_from_user(
        &self,
        object: &mut SlabBox<'_, T>,
        reader: &mut UserSliceReader,
        offset: usize,
        len: usize,
    ) -> Result
    where
        T: AsBytes + FromBytes,
    {
        let mut bytes = self.user_bytes(object, offset, len)?;
        // SAFETY: `T: AsBytes`, so the bytes are initialised, and `T: FromBytes`, so any bytes
        // written keep the object a valid `T`; `object` is borrowed mutably for the call.
        reader.read_slice(unsafe { bytes.as_mut() })
    }
}
// upstream-omit: end

// upstream-part alloc: begin
/// An owning pointer to a `T` in a [`KmemCache<T>`]; dropping it drops the `T` and frees the
/// object.
///
/// A `SlabBox` is one pointer, as a C driver's object pointer is: the lifetime `'c` ties it to
/// its cache at compile time, and nothing is stored for it. The object is freed with `kfree()`,
/// which finds the cache of any slab object from the object itself
/// (`Documentation/core-api/memory-allocation.rst` allows it for `kmem_cache_alloc()` objects);
/// that costs a few instructions more per free than `kmem_cache_free()`, which is given the
/// cache.
///
// upstream-part foreign: begin
/// A box of a cache that lives as long as the module is a `SlabBox<'static, T>`: it can be
/// handed to C or stored in the kernel's `XArray` through [`ForeignOwnable`].
// upstream-part foreign: end
// upstream-omit: begin
/// Such a cache is a [`StaticCache`](super::static_cache::StaticCache), and its boxes convert
/// to and from the `Box` of a [`static_cache_allocator!`](crate::static_cache_allocator) at no
/// cost.
// upstream-omit: end
///
/// # Examples
///
/// ```
/// use core::mem::size_of;
/// use rslab::cache::{CacheOptions, KmemCache, SlabBox};
///
/// assert_eq!(size_of::<SlabBox<'_, u64>>(), size_of::<usize>());
/// assert_eq!(size_of::<Option<SlabBox<'_, u64>>>(), size_of::<usize>());
///
/// let cache = KmemCache::<u64>::new(c"rslab_doc_raw", CacheOptions::new())?;
/// let object = cache.alloc(42, GFP_KERNEL)?;
// upstream-part foreign: begin
/// let raw = SlabBox::into_raw(object);
/// // SAFETY: `raw` came from `SlabBox::into_raw` of a box of `cache`, which is still alive.
/// let object = unsafe { SlabBox::<'_, u64>::from_raw(raw) };
// upstream-part foreign: end
/// assert_eq!(*object, 42);
/// # Ok::<(), Error>(())
/// ```
///
/// # Invariants
///
/// `ptr` is the start of an object of a slab cache that lives at least for `'c` (the address
/// `kmem_cache_alloc()` returned for it), holding an initialised `T`, owned by this value.
pub struct SlabBox<'c, T> {
    ptr: NonNull<T>,
    // `KmemCache<T>` owns no `T` but mentions it, so the box is covariant in `T`, `Unpin` like
    // `Box`, and, having a `Drop` implementation, keeps the cache borrowed until it is dropped.
    _cache: PhantomData<&'c KmemCache<T>>,
}

// One pointer, and `Option<SlabBox>` too.
kernel::static_assert!(mem::size_of::<SlabBox<'static, u64>>() == mem::size_of::<usize>());
kernel::static_assert!(mem::size_of::<Option<SlabBox<'static, u64>>>() == mem::size_of::<usize>());

// SAFETY: `SlabBox` owns its `T` like `Box` does, and `kfree()` may free it on any thread.
unsafe impl<T: Send> Send for SlabBox<'_, T> {}

// SAFETY: `&SlabBox` only gives `&T`.
unsafe impl<T: Sync> Sync for SlabBox<'_, T> {}

/// Frees a slab object without dropping anything in it.
///
/// # Safety
///
/// `ptr` must be the start of an object of a live slab cache (the address the allocation
/// returned), owned by the caller and not used afterwards.
#[inline]
pub(crate) unsafe fn free_object<T>(ptr: NonNull<T>) {
    // SAFETY: By the safety requirements `ptr` is the start of a live slab object the caller
    // gives up; `kfree()` accepts objects of any slab cache, not only kmalloc's.
    unsafe { bindings::kfree(ptr.as_ptr().cast()) };
}

impl<'c, T> SlabBox<'c, T> {
    /// Takes ownership of an object of `cache`; `cache` only ties the box's lifetime to it.
    ///
    /// # Safety
    ///
    /// `ptr` must be the start of an object of `cache` that holds an initialised `T` and is
    /// owned by the caller, who gives that ownership up.
    #[inline]
    pub(crate) unsafe fn from_object(ptr: NonNull<T>, _cache: &'c KmemCache<T>) -> Self {
        // SAFETY: By the safety requirements; `cache` is borrowed for `'c`, so it lives that
        // long.
        unsafe { Self::from_owned(ptr) }
    }

    /// Takes ownership of an object.
    ///
    /// # Safety
    ///
    /// `ptr` must be the start of an object of a slab cache that lives at least for `'c`,
    /// holding an initialised `T`, owned by the caller, who gives that ownership up.
    #[inline]
    pub(crate) unsafe fn from_owned(ptr: NonNull<T>) -> Self {
        // INVARIANT: By the safety requirements.
        Self {
            ptr,
            _cache: PhantomData,
        }
    }

    // upstream-part foreign: begin
    /// Gives up ownership of the object and returns its pointer, as [`KBox::into_raw`] does.
    /// [`Self::from_raw`] takes it back.
    ///
    /// The cache is no longer borrowed once the box is gone: the caller must take the object
    /// back (or free it) before the cache is destroyed, or `kmem_cache_destroy()` reports the
    /// object and leaks the cache.
    #[inline]
    pub fn into_raw(this: Self) -> *mut T {
        mem::ManuallyDrop::new(this).ptr.as_ptr()
    }

    /// Takes back ownership of an object given up by [`Self::into_raw`].
    ///
    /// # Safety
    ///
    /// `ptr` must be the start of an object of a slab cache that lives at least for `'c` (the
    /// address `kmem_cache_alloc()` returned, not a pointer into the object), holding an
    /// initialised `T`, and the caller must own it and give that ownership up: as when `ptr`
    /// comes from [`SlabBox::into_raw`] of a `SlabBox<'c2, T>` with `'c2: 'c`, not taken back
    /// yet.
    #[inline]
    pub unsafe fn from_raw(ptr: *mut T) -> Self {
        // SAFETY: By the safety requirements `ptr` is the start of an object (so it is not NULL)
        // of a cache that lives for `'c`, holding a `T` whose ownership the caller gives up.
        unsafe { Self::from_owned(NonNull::new_unchecked(ptr)) }
    }
    // upstream-part foreign: end

    // upstream-part init: begin
    /// Pins the object; it never moves anyway.
    pub fn into_pin(this: Self) -> Pin<Self> {
        // SAFETY: The object lives at the same address until it is freed, and `SlabBox` gives
        // no way to move it out of a `Pin<SlabBox>`.
        unsafe { Pin::new_unchecked(this) }
    }
    // upstream-part init: end

    // upstream-part foreign: begin
    /// Moves the value out and frees the object.
    pub fn into_inner(this: Self) -> T {
        let this = mem::ManuallyDrop::new(this);
        // SAFETY: By the type invariant the object holds a `T`; `this` is not dropped, so the
        // value is read exactly once.
        let value = unsafe { this.ptr.as_ptr().read() };
        // SAFETY: By the type invariant the object belongs to a live cache and is owned by
        // `this`, which is not used again.
        unsafe { free_object(this.ptr) };
        value
    }
    // upstream-part foreign: end
}

impl<T> Deref for SlabBox<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: By the type invariant `ptr` holds an initialised `T` owned by `self`.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> DerefMut for SlabBox<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: By the type invariant `ptr` holds an initialised `T` owned by `self`.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T> Drop for SlabBox<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: By the type invariant the object holds a `T` owned by `self`.
        unsafe { core::ptr::drop_in_place(self.ptr.as_ptr()) };
        // SAFETY: By the type invariant the object belongs to a live cache and is owned by
        // `self`, which is not used again.
        unsafe { free_object(self.ptr) };
    }
}
// upstream-part alloc: end

// upstream-part foreign: begin
// SAFETY: `into_foreign` returns the non-NULL start of a slab object holding a `T`. The slab
// aligns every object to at least `align_of::<T>()` (the cache's alignment) and to the size of
// a pointer (`calculate_alignment()` in mm/slab_common.c; red zones and KFENCE keep it).
unsafe impl<T: 'static> ForeignOwnable for SlabBox<'static, T> {
    const FOREIGN_ALIGN: usize = if mem::align_of::<T>() < mem::size_of::<usize>() {
        mem::size_of::<usize>()
    } else {
        mem::align_of::<T>()
    };

    type Borrowed<'a>
        = &'a T
    where
        Self: 'a;
    type BorrowedMut<'a>
        = &'a mut T
    where
        Self: 'a;

    fn into_foreign(self) -> *mut c_void {
        Self::into_raw(self).cast()
    }

    unsafe fn from_foreign(ptr: *mut c_void) -> Self {
        // SAFETY: By the safety requirements `ptr` comes from `into_foreign`, i.e. from
        // `into_raw` of a box of a cache that lives for `'static`, not taken back yet: the start
        // of an object holding a `T`.
        unsafe { Self::from_raw(ptr.cast()) }
    }

    unsafe fn borrow<'a>(ptr: *mut c_void) -> &'a T {
        // SAFETY: By the safety requirements the object stays alive and is not changed for
        // `'a`.
        unsafe { &*ptr.cast::<T>() }
    }

    unsafe fn borrow_mut<'a>(ptr: *mut c_void) -> &'a mut T {
        // SAFETY: By the safety requirements the object stays alive and nothing else uses it
        // for `'a`.
        unsafe { &mut *ptr.cast::<T>() }
    }
}
// upstream-part foreign: end

#[cfg(rslab_lib_tests)]
#[kernel::macros::kunit_tests(rslab_cache)]
mod tests {
    use super::super::check;
    use super::*;
    use core::cell::Cell;
    use kernel::sync::atomic::{Atomic, Relaxed};
    // upstream-omit: begin
    use kernel::{
        ffi::c_ulong,
        uaccess::{UserPtr, UserSlice},
    };
    // upstream-omit: end

    struct Counted<'a> {
        drops: &'a Cell<usize>,
        value: u64,
    }

    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            self.drops.set(self.drops.get() + 1);
        }
    }

    #[test]
    fn objects_are_dropped_and_freed() -> Result {
        let drops = Cell::new(0);
        let cache = KmemCache::<Counted<'_>>::new(c"rslab_test_counted", CacheOptions::new())?;
        let mut v = KVec::new();
        for i in 0..100 {
            v.push(
                cache.alloc(
                    Counted {
                        drops: &drops,
                        value: i,
                    },
                    GFP_KERNEL,
                )?,
                GFP_KERNEL,
            )?;
        }
        check!(v.iter().map(|c| c.value).sum::<u64>() == 4950, "values");
        drop(v);
        check!(drops.get() == 100, "{} drops", drops.get());
        let one = cache.alloc(
            Counted {
                drops: &drops,
                value: 7,
            },
            GFP_KERNEL,
        )?;
        let inner = SlabBox::into_inner(one);
        check!(inner.value == 7 && drops.get() == 100, "into_inner");
        drop(inner);
        check!(drops.get() == 101, "into_inner value dropped");
        Ok(())
    }

    #[repr(align(64))]
    struct Aligned([u8; 72]);

    #[test]
    fn objects_are_aligned_for_their_type() -> Result {
        let cache = KmemCache::<Aligned>::new(c"rslab_test_aligned", CacheOptions::new())?;
        for _ in 0..64 {
            let a = cache.alloc(Aligned([1; 72]), GFP_KERNEL)?;
            check!(
                (&raw const *a) as usize % 64 == 0 && a.0[71] == 1,
                "misaligned"
            );
        }
        Ok(())
    }

    #[test]
    fn failed_init_leaks_nothing() -> Result {
        static STARTED: Atomic<usize> = Atomic::new(0);
        let cache = KmemCache::<[u64; 4]>::new(c"rslab_test_init", CacheOptions::new())?;
        for _ in 0..32 {
            let r = cache.init(
                // SAFETY: The closure fails without initialising anything.
                unsafe {
                    pin_init::init_from_closure(|_slot: *mut [u64; 4]| {
                        STARTED.fetch_add(1, Relaxed);
                        Err(EAGAIN)
                    })
                },
                GFP_KERNEL,
            );
            check!(
                matches!(r, Err(e) if e == EAGAIN),
                "init error not passed on"
            );
        }
        let p = cache.pin_init(pin_init::init_zeroed::<[u64; 4]>(), GFP_KERNEL)?;
        check!(p.iter().all(|&x| x == 0), "pin_init");
        check!(
            STARTED.load(Relaxed) == 32,
            "initialiser ran {} times",
            STARTED.load(Relaxed)
        );
        // upstream-omit: begin
        // Dropping the cache now must not report "objects remaining" (the runner checks).
        // upstream-omit: end
        Ok(())
    }

    #[test]
    fn bad_types_are_refused() -> Result {
        let zst = KmemCache::<()>::new(c"rslab_test_zst", CacheOptions::new());
        check!(
            matches!(zst, Err(e) if e == EINVAL),
            "zero-sized type accepted"
        );
        check!(
            matches!(
                KmemCache::<[u8; 8 << 20]>::new(c"rslab_test_huge", CacheOptions::new()),
                Err(e) if e == EINVAL
            ),
            "8 MiB type accepted"
        );
        Ok(())
    }

    // upstream-part sheaf: begin
    #[test]
    fn sheaf_capacity_beyond_a_sheaf_is_refused() -> Result {
        // 1 << 20 objects would need an 8 MiB pointer array: the page allocator would warn
        // before failing. rslab refuses it before the kernel sees it.
        for capacity in [1 << 20, MAX_SHEAF_OBJECTS as u32 + 1, u32::MAX] {
            check!(
                matches!(
                    KmemCache::<u64>::new(
                        c"rslab_test_capacity",
                        CacheOptions::new().sheaf_capacity(capacity)
                    ),
                    Err(e) if e == E2BIG
                ),
                "sheaf capacity {} accepted",
                capacity
            );
        }
        let c = KmemCache::<u64>::new(
            c"rslab_test_capacity",
            CacheOptions::new().sheaf_capacity(1024),
        )?;
        check!(*c.alloc(5, GFP_KERNEL)? == 5, "cache with capacity 1024");
        Ok(())
    }
    // upstream-part sheaf: end

    #[test]
    fn flags_the_slab_rejects_are_errors() -> Result {
        // A fresh cache: its first allocation needs a new slab, where the kernel would warn
        // "Unexpected gfp" for these flags.
        let c = KmemCache::<[u64; 3]>::new(c"rslab_test_gfp", CacheOptions::new())?;
        for flags in [
            GFP_KERNEL | __GFP_HIGHMEM,
            GFP_ATOMIC | __GFP_HIGHMEM,
            !GFP_KERNEL,
        ] {
            check!(c.alloc([1; 3], flags).is_err(), "alloc accepted bad flags");
            check!(
                matches!(c.init(pin_init::init_zeroed(), flags), Err(e) if e == EINVAL),
                "init accepted bad flags"
            );
            check!(
                matches!(c.pin_init(pin_init::init_zeroed(), flags), Err(e) if e == EINVAL),
                "pin_init accepted bad flags"
            );
        }
        check!(
            c.alloc([2; 3], GFP_KERNEL)?[2] == 2,
            "good flags after bad ones"
        );
        Ok(())
    }

    // upstream-omit: begin
    // From include/uapi/asm-generic/mman-common.h (x86_64 and arm64 use these values); the
    // bindings do not carry them.
    const PROT_READ: c_ulong = 0x1;
    const PROT_WRITE: c_ulong = 0x2;
    const MAP_PRIVATE: c_ulong = 0x02;
    const MAP_ANONYMOUS: c_ulong = 0x20;

    /// One page of user memory for the running test: `kunit_vm_mmap()` gives the test's
    /// kthread an address space with an anonymous mapping, removed when the test ends.
    fn user_page() -> Result<usize> {
        // SAFETY: Always safe to call; NULL outside a test.
        let test = unsafe { bindings::kunit_get_current_test() };
        check!(!test.is_null(), "not running in a KUnit test");
        // SAFETY: `test` is the running test; the arguments ask for a fresh anonymous page.
        let addr = unsafe {
            bindings::kunit_vm_mmap(
                test,
                core::ptr::null_mut(),
                0,
                kernel::page::PAGE_SIZE as c_ulong,
                PROT_READ | PROT_WRITE,
                MAP_ANONYMOUS | MAP_PRIVATE,
                0,
            )
        } as usize;
        // Zero, or an error code (the last page of the address space), when it failed.
        check!(
            addr != 0 && addr < usize::MAX - 4095,
            "kunit_vm_mmap: {:#x}",
            addr
        );
        Ok(addr)
    }

    fn user(addr: usize, len: usize) -> UserSlice {
        UserSlice::new(UserPtr::from_addr(addr), len)
    }

    #[test]
    fn usercopy_region_to_and_from_user_space() -> Result {
        // Bytes 16..48 of each 64-byte object may be copied; hardened usercopy (on in the test
        // kernel) kills a task that copies any other byte of it.
        let cache = KmemCache::<[u64; 8]>::new(
            c"rslab_test_usercopy",
            CacheOptions::new().usercopy(16, 32),
        )?;
        check!(cache.usercopy_region() == (16..48), "region");
        let page = user_page()?;
        let a = cache.alloc(
            core::array::from_fn(|i| 0x0101_0101_0101_0101 * (i as u64 + 1)),
            GFP_KERNEL,
        )?;

        // SAFETY: The object is one of `cache`'s.
        unsafe { cache.copy_to_user(&a, &mut user(page, 32).writer(), 16, 32) }?;
        let mut back = [0u8; 32];
        user(page, 32).reader().read_slice(&mut back)?;
        check!(
            back == AsBytes::as_bytes(&*a)[16..48],
            "bytes copied to user space"
        );

        let mut b = cache.alloc([0; 8], GFP_KERNEL)?;
        // SAFETY: The object is one of `cache`'s.
        unsafe { cache.copy_from_user(&mut b, &mut user(page, 32).reader(), 16, 32) }?;
        check!(b[2..6] == a[2..6], "bytes copied from user space");
        // A part of the region.
        // SAFETY: The object is one of `cache`'s.
        unsafe { cache.copy_from_user(&mut b, &mut user(page, 8).reader(), 40, 8) }?;
        check!(b[5] == a[2], "partial copy");

        // Anything reaching outside the region is refused before the kernel is asked, and
        // copies nothing either way.
        let marker = [0x5au8; 64];
        user(page, 64).writer().write_slice(&marker)?;
        let before = *b;
        for (offset, len) in [(0, 8), (8, 16), (40, 16), (48, 8), (0, 64), (usize::MAX, 2)] {
            // SAFETY: The object is one of `cache`'s.
            let to = unsafe { cache.copy_to_user(&a, &mut user(page, 64).writer(), offset, len) };
            check!(
                matches!(to, Err(e) if e == EPERM),
                "copy of {}..+{} to user space",
                offset,
                len
            );
            // SAFETY: The object is one of `cache`'s.
            let from =
                unsafe { cache.copy_from_user(&mut b, &mut user(page, 64).reader(), offset, len) };
            check!(
                matches!(from, Err(e) if e == EPERM),
                "copy of {}..+{} from user space",
                offset,
                len
            );
        }
        let mut now = [0u8; 64];
        user(page, 64).reader().read_slice(&mut now)?;
        check!(
            now == marker && *b == before,
            "a refused copy changed something"
        );

        // A bad user address is EFAULT, as for any copy.
        // SAFETY: The object is one of `cache`'s.
        let bad = unsafe { cache.copy_to_user(&a, &mut user(16, 32).writer(), 16, 32) };
        check!(matches!(bad, Err(e) if e == EFAULT), "bad user address");

        // Without a region nothing may be copied.
        let closed = KmemCache::<[u64; 8]>::new(c"rslab_test_no_usercopy", CacheOptions::new())?;
        let c = closed.alloc([1; 8], GFP_KERNEL)?;
        check!(closed.usercopy_region().is_empty(), "default region");
        // SAFETY: The object is one of `closed`'s.
        let none = unsafe { closed.copy_to_user(&c, &mut user(page, 8).writer(), 0, 8) };
        check!(
            matches!(none, Err(e) if e == EPERM),
            "copy from a cache without a region"
        );

        // Regions that do not lie within the object are refused at creation.
        for (offset, size) in [(60, 8), (0, 65), (64, 1), (usize::MAX, 2)] {
            let options = CacheOptions::new().usercopy(offset, size);
            check!(
                matches!(
                    KmemCache::<[u64; 8]>::new(c"rslab_test_usercopy_bad", options),
                    Err(e) if e == EINVAL
                ),
                "region {}..+{} accepted",
                offset,
                size
            );
        }
        Ok(())
    }

    // upstream-omit: end

    #[test]
    fn long_runtime_names_are_copied() -> Result {
        // `&CStr` makes an unterminated name impossible; length is not limited, and the slab
        // copies the name, so a temporary one may be dropped right after creation.
        let mut bytes = KVec::with_capacity(1001, GFP_KERNEL)?;
        for i in 0..1000 {
            bytes.push(b'a' + (i % 26) as u8, GFP_KERNEL)?;
        }
        bytes.push(0, GFP_KERNEL)?;
        let cache = {
            let name = CStr::from_bytes_with_nul(&bytes).map_err(|_| EINVAL)?;
            KmemCache::<u64>::new(name, CacheOptions::new())?
        };
        drop(bytes);
        let o = cache.alloc(7, GFP_KERNEL)?;
        check!(*o == 7, "allocation from a cache with a 1000-byte name");
        Ok(())
    }

    // upstream-omit: begin
    #[test]
    fn debug_cache_works() -> Result {
        let cache = KmemCache::<[u32; 10]>::new(
            c"rslab_test_debug",
            CacheOptions::new().flags(CacheFlags::DEBUG | CacheFlags::NO_MERGE),
        )?;
        let mut v = KVec::new();
        for i in 0..50u32 {
            v.push(cache.alloc([i; 10], GFP_KERNEL)?, GFP_KERNEL)?;
        }
        check!(
            v.iter().enumerate().all(|(i, a)| a[9] == i as u32),
            "contents"
        );
        Ok(())
    }
    // upstream-omit: end

    #[test]
    fn accounted_cache_works() -> Result {
        // `SLAB_ACCOUNT` (with `CONFIG_MEMCG`): every object charged to the allocating task's
        // memory cgroup; KUnit runs in the root cgroup, where nothing is refused.
        let cache = KmemCache::<[u64; 4]>::new(
            c"rslab_test_account",
            CacheOptions::new().flags(CacheFlags::ACCOUNT | CacheFlags::NO_MERGE),
        )?;
        check!(
            cfg!(CONFIG_MEMCG) != (CacheFlags::ACCOUNT == CacheFlags::NONE),
            "ACCOUNT is empty exactly without CONFIG_MEMCG"
        );
        let a = cache.alloc([7; 4], GFP_KERNEL)?;
        check!(a[3] == 7, "contents");
        Ok(())
    }
}
