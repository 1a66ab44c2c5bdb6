// SPDX-License-Identifier: GPL-2.0
/*
 * rslab's kmalloc entry points, for rust/lib/kmalloc.rs.
 *
 * C's kmalloc() is an inline function: with a size known at compile time it picks the cache
 * itself (kmalloc_type() and kmalloc_index()) and calls __kmalloc_cache_noprof(), or
 * __kmalloc_large_noprof() above the slab range; with a run-time size it calls
 * __kmalloc_noprof(). Rust cannot call inline functions, so rust/lib/kmalloc.rs does the
 * compile-time part itself and calls one of these, each the same call kmalloc() would make,
 * wrapped in alloc_hooks() as the kmalloc() macro wraps it: with CONFIG_MEM_ALLOC_PROFILING,
 * /proc/allocinfo attributes the allocation to the line here. (An allocation on an explicit
 * NUMA node takes the kernel crate's path, whose helper has the hooks too.)
 *
 * The library calls these only with CONFIG_MEM_ALLOC_PROFILING or
 * CONFIG_KMALLOC_PARTITION_CACHES: without either, kmalloc() adds nothing around the calls and
 * Rust makes them itself. Every module that includes rslab's library and wants this path
 * compiles this file into itself (a module cannot link another module's Rust code, nor its
 * unexported C symbols) and sets `--cfg rslab_kmalloc_helpers` for its Rust object; see
 * rust/Kbuild.
 */

#include <linux/slab.h>

#include "kmalloc_helpers.h"

void *rslab_kmalloc_cache(struct kmem_cache *s, gfp_t flags, size_t size)
{
	return alloc_hooks(__kmalloc_cache_noprof(s, flags, size));
}

void *rslab_kmalloc_large(size_t size, gfp_t flags)
{
	return alloc_hooks(__kmalloc_large_noprof(size, flags));
}

/* A run-time size: kmalloc() looks the cache up itself. */
void *rslab_kmalloc(size_t size, gfp_t flags)
{
	return kmalloc(size, flags);
}
