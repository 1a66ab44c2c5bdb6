# SPDX-License-Identifier: GPL-2.0
#
# Sheaf support needs the five slab sheaf functions exported to modules. Stock
# 7.x kernels do not export them (tools/testing/patches/ carries the export),
# so look them up in the kernel's Module.symvers and build the sheaf API only
# when all five are there: `--cfg rslab_sheaf` (and RSLAB_SHEAF for the library's C
# helpers, rust/lib/helpers.c).

RSLAB_SHEAF_SYMS := kmem_cache_prefill_sheaf kmem_cache_refill_sheaf \
		    kmem_cache_return_sheaf kmem_cache_alloc_from_sheaf_noprof \
		    kmem_cache_sheaf_size
RSLAB_SHEAF := $(shell n=0; for s in $(RSLAB_SHEAF_SYMS); do \
		 grep -qP "^0x[0-9a-f]+\t$$s\t" $(objtree)/Module.symvers 2>/dev/null && n=$$((n+1)); \
		 done; [ $$n -eq 5 ] && echo y)

ifeq ($(RSLAB_SHEAF),y)
rustflags-y += --cfg rslab_sheaf
ccflags-y += -DRSLAB_SHEAF
endif
