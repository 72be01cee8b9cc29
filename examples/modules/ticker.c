/* ticker — a long-running service that logs steadily.
 *
 * Usage: ticker [--interval-ms MS] [--count N]
 * Prints `tick 1`, `tick 2`, ... to stdout, one line every MS milliseconds (default 1000),
 * flushing each line so that a log follower sees it at once. Runs forever, or exits 0 after
 * N lines when --count is given (the first line comes at once, no sleep after the last).
 * --interval-ms 0 never sleeps: it floods stdout as fast as the host takes it. (Not a 0 ns
 * sleep: wasmer-sdk 0.5 never wakes from a zero-length poll_oneoff timeout.)
 * A bad option prints a usage line to stderr and exits 2.
 * Tests use it for `Always` restart policy, log streaming, and graceful termination.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int parse(const char *text, long long *out) {
    char *end = NULL;
    long long value = strtoll(text, &end, 10);
    if (*text == '\0' || *end != '\0' || value < 0) {
        return 0;
    }
    *out = value;
    return 1;
}

int main(int argc, char **argv) {
    long long interval_ms = 1000;
    long long count = -1; /* forever */
    for (int i = 1; i < argc; i += 2) {
        long long *target = NULL;
        if (strcmp(argv[i], "--interval-ms") == 0) {
            target = &interval_ms;
        } else if (strcmp(argv[i], "--count") == 0) {
            target = &count;
        }
        if (!target || i + 1 >= argc || !parse(argv[i + 1], target)) {
            fputs("usage: ticker [--interval-ms MS] [--count N]\n", stderr);
            return 2;
        }
    }
    struct timespec pause = {interval_ms / 1000, (interval_ms % 1000) * 1000000L};
    for (long long n = 1; count < 0 || n <= count; n++) {
        printf("tick %lld\n", n);
        /* stdout is fully buffered when it is not a terminal: flush so each line is live. */
        fflush(stdout);
        if (interval_ms > 0 && (count < 0 || n < count)) {
            nanosleep(&pause, NULL);
        }
    }
    return 0;
}
