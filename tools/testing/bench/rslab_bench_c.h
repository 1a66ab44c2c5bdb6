/* SPDX-License-Identifier: GPL-2.0 */
/*
 * rslab benchmark: the C baselines (rslab_bench_c.c), called from rslab_bench_main.rs, which
 * declares them again in Rust. Every function returns the number of objects (or elements) it
 * handled, so that the caller can tell a complete batch from a failed one.
 */
#ifndef RSLAB_BENCH_C_H
#define RSLAB_BENCH_C_H

#include <linux/types.h>

/* The byte both sides write into every object (rslab_bench_main.rs: FILL). */
#define RSLAB_BENCH_FILL 0xa5
/* The size of the kmem_cache rows' objects (rslab_bench_main.rs: Obj). */
#define RSLAB_BENCH_OBJ 32

struct kmem_cache;

size_t rslab_bench_kmalloc_const_8(void **held, size_t count);
size_t rslab_bench_kmalloc_const_96(void **held, size_t count);
size_t rslab_bench_kmalloc_const_192(void **held, size_t count);
size_t rslab_bench_kmalloc_const_256(void **held, size_t count);
size_t rslab_bench_kmalloc_const_4096(void **held, size_t count);
size_t rslab_bench_kmalloc_var(void **held, size_t count, size_t size);
size_t rslab_bench_cache_free(struct kmem_cache *s, size_t count);
size_t rslab_bench_cache_kfree(struct kmem_cache *s, size_t count);
size_t rslab_bench_krealloc_growth(size_t n);

#endif /* RSLAB_BENCH_C_H */
