// SPDX-License-Identifier: GPL-2.0

//! The module of rslab's test build of the driver (`rslab_idmap_test_main.rs`): the driver's device
//! and maps, with the hooks of the build's parameters applied. A child module of the driver
//! (`mod test_build` at its end), so that it sees the driver's private items; the map's own
//! items stay private to the map, but for its one test hook, [`IdMap::start_at`].

use super::*;
use rslab::cache::CacheFlags;

/// The test build's device, `/dev/rslab_idmap`: the driver's files, each opened with the
/// build's `first_id`.
///
/// Its pointer type is the driver's, and its `ioctl` is the driver's: so on 7.2, where
/// [`own_file`] gives each file the driver's own operations (owned by this module), the file
/// is the same whichever operations the VFS calls.
struct TestFile;

#[vtable]
impl MiscDevice for TestFile {
    type Ptr = Pin<KBox<IdMapFile>>;

    fn open(file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<IdMapFile>>> {
        // As the driver's `open`.
        own_file(file)?;
        let cache = NODES.get().ok_or(ENODEV)?;
        let limit = rslab::param(&crate::module_parameters::max_entries) as usize;
        let me = KBox::try_pin_init(
            try_pin_init!(IdMapFile {
                map <- IdMap::new(cache, limit),
            }),
            GFP_KERNEL_ACCOUNT,
        )?;
        // The hook: the map's first ID (IDs are never 0).
        let first = rslab::param(&crate::module_parameters::first_id);
        me.map.start_at(first);
        Ok(me)
    }

    fn ioctl(me: Pin<&IdMapFile>, file: &File, cmd: u32, arg: usize) -> Result<isize> {
        <IdMapFile as MiscDevice>::ioctl(me, file, cmd, arg)
    }
}

/// The test build's module: the node cache (`SLAB_ACCOUNT` with `forced_charge=1`) and the
/// device. Fields drop in declaration order, as the driver's: the device first.
#[pin_data]
pub(crate) struct TestModule {
    #[pin]
    _miscdev: MiscDeviceRegistration<TestFile>,
    _nodes: NodeCache,
}

impl kernel::InPlaceModule for TestModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            _nodes: {
                // The hook: with `SLAB_ACCOUNT` every node is charged when it is taken from the
                // sheaf, and the kernel forces that charge; the driver's `Slot::charge` then
                // finds it charged already.
                let flags = if rslab::param(&crate::module_parameters::forced_charge) != 0 {
                    CacheFlags::ACCOUNT
                } else {
                    CacheFlags::NONE
                };
                let options = CacheOptions::new().sheaf_capacity(abi::MAX_BATCH);
                NODES.init(c"rslab_idmap_node", options.flags(flags))?;
                // Destroys the cache when the module goes, as the driver's does.
                NodeCache
            },
            _miscdev <- MiscDeviceRegistration::register(MiscDeviceOptions {
                name: c"rslab_idmap",
            }),
        }? Error)
    }
}
