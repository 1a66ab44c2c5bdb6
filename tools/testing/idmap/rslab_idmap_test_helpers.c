// SPDX-License-Identifier: GPL-2.0
/*
 * rslab_idmap_test.ko's copy of the library's C helpers (rust/lib/helpers.c): a module cannot
 * call another module's unexported functions, so every module that includes the library has its
 * own.
 */
#include "../../../rust/lib/helpers.c"
