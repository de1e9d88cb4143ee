/*
 * cpubench.h - instruction counts of the cpubench kernel (kernel.S).
 *
 * A call cpubench_kernel(iters, buf) executes exactly
 *
 *     CPUBENCH_INSNS_ENTRY + iters * CPUBENCH_INSNS_PER_ITER
 *                          + CPUBENCH_INSNS_EXIT
 *
 * instructions, counted from the kernel's first instruction through its
 * `ret` inclusive (the caller's jal is not included).
 */
#ifndef CPUBENCH_H
#define CPUBENCH_H

#define CPUBENCH_INSNS_PER_ITER 41
#define CPUBENCH_INSNS_ENTRY    9
#define CPUBENCH_INSNS_EXIT     4
#define CPUBENCH_INSNS_OVERHEAD (CPUBENCH_INSNS_ENTRY + CPUBENCH_INSNS_EXIT)

/* cpubench_measure: minstret difference minus the first csrr and the jal */
#define CPUBENCH_MEASURE_EXTRA  2

#define CPUBENCH_BUF_WORDS      4096 /* 16 KiB */
#define CPUBENCH_DEFAULT_ITERS  5000000

#endif
