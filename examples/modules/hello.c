/* hello — the smallest useful workload.
 *
 * Usage: hello
 * Prints one greeting line to stdout and one line to stderr, then exits 0.
 * Used by quick starts and by tests that only need "a module that runs and logs".
 */
#include <stdio.h>

int main(void) {
    puts("Hello from wasmlet!");
    fputs("hello: this line goes to stderr\n", stderr);
    return 0;
}
