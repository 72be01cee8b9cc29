/* exit — exits with a chosen status.
 *
 * Usage: exit [CODE]     (CODE 0..255, default 0)
 * Prints `exit: exiting with code CODE` to stdout, then exits with CODE.
 * A CODE that is not a number in 0..255 prints a usage line to stderr and exits 2.
 * Tests use it for restartPolicy, `Completed`/`Error` reasons and exit-code reporting.
 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    long code = 0;
    if (argc > 1) {
        char *end = NULL;
        code = strtol(argv[1], &end, 10);
        if (*argv[1] == '\0' || *end != '\0' || code < 0 || code > 255) {
            fputs("usage: exit [CODE]  (CODE is 0..255)\n", stderr);
            return 2;
        }
    }
    printf("exit: exiting with code %ld\n", code);
    fflush(stdout);
    return (int)code;
}
