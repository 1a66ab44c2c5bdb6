// SPDX-License-Identifier: GPL-2.0
/*
 * rslab_nosheaf.ko's copy of the library's C helpers (rust/lib/helpers.c), as every module that
 * includes the library has.
 */
#include "../../../rust/lib/helpers.c"
