
// Measurement only, added to the tree by `intree.py bench` and never part of a patch: instructions
// (under QEMU -icount shift=0, 1 ns of the guest clock) per allocation, zeroing and free, of
// C's kmalloc() and the kernel crate's KBox::new() in the same boot.
#[cfg(CONFIG_RUST_ALLOCATOR_KUNIT_TEST)]
#[macros::kunit_tests(rust_kmalloc_bench)]
mod bench {
    use kernel::{bindings, prelude::*};

    const ROUNDS: usize = 21;
    const OPS: i64 = 20_000;

    fn measure(what: &str, size: usize, op: impl FnMut() -> Result) -> Result {
        measure_per(what, size, OPS, 1, op)
    }

    /// Median and minimum over `ROUNDS` rounds of `ops` calls of `op`, per call and per `per`
    /// units of work in a call.
    fn measure_per(
        what: &str,
        size: usize,
        ops: i64,
        per: i64,
        mut op: impl FnMut() -> Result,
    ) -> Result {
        let mut t = [0i64; ROUNDS];
        let n = ops * per;

        for r in t.iter_mut() {
            // SAFETY: `ktime_get()` may be called in any context.
            let start = unsafe { bindings::ktime_get() };
            for _ in 0..ops {
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
            t[ROUNDS / 2] / n,
            t[ROUNDS / 2] * 100 / n % 100,
            t[0] / n,
            t[0] * 100 / n % 100
        );
        assert!(t[0] > 0);
        Ok(())
    }

    /// Elements of the `KVec` growth row: pushes from an empty `KVec<u32>`.
    const GROWTH: usize = 100_000;

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
        // Instructions per push of a `KVec<u32>` grown from empty to `GROWTH` elements.
        measure_per("kvec_push", GROWTH, 4, GROWTH as i64, || {
            let mut v = KVec::<u32>::new();
            for i in 0..GROWTH as u32 {
                v.push(i, GFP_KERNEL)?;
            }
            drop(core::hint::black_box(v));
            Ok(())
        })?;
        Ok(())
    }
}
