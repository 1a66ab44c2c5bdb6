
/*
 * Measurement only, added to the tree by `intree.py bench` and never part of a patch: C's
 * kmalloc() + memset() + kfree() of the sizes that rust_kmalloc_bench measures, with the size
 * known at compile time and at run time.
 */
#define RUST_BENCH_KMALLOC(n)							\
__rust_helper void rust_helper_bench_kmalloc_const_##n(void)			\
{										\
	void *p = kmalloc(n, GFP_KERNEL);					\
										\
	if (p)									\
		memset(p, 0, n);						\
	kfree(p);								\
}
RUST_BENCH_KMALLOC(8)
RUST_BENCH_KMALLOC(96)
RUST_BENCH_KMALLOC(192)
RUST_BENCH_KMALLOC(256)
RUST_BENCH_KMALLOC(4096)

__rust_helper void rust_helper_bench_kmalloc_var(size_t n)
{
	void *p = kmalloc(READ_ONCE(n), GFP_KERNEL);

	if (p)
		memset(p, 0, n);
	kfree(p);
}
