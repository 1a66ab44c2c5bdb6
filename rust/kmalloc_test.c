// SPDX-License-Identifier: GPL-2.0
/*
 * The C side of rslab's kmalloc tests (rust/lib/kmalloc.rs, `cache_choice`): which cache C's
 * kmalloc() picks, and which cache an object is in. Compiled into rslab.ko only, where the
 * library's tests run.
 */

#include <linux/slab.h>

/* mm/slab.h (the build adds -I$(srctree)/mm): struct slab and virt_to_slab(). */
#include <slab.h>

#include "kmalloc_test.h"

struct kmem_cache *rslab_test_obj_cache(const void *p)
{
	struct slab *slab = virt_to_slab(p);

	return slab ? slab->slab_cache : NULL;
}

unsigned int rslab_test_kmalloc_type(gfp_t flags)
{
	return kmalloc_type(flags, __kmalloc_token(0));
}

/* kmalloc() with a compile-time size, as a C driver calls it; the flags are the caller's. */
#define RSLAB_TEST_KMALLOC(n)					\
void *rslab_test_kmalloc_##n(gfp_t flags)			\
{								\
	return kmalloc(n, flags);				\
}

RSLAB_TEST_KMALLOC(8)
RSLAB_TEST_KMALLOC(96)
RSLAB_TEST_KMALLOC(192)
RSLAB_TEST_KMALLOC(256)
RSLAB_TEST_KMALLOC(4096)
