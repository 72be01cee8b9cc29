/* http-hello — the smallest HTTP handler, and the benchmark module.
 *
 * Usage: http-hello     (run by the agent once per HTTP request, docs/http.md)
 * Answers every request with a CGI response on stdout:
 *     Content-Type: text/plain; charset=utf-8
 *     (empty line)
 *     hello from wasm
 * and exits 0. It reads neither the environment nor stdin: a request costs one instantiation
 * and one fd_write, nothing else (no stdio, so no buffering and no flush at exit).
 */
#include <errno.h>
#include <unistd.h>

static const char RESPONSE[] = "Content-Type: text/plain; charset=utf-8\n"
                               "\n"
                               "hello from wasm\n";

int main(void) {
    const char *next = RESPONSE;
    size_t left = sizeof RESPONSE - 1; /* not the terminating NUL */
    /* One write in practice; the loop only covers a host that accepts part of it. */
    while (left > 0) {
        ssize_t put = write(STDOUT_FILENO, next, left);
        if (put < 0 && errno == EINTR) {
            continue;
        }
        if (put <= 0) {
            return 1;
        }
        next += put;
        left -= (size_t)put;
    }
    return 0;
}
