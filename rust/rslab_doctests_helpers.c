// SPDX-License-Identifier: GPL-2.0
/*
 * rslab_doctests.ko's copy of the library's C helpers (lib/helpers.c): a module cannot call
 * another module's unexported functions, so every module that includes the library has its own.
 */
#include "lib/helpers.c"
