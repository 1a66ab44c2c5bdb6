/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C side of rslab's kmalloc tests (kmalloc_test.c), declared again in Rust by
 * rust/lib/kmalloc.rs's tests.
 */
#ifndef RSLAB_KMALLOC_TEST_H
#define RSLAB_KMALLOC_TEST_H

#include <linux/types.h>

struct kmem_cache;

/* The kmalloc cache @p is an object of, or NULL for memory that is no slab object. */
struct kmem_cache *rslab_test_obj_cache(const void *p);
/* C's kmalloc_type() for @flags (with a partition token of this file's). */
unsigned int rslab_test_kmalloc_type(gfp_t flags);
/* kmalloc(n, @flags) with n a compile-time constant. */
void *rslab_test_kmalloc_8(gfp_t flags);
void *rslab_test_kmalloc_96(gfp_t flags);
void *rslab_test_kmalloc_192(gfp_t flags);
void *rslab_test_kmalloc_256(gfp_t flags);
void *rslab_test_kmalloc_4096(gfp_t flags);

#endif /* RSLAB_KMALLOC_TEST_H */
