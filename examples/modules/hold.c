/* hold — takes memory and keeps it: a Pod that sits on what it allocated.
 *
 * Usage: hold [MIB]     (MIB 0..4096, default 64)
 * Grows linear memory by MIB MiB at once with `memory.grow`, writes to every 4 KiB of it so the
 * host really commits it, prints `hold: holding MIB MiB` and then sleeps forever (one host call
 * a second), never giving the memory back. When `memory.grow` fails it prints
 * `hold: memory.grow failed` to stderr and exits 1; a bad argument prints a usage line and exits 2.
 * Tests use it for node-level memory caps: several Pods, each under the cap, over it together.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define WASM_PAGE 65536u
#define TOUCH_STRIDE 4096u /* the host's page size: one write per host page commits it */

int main(int argc, char **argv) {
    long mib = 64;
    if (argc > 1) {
        char *end = NULL;
        mib = strtol(argv[1], &end, 10);
        if (*argv[1] == '\0' || *end != '\0' || mib < 0 || mib > 4096) {
            fputs("usage: hold [MIB]  (MIB is 0..4096)\n", stderr);
            return 2;
        }
    }
    size_t pages = (size_t)mib * (1024u * 1024u / WASM_PAGE);
    size_t previous = __builtin_wasm_memory_grow(0, pages);
    if (previous == (size_t)-1) {
        fprintf(stderr, "hold: memory.grow failed for %ld MiB\n", mib);
        return 1;
    }
    volatile uint8_t *base = (volatile uint8_t *)(uintptr_t)(previous * WASM_PAGE);
    for (size_t offset = 0; offset < pages * WASM_PAGE; offset += TOUCH_STRIDE) {
        base[offset] = 1;
    }
    printf("hold: holding %ld MiB\n", mib);
    fflush(stdout);
    for (;;) {
        sleep(1);
    }
}
