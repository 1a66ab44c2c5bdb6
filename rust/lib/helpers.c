// SPDX-License-Identifier: GPL-2.0
/*
 * rslab's C helpers: the library's allocation entry points, and the registry of its cache
 * names. Called by rust/lib/helpers.rs and rust/lib/kmalloc.rs.
 *
 * Allocation entry points. C's kmalloc(), kmem_cache_alloc() and friends are macros (or inline
 * functions) that wrap the _noprof functions in alloc_hooks(): with CONFIG_MEM_ALLOC_PROFILING,
 * that records the call site in current->alloc_tag, and /proc/allocinfo attributes the
 * allocation to it. Rust cannot expand a C macro, so each function here makes exactly the call
 * the macro makes, and the allocation is attributed to its line here. Without allocation
 * profiling (and partitioned kmalloc caches, for the kmalloc ones) alloc_hooks() adds nothing
 * around the call, so the library calls the _noprof functions itself; the file is linked all
 * the same, for the registry of cache names below.
 *
 * kmalloc(): with a size known at compile time it picks the cache itself (kmalloc_type() and
 * kmalloc_index()) and calls __kmalloc_cache_noprof(), or __kmalloc_large_noprof() above the
 * slab range; with a run-time size it calls __kmalloc_noprof(). rust/lib/kmalloc.rs does the
 * compile-time part itself and calls one of the three below. (An allocation on an explicit
 * NUMA node takes the kernel crate's path, whose helper has the hooks too.)
 *
 * Cache names. With CONFIG_DEBUG_VM, kmem_cache_create() WARNs about a name that another cache
 * has already (mm/slab_common.c, kmem_cache_sanity_check()), and with sysfs a second
 * cache of one name that is not merged with the first is created without its sysfs directory,
 * after a "cannot create duplicate filename" stack dump, on any kernel. Two instances of one driver must get an error instead: the caches a module
 * creates through rslab_kmem_cache_create() are listed here, and a second cache of a name that
 * is on the list fails with -EEXIST. The list is this module's (every module has its own copy
 * of this file); the kernel's list of caches is not exported.
 *
 * Every module that includes the library compiles this file into itself, unconditionally: a
 * module cannot call another module's unexported functions, and the cache registry is needed
 * on every kernel. It sets `--cfg rslab_helpers` for its Rust objects, which tells the library
 * that the functions are there (see rust/Kbuild, samples/Kbuild, tools/testing/bench/Kbuild).
 * The sheaf entry point exists when scripts/sheaf.mk finds the kernel's sheaf API (RSLAB_SHEAF).
 */

#include <linux/err.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/overflow.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "helpers.h"

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

void *rslab_kmem_cache_alloc(struct kmem_cache *s, gfp_t flags)
{
	return kmem_cache_alloc(s, flags);
}

void *rslab_kmem_cache_alloc_node(struct kmem_cache *s, gfp_t flags, int node)
{
	return kmem_cache_alloc_node(s, flags, node);
}

#ifdef RSLAB_SHEAF
void *rslab_kmem_cache_alloc_from_sheaf(struct kmem_cache *s, gfp_t gfp,
					struct slab_sheaf *sheaf)
{
	return kmem_cache_alloc_from_sheaf(s, gfp, sheaf);
}
#endif

struct rslab_cache_name {
	struct list_head node;
	struct kmem_cache *cache;
	char name[];
};

/* Held around creation and destruction, outside the slab's own slab_mutex. */
static DEFINE_MUTEX(rslab_cache_names_lock);
static LIST_HEAD(rslab_cache_names);

/*
 * Merged caches share one struct kmem_cache, so the entry of a name, not the cache pointer,
 * identifies what to release: the caller keeps *entryp and passes it to
 * rslab_kmem_cache_destroy().
 */
struct kmem_cache *rslab_kmem_cache_create(const char *name, unsigned int size,
					   struct kmem_cache_args *args, slab_flags_t flags,
					   void **entryp)
{
	size_t len = strlen(name);
	struct rslab_cache_name *entry, *e;
	struct kmem_cache *s;

	entry = kmalloc(struct_size(entry, name, len + 1), GFP_KERNEL);
	if (!entry)
		return ERR_PTR(-ENOMEM);
	memcpy(entry->name, name, len + 1);

	mutex_lock(&rslab_cache_names_lock);
	list_for_each_entry(e, &rslab_cache_names, node) {
		if (!strcmp(e->name, name)) {
			s = ERR_PTR(-EEXIST);
			goto out;
		}
	}
	s = __kmem_cache_create_args(name, size, args, flags);
	if (!s) {
		s = ERR_PTR(-ENOMEM);
		goto out;
	}
	entry->cache = s;
	list_add(&entry->node, &rslab_cache_names);
	*entryp = entry;
	entry = NULL;
out:
	mutex_unlock(&rslab_cache_names_lock);
	kfree(entry);
	return s;
}

void rslab_kmem_cache_destroy(struct kmem_cache *s, void *entry)
{
	struct rslab_cache_name *e = entry;

	mutex_lock(&rslab_cache_names_lock);
	/* The name is taken until the cache is gone. */
	kmem_cache_destroy(s);
	list_del(&e->node);
	mutex_unlock(&rslab_cache_names_lock);
	kfree(e);
}
