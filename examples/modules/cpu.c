/* cpu — a fixed amount of CPU-bound work, for benchmarks and CPU-time limits.
 *
 * Usage: cpu [ITERATIONS]     (default 100000000, about 0.1-0.3 s)
 * Runs ITERATIONS rounds of a 64-bit mixing function (one dependent chain, so neither the
 * compiler nor the CPU can skip or parallelise work), prints
 * `cpu: iterations=N result=0x<16 hex digits>` and exits 0. The result depends only on N:
 *     x = 0x9e3779b97f4a7c15
 *     for i in range(N): x ^= x >> 33; x *= 0xff51afd7ed558ccd (mod 2**64); x ^= x >> 29; x += i
 * A bad argument prints usage to stderr and exits 2.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    unsigned long long iterations = 100000000ULL;
    if (argc > 1) {
        char *end = NULL;
        iterations = strtoull(argv[1], &end, 10);
        if (*argv[1] == '\0' || *argv[1] == '-' || *end != '\0') {
            fputs("usage: cpu [ITERATIONS]\n", stderr);
            return 2;
        }
    }
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (uint64_t i = 0; i < iterations; i++) {
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdULL;
        x ^= x >> 29;
        x += i;
    }
    printf("cpu: iterations=%llu result=0x%016" PRIx64 "\n", iterations, x);
    return 0;
}
