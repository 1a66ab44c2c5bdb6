/* SPDX-License-Identifier: GPL-2.0 */
/*
 * rslab's C helpers (helpers.c), compiled into every module that includes the library and
 * declared again in Rust by rust/lib/helpers.rs and rust/lib/kmalloc.rs.
 */
#ifndef RSLAB_HELPERS_H
#define RSLAB_HELPERS_H

#include <linux/types.h>

struct kmem_cache;
struct kmem_cache_args;
struct slab_sheaf;

void *rslab_kmalloc_cache(struct kmem_cache *s, gfp_t flags, size_t size);
void *rslab_kmalloc_large(size_t size, gfp_t flags);
void *rslab_kmalloc(size_t size, gfp_t flags);

void *rslab_kmem_cache_alloc(struct kmem_cache *s, gfp_t flags);
void *rslab_kmem_cache_alloc_node(struct kmem_cache *s, gfp_t flags, int node);
void *rslab_kmem_cache_alloc_from_sheaf(struct kmem_cache *s, gfp_t gfp,
					struct slab_sheaf *sheaf);

struct kmem_cache *rslab_kmem_cache_create(const char *name, unsigned int size,
					   struct kmem_cache_args *args, slab_flags_t flags,
					   void **entryp);
void rslab_kmem_cache_destroy(struct kmem_cache *s, void *entry);

#endif /* RSLAB_HELPERS_H */
