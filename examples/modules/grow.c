/* grow — grows linear memory and touches every new page.
 *
 * Usage: grow [MIB]     (MIB 0..4096, default 64)
 * Grows linear memory by MIB MiB in 1 MiB steps with `memory.grow`, writing to every 4 KiB of
 * each new step so the host really commits it. Prints a progress line every 16 MiB and a final
 * line, then exits 0. When `memory.grow` fails (a memory limit, or the 4 GiB wasm32 ceiling)
 * it prints `grow: memory.grow failed ...` to stderr and exits 1.
 * Tests use it for `resources.limits.memory`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define WASM_PAGE 65536u
#define STEP_PAGES 16u /* 1 MiB */
#define TOUCH_STRIDE 4096u /* the host's page size: one write per host page commits it */

/* The current linear memory in tenths of a MiB (no floating point: keeps printf small). */
static void memory_size(char *text, size_t size) {
    unsigned long kib = (unsigned long)(__builtin_wasm_memory_size(0) * (WASM_PAGE / 1024u));
    snprintf(text, size, "%lu.%lu MiB", kib / 1024u, kib % 1024u * 10u / 1024u);
}

int main(int argc, char **argv) {
    long mib = 64;
    if (argc > 1) {
        char *end = NULL;
        mib = strtol(argv[1], &end, 10);
        if (*argv[1] == '\0' || *end != '\0' || mib < 0 || mib > 4096) {
            fputs("usage: grow [MIB]  (MIB is 0..4096)\n", stderr);
            return 2;
        }
    }
    char now[32];
    memory_size(now, sizeof now);
    printf("grow: growing linear memory by %ld MiB (memory is %s)\n", mib, now);
    fflush(stdout);
    for (long step = 1; step <= mib; step++) {
        size_t previous = __builtin_wasm_memory_grow(0, STEP_PAGES);
        if (previous == (size_t)-1) {
            memory_size(now, sizeof now);
            fprintf(stderr, "grow: memory.grow failed after growing %ld MiB (memory is %s)\n",
                    step - 1, now);
            return 1;
        }
        volatile uint8_t *base = (volatile uint8_t *)(uintptr_t)(previous * WASM_PAGE);
        for (size_t offset = 0; offset < STEP_PAGES * WASM_PAGE; offset += TOUCH_STRIDE) {
            base[offset] = (uint8_t)step;
        }
        if (step % 16 == 0 && step != mib) {
            memory_size(now, sizeof now);
            printf("grow: grew %ld MiB (memory is %s)\n", step, now);
            fflush(stdout);
        }
    }
    memory_size(now, sizeof now);
    printf("grow: done, grew %ld MiB (memory is %s)\n", mib, now);
    return 0;
}
