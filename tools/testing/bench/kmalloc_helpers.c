// SPDX-License-Identifier: GPL-2.0
/*
 * rslab's kmalloc entry points, compiled into this module: a module cannot call another
 * module's unexported functions, so every module that uses the library's C path has its own
 * copy (see rust/lib/kmalloc.rs).
 */
#include "../../../rust/lib/kmalloc_helpers.c"
