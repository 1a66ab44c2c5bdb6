# SPDX-License-Identifier: GPL-2.0
#
# Differences between the kernel crates of the kernels rslab supports (7.2 and
# 7.3), probed in the kernel's own sources rather than guessed from its version
# number, so that a backport or a vendor tree gets the right answer too. Each
# probe sets one --cfg; rust/lib/mod.rs hides the difference behind one helper.

# 7.3: ModuleParamAccess::value() returns a copy; the reference moved to
# value_ref().
ifeq ($(shell grep -qs 'pub fn value_ref' $(srctree)/rust/kernel/module_param.rs && echo y),y)
rustflags-y += --cfg rslab_param_value_copy
endif

# 7.3: pin-init renamed PinInit::__pinned_init() to __init() (Init's method
# moved to PinInit) and added raw_try_init() to call it.
ifeq ($(shell grep -qs 'pub unsafe fn raw_try_init' $(srctree)/rust/pin-init/src/lib.rs && echo y),y)
rustflags-y += --cfg rslab_pin_init_raw
endif

# 7.3: the misc device's file operations have the module as their owner, so an
# open file keeps the module loaded; on 7.2 samples/rslab_idmap_main.rs does it.
ifeq ($(shell grep -qs 'owner: this_module' $(srctree)/rust/kernel/miscdevice.rs && echo y),y)
rustflags-y += --cfg rslab_misc_fops_owner
endif
