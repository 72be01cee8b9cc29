/* echo — shows exactly what the runtime passed in.
 *
 * Usage: echo [ARG...]
 * Prints every argv entry as `argv[I]=VALUE` (argv[0] included), then every environment
 * variable as `KEY=VALUE` sorted bytewise, one per line. Exits 0.
 * Tests use it to check Pod `command`/`args` and `env`/`envFrom` end up in the module.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

static int compare(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        printf("argv[%d]=%s\n", i, argv[i]);
    }
    size_t count = 0;
    while (environ && environ[count]) {
        count++;
    }
    /* Sorted so that the output does not depend on the order a runtime passes variables in. */
    char **sorted = malloc((count + 1) * sizeof *sorted);
    if (!sorted) {
        return 1;
    }
    memcpy(sorted, environ, count * sizeof *sorted);
    qsort(sorted, count, sizeof *sorted, compare);
    for (size_t i = 0; i < count; i++) {
        puts(sorted[i]);
    }
    free(sorted);
    return 0;
}
