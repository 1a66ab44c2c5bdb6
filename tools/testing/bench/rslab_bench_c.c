// SPDX-License-Identifier: GPL-2.0
/*
 * rslab benchmark: the C baselines, compiled the way Kbuild compiles any C driver.
 *
 * Each batch does what the Rust side's Box::new batch does: allocate @count objects, write
 * RSLAB_BENCH_FILL into every byte of each (the Rust side writes the same bytes with
 * Box::new([RSLAB_BENCH_FILL; N])), keep them in @held, then free them all. Storing the
 * pointers and passing them to kfree() keeps the compiler from dropping the writes.
 */

#include <linux/minmax.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/types.h>

#include "rslab_bench_c.h"

/* kmalloc() with a compile-time size: kmalloc_type() and kmalloc_index() pick the cache at
 * compile time and the call is __kmalloc_cache_noprof().
 */
#define RSLAB_BENCH_KMALLOC_CONST(n)						\
size_t rslab_bench_kmalloc_const_##n(void **held, size_t count)			\
{										\
	size_t i, done = 0;							\
										\
	for (i = 0; i < count; i++) {						\
		void *p = kmalloc(n, GFP_KERNEL);				\
										\
		if (!p)								\
			break;							\
		memset(p, RSLAB_BENCH_FILL, n);					\
		held[done++] = p;						\
	}									\
	for (i = 0; i < done; i++)						\
		kfree(held[i]);							\
	return done;								\
}

RSLAB_BENCH_KMALLOC_CONST(8)
RSLAB_BENCH_KMALLOC_CONST(96)
RSLAB_BENCH_KMALLOC_CONST(192)
RSLAB_BENCH_KMALLOC_CONST(256)
RSLAB_BENCH_KMALLOC_CONST(4096)

/* kmalloc() with a run-time size: the cache is looked up at run time (__kmalloc_noprof()). */
size_t rslab_bench_kmalloc_var(void **held, size_t count, size_t size)
{
	size_t i, done = 0;

	for (i = 0; i < count; i++) {
		void *p = kmalloc(size, GFP_KERNEL);

		if (!p)
			break;
		memset(p, RSLAB_BENCH_FILL, size);
		held[done++] = p;
	}
	for (i = 0; i < done; i++)
		kfree(held[i]);
	return done;
}

/* kmem_cache_alloc() + fill + free, one object at a time, on a cache of RSLAB_BENCH_OBJ-byte
 * objects: the baseline of KmemCache::alloc + drop. The free is kmem_cache_free(), as a C driver
 * that knows its cache writes it, or kfree(), which SlabBox uses (it stores no cache).
 */
#define RSLAB_BENCH_CACHE(name, free)						\
size_t rslab_bench_cache_##name(struct kmem_cache *s, size_t count)		\
{										\
	size_t i;								\
										\
	for (i = 0; i < count; i++) {						\
		void *p = kmem_cache_alloc(s, GFP_KERNEL);			\
										\
		if (!p)								\
			break;							\
		memset(p, 0, RSLAB_BENCH_OBJ);					\
		free;								\
	}									\
	return i;								\
}

RSLAB_BENCH_CACHE(free, kmem_cache_free(s, p))
RSLAB_BENCH_CACHE(kfree, kfree(p))

/* An array of u32 grown to @n elements one push at a time, with KVec's policy: when full, the
 * capacity doubles (and is at least the length plus one), through krealloc().
 */
size_t rslab_bench_krealloc_growth(size_t n)
{
	u32 *v = NULL;
	size_t len = 0, cap = 0, i;

	for (i = 0; i < n; i++) {
		if (len == cap) {
			size_t new_cap = max(cap * 2, len + 1);
			u32 *grown = krealloc(v, new_cap * sizeof(*v), GFP_KERNEL);

			if (!grown) {
				kfree(v);
				return 0;
			}
			v = grown;
			cap = new_cap;
		}
		v[len++] = i;
	}
	kfree(v);
	return len;
}
