/* SPDX-License-Identifier: GPL-2.0 */
/*
 * rslab's kmalloc entry points (kmalloc_helpers.c), called by rust/lib/kmalloc.rs in a
 * module built with `--cfg rslab_kmalloc_helpers`, which declares them again in Rust.
 */
#ifndef RSLAB_KMALLOC_HELPERS_H
#define RSLAB_KMALLOC_HELPERS_H

#include <linux/types.h>

struct kmem_cache;

void *rslab_kmalloc_cache(struct kmem_cache *s, gfp_t flags, size_t size);
void *rslab_kmalloc_large(size_t size, gfp_t flags);
void *rslab_kmalloc(size_t size, gfp_t flags);

#endif /* RSLAB_KMALLOC_HELPERS_H */
