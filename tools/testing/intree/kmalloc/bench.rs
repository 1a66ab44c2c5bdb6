
// Measurement only, added to the tree by `intree.py bench` and never part of a patch: instructions
// (under QEMU -icount shift=0, 1 ns of the guest clock) per allocation, zeroing and free, of
// C's kmalloc() and the kernel crate's KBox::new() in the same boot.
#[cfg(CONFIG_RUST_ALLOCATOR_KUNIT_TEST)]
#[macros::kunit_tests(rust_kmalloc_bench)]
mod bench {
    use kernel::{bindings, prelude::*};

    const ROUNDS: usize = 21;
    const OPS: i64 = 20_000;

    fn measure(what: &str, size: usize, mut op: impl FnMut() -> Result) -> Result {
        let mut t = [0i64; ROUNDS];

        for r in t.iter_mut() {
            // SAFETY: `ktime_get()` may be called in any context.
            let start = unsafe { bindings::ktime_get() };
            for _ in 0..OPS {
                op()?;
            }
            // SAFETY: As above.
            *r = unsafe { bindings::ktime_get() } - start;
        }
        t.sort_unstable();
        pr_info!(
            "bench: {} {} {}.{:02} {}.{:02}\n",
            what,
            size,
            t[ROUNDS / 2] / OPS,
            t[ROUNDS / 2] * 100 / OPS % 100,
            t[0] / OPS,
            t[0] * 100 / OPS % 100
        );
        assert!(t[0] > 0);
        Ok(())
    }

    macro_rules! sizes {
        ($($n:literal $c:ident),*) => {$(
            measure("c_const", $n, || {
                // SAFETY: The helper allocates, writes and frees an object of its own.
                unsafe { bindings::$c() };
                Ok(())
            })?;
            measure("c_var", $n, || {
                // SAFETY: As above.
                unsafe { bindings::bench_kmalloc_var(core::hint::black_box($n)) };
                Ok(())
            })?;
            measure("kbox", $n, || {
                let b = KBox::new([0u8; $n], GFP_KERNEL)?;
                drop(core::hint::black_box(b));
                Ok(())
            })?;
        )*};
    }

    #[test]
    fn kmalloc_bench() -> Result {
        sizes!(8 bench_kmalloc_const_8, 96 bench_kmalloc_const_96,
               192 bench_kmalloc_const_192, 256 bench_kmalloc_const_256,
               4096 bench_kmalloc_const_4096);
        Ok(())
    }
}
