/* http-echo — the diagnostic HTTP handler: answers with what the agent passed in.
 *
 * Usage: http-echo [ARG...]     (run by the agent once per HTTP request, docs/http.md)
 * Reads stdin to end of file, then by default answers 200, `Content-Type: application/json`,
 * with one line of JSON:
 *     {"method": REQUEST_METHOD, "path": PATH_INFO, "query": QUERY_STRING,
 *      "scriptName": SCRIPT_NAME, "contentType": CONTENT_TYPE, "contentLength": CONTENT_LENGTH,
 *      "headers": {every HTTP_* variable}, "body": stdin, "bodyLength": N,
 *      "args": [argv[1]...], "env": {every variable}}
 * Variables are strings as given, null when unset. Every string maps each byte to one code point
 * U+0000..U+00FF (`\u00XX` for control and non-ASCII bytes), so `s.encode("latin-1")` gives back
 * the exact bytes. Objects are sorted by name.
 *
 * Query parameters (first occurrence wins; `header` repeats; no percent-decoding) change that:
 *   status=NNN          a `Status: NNN` line (not checked: `status=999` is passed on)
 *   header=NAME:VALUE   a `NAME: VALUE` line
 *   crlf=1              header lines end in CRLF instead of LF
 *   stderr=TEXT         TEXT and a newline to stderr, first of all
 *   sleep_ms=N          sleep N ms (0..86400000) before answering
 *   spin=1              then spin forever without a host call
 *   bad=noheaders|garbage|status|empty   a broken response instead (see the README)
 *   trap=1              write the headers and `partial`, then trap (`unreachable`)
 *   big=N               the body is N bytes of `x` (text/plain), written 64 KiB at a time
 *   exit=N              exit with N (0..255) once the response is written
 * A malformed parameter gets a 400 JSON error naming it. Out of memory gets a 500.
 * The lead's integration tests use it for the CGI contract, errors, timeouts and logs.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define CHUNK 65536
#define MAX_SLEEP_MS 86400000ULL /* a day: a bound so the timespec cannot overflow */

/* A growable byte buffer. `failed` sticks after an allocation failure: check it once, at the end. */
struct buf {
    char *data;
    size_t len, cap;
    int failed;
};

/* A query parameter's value: `len` bytes at `at` (not NUL-terminated), or `at == NULL`. */
struct param {
    const char *at;
    size_t len;
};

struct options {
    struct param status, bad, stderr_text;
    int crlf, spin, trap, has_big;
    uint64_t sleep_ms, big, exit_code;
};

static void put(struct buf *b, const void *bytes, size_t n) {
    if (b->failed || n == 0) {
        return;
    }
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) {
                b->failed = 1;
                return;
            }
            cap *= 2;
        }
        char *grown = realloc(b->data, cap);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
}

static void put_str(struct buf *b, const char *s) { put(b, s, strlen(s)); }

static void put_u64(struct buf *b, uint64_t value) {
    char digits[20];
    size_t at = sizeof digits;
    do {
        digits[--at] = (char)('0' + value % 10);
        value /= 10;
    } while (value > 0);
    put(b, digits + at, sizeof digits - at);
}

/* A JSON string of the bytes, one code point per byte (Latin-1), so no byte is lost. */
static void put_json(struct buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    size_t plain = 0; /* start of the run of bytes that need no escape */
    put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char escape[6] = {'\\', (char)c, 0, 0, 0, 0};
        size_t length = 2;
        if (c == '\n' || c == '\r' || c == '\t') {
            escape[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        } else if (c < 0x20 || c >= 0x7f) {
            memcpy(escape, "\\u00", 4);
            escape[4] = hex[c >> 4];
            escape[5] = hex[c & 15];
            length = 6;
        } else if (c != '"' && c != '\\') {
            continue;
        }
        put(b, s + plain, i - plain);
        put(b, escape, length);
        plain = i + 1;
    }
    put(b, s + plain, n - plain);
    put(b, "\"", 1);
}

static void put_json_var(struct buf *b, const char *name) {
    const char *value = getenv(name);
    if (value) {
        put_json(b, value, strlen(value));
    } else {
        put_str(b, "null");
    }
}

static int write_all(int fd, const void *bytes, size_t n) {
    const char *next = bytes;
    while (n > 0) {
        ssize_t put = write(fd, next, n);
        if (put < 0 && errno == EINTR) {
            continue;
        }
        if (put <= 0) {
            return -1;
        }
        next += put;
        n -= (size_t)put;
    }
    return 0;
}

/* The next `key=value` pair named `key` at or after *cursor; moves *cursor past it. */
static struct param next_param(const char **cursor, const char *key) {
    size_t key_len = strlen(key);
    const char *pair = *cursor;
    while (*pair) {
        const char *end = strchr(pair, '&');
        if (!end) {
            end = pair + strlen(pair);
        }
        const char *equals = memchr(pair, '=', (size_t)(end - pair));
        const char *name_end = equals ? equals : end;
        *cursor = *end ? end + 1 : end;
        if ((size_t)(name_end - pair) == key_len && memcmp(pair, key, key_len) == 0) {
            const char *value = equals ? equals + 1 : end;
            return (struct param){value, (size_t)(end - value)};
        }
        pair = *cursor;
    }
    return (struct param){NULL, 0};
}

static struct param find_param(const char *query, const char *key) {
    return next_param(&query, key);
}

static int param_is(struct param p, const char *text) {
    return p.at && p.len == strlen(text) && memcmp(p.at, text, p.len) == 0;
}

/* A decimal in 0..max; an absent parameter keeps *out. */
static int parse_number(struct param p, uint64_t max, uint64_t *out) {
    if (!p.at) {
        return 1;
    }
    uint64_t value = 0;
    for (size_t i = 0; i < p.len; i++) {
        unsigned digit = (unsigned)(unsigned char)p.at[i] - '0';
        if (digit > 9 || value > (max - digit) / 10) {
            return 0;
        }
        value = value * 10 + digit;
    }
    *out = value;
    return p.len > 0;
}

static int parse_flag(struct param p, int *out) {
    *out = param_is(p, "1");
    return !p.at || *out || param_is(p, "0");
}

/* Header text must not end the line early or smuggle in a control byte. */
static int printable(struct param p) {
    for (size_t i = 0; i < p.len; i++) {
        if ((unsigned char)p.at[i] < 0x20 || (unsigned char)p.at[i] == 0x7f) {
            return 0;
        }
    }
    return 1;
}

/* Reads the options from `query`; returns NULL, or the name of the first malformed one. */
static const char *parse_options(const char *query, struct options *o) {
    memset(o, 0, sizeof *o);
    o->status = find_param(query, "status");
    o->bad = find_param(query, "bad");
    o->stderr_text = find_param(query, "stderr");
    struct param big = find_param(query, "big");
    o->has_big = big.at != NULL;
    if (!printable(o->status) || (o->status.at && o->status.len == 0)) {
        return "status";
    }
    if (o->bad.at && !param_is(o->bad, "noheaders") && !param_is(o->bad, "garbage") &&
        !param_is(o->bad, "status") && !param_is(o->bad, "empty")) {
        return "bad";
    }
    if (!parse_flag(find_param(query, "crlf"), &o->crlf)) {
        return "crlf";
    }
    if (!parse_flag(find_param(query, "spin"), &o->spin)) {
        return "spin";
    }
    if (!parse_flag(find_param(query, "trap"), &o->trap)) {
        return "trap";
    }
    if (!parse_number(find_param(query, "sleep_ms"), MAX_SLEEP_MS, &o->sleep_ms)) {
        return "sleep_ms";
    }
    if (!parse_number(big, UINT64_MAX, &o->big)) {
        return "big";
    }
    if (!parse_number(find_param(query, "exit"), 255, &o->exit_code)) {
        return "exit";
    }
    const char *cursor = query;
    for (struct param h; (h = next_param(&cursor, "header")).at;) {
        const char *colon = memchr(h.at, ':', h.len);
        if (!colon || colon == h.at || !printable(h)) {
            return "header";
        }
    }
    return NULL;
}

/* The status line, `header=` lines and Content-Type, then the empty line. */
static void put_headers(struct buf *b, const struct options *o, const char *query,
                        const char *content_type) {
    const char *eol = o->crlf ? "\r\n" : "\n";
    if (o->status.at) {
        put_str(b, "Status: ");
        put(b, o->status.at, o->status.len);
        put_str(b, eol);
    }
    const char *cursor = query;
    for (struct param h; (h = next_param(&cursor, "header")).at;) {
        const char *colon = memchr(h.at, ':', h.len);
        size_t name_len = (size_t)(colon - h.at);
        put(b, h.at, name_len);
        put_str(b, ": ");
        put(b, colon + 1, h.len - name_len - 1);
        put_str(b, eol);
    }
    put_str(b, "Content-Type: ");
    put_str(b, content_type);
    put_str(b, eol);
    put_str(b, eol);
}

static size_t key_length(const char *entry) {
    const char *equals = strchr(entry, '=');
    return equals ? (size_t)(equals - entry) : strlen(entry);
}

/* Orders `KEY=VALUE` entries by KEY alone (`A` before `A1`, though '1' < '='). */
static int compare_keys(const void *a, const void *b) {
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    size_t x_len = key_length(x), y_len = key_length(y);
    int order = memcmp(x, y, x_len < y_len ? x_len : y_len);
    return order ? order : (x_len > y_len) - (x_len < y_len);
}

/* A JSON object of the sorted environment entries whose name starts with `prefix`. */
static void put_env_object(struct buf *b, char **sorted, size_t count, const char *prefix) {
    size_t prefix_len = strlen(prefix);
    const char *separator = "";
    put(b, "{", 1);
    for (size_t i = 0; i < count; i++) {
        if (strncmp(sorted[i], prefix, prefix_len) != 0) {
            continue;
        }
        size_t length = key_length(sorted[i]);
        const char *value = sorted[i][length] ? sorted[i] + length + 1 : "";
        put_str(b, separator);
        put_json(b, sorted[i], length);
        put_str(b, ": ");
        put_json(b, value, strlen(value));
        separator = ", ";
    }
    put(b, "}", 1);
}

static void put_echo(struct buf *b, const struct buf *body, int argc, char **argv) {
    static const char *const fields[][2] = {
        {"method", "REQUEST_METHOD"}, {"path", "PATH_INFO"},
        {"query", "QUERY_STRING"},    {"scriptName", "SCRIPT_NAME"},
        {"contentType", "CONTENT_TYPE"}, {"contentLength", "CONTENT_LENGTH"},
    };
    size_t count = 0;
    while (environ && environ[count]) {
        count++;
    }
    char **sorted = malloc((count + 1) * sizeof *sorted);
    if (!sorted) {
        b->failed = 1;
        return;
    }
    if (count > 0) {
        memcpy(sorted, environ, count * sizeof *sorted);
        qsort(sorted, count, sizeof *sorted, compare_keys);
    }
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        put_str(b, i == 0 ? "{\"" : ", \"");
        put_str(b, fields[i][0]);
        put_str(b, "\": ");
        put_json_var(b, fields[i][1]);
    }
    put_str(b, ", \"headers\": ");
    put_env_object(b, sorted, count, "HTTP_");
    put_str(b, ", \"body\": ");
    put_json(b, body->data, body->len);
    put_str(b, ", \"bodyLength\": ");
    put_u64(b, body->len);
    put_str(b, ", \"args\": [");
    for (int i = 1; i < argc; i++) {
        put_str(b, i == 1 ? "" : ", ");
        put_json(b, argv[i], strlen(argv[i]));
    }
    put_str(b, "], \"env\": ");
    put_env_object(b, sorted, count, "");
    put_str(b, "}\n");
    free(sorted);
}

static void read_stdin(struct buf *body) {
    char chunk[4096];
    for (;;) {
        ssize_t got = read(STDIN_FILENO, chunk, sizeof chunk);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            return; /* end of file; an error (a closed stdin) counts as the end too */
        }
        put(body, chunk, (size_t)got);
    }
}

static int bad_response(struct param bad) {
    static const char no_headers[] = "just a body\n";
    static const char bad_status[] = "Status: abc\n\nbad status\n";
    static const unsigned char garbage[] = {0x00, 0x01, 0xff, 'b', 'i', 'n', 0x00, 0x7f, 0xfe};
    if (param_is(bad, "noheaders")) {
        return write_all(STDOUT_FILENO, no_headers, sizeof no_headers - 1);
    }
    if (param_is(bad, "garbage")) {
        return write_all(STDOUT_FILENO, garbage, sizeof garbage);
    }
    if (param_is(bad, "status")) {
        return write_all(STDOUT_FILENO, bad_status, sizeof bad_status - 1);
    }
    return 0; /* empty */
}

static int big_response(const struct options *o, const char *query) {
    static char chunk[CHUNK];
    struct buf head = {0};
    put_headers(&head, o, query, "text/plain");
    int failed = head.failed || write_all(STDOUT_FILENO, head.data, head.len) != 0;
    free(head.data);
    if (failed) {
        return -1;
    }
    memset(chunk, 'x', sizeof chunk);
    for (uint64_t left = o->big; left > 0;) {
        size_t n = left < CHUNK ? (size_t)left : CHUNK;
        if (write_all(STDOUT_FILENO, chunk, n) != 0) {
            return -1;
        }
        left -= n;
    }
    return 0;
}

/* An error response of our own: `{"error": "MESSAGE NAME"}` with the given status. */
static int error_response(const char *status, const char *message, const char *name) {
    struct buf out = {0};
    put_str(&out, "Status: ");
    put_str(&out, status);
    put_str(&out, "\nContent-Type: application/json\n\n{\"error\": ");
    struct buf text = {0};
    put_str(&text, message);
    put_str(&text, name);
    put_json(&out, text.data, text.len);
    put_str(&out, "}\n");
    int failed = out.failed || text.failed || write_all(STDOUT_FILENO, out.data, out.len) != 0;
    free(text.data);
    free(out.data);
    return failed;
}

int main(int argc, char **argv) {
    const char *query = getenv("QUERY_STRING");
    query = query ? query : "";
    struct buf body = {0};
    read_stdin(&body);
    struct options o;
    const char *malformed = parse_options(query, &o);
    if (malformed) {
        return error_response("400 Bad Request", "bad query parameter ", malformed);
    }
    if (o.stderr_text.at) {
        write_all(STDERR_FILENO, o.stderr_text.at, o.stderr_text.len);
        write_all(STDERR_FILENO, "\n", 1);
    }
    if (o.sleep_ms > 0) { /* never a 0 ns sleep: it never returns under wasmer-sdk 0.5 */
        struct timespec pause = {(time_t)(o.sleep_ms / 1000), (long)(o.sleep_ms % 1000) * 1000000L};
        struct timespec left;
        while (nanosleep(&pause, &left) != 0 && errno == EINTR) {
            pause = left;
        }
    }
    if (o.spin) {
        /* volatile: every increment is a memory access the compiler must keep, and none is a
         * host call, so only an interrupting runtime (wasmtime's epochs) can stop this. */
        static volatile uint64_t spins;
        for (;;) {
            spins++;
        }
    }
    if (o.bad.at) {
        return bad_response(o.bad) != 0 ? 1 : (int)o.exit_code;
    }
    struct buf out = {0};
    if (o.trap) {
        put_headers(&out, &o, query, "application/json");
        put_str(&out, "partial");
        if (!out.failed) {
            write_all(STDOUT_FILENO, out.data, out.len);
        }
        __builtin_trap(); /* wasm `unreachable`: no exit status, the response is cut short */
    }
    if (o.has_big) {
        return big_response(&o, query) != 0 ? 1 : (int)o.exit_code;
    }
    put_headers(&out, &o, query, "application/json");
    put_echo(&out, &body, argc, argv);
    if (body.failed || out.failed) {
        free(body.data); /* give the memory back first, or the error has no room either */
        free(out.data);
        return error_response("500 Internal Server Error", "out of memory", "");
    }
    if (write_all(STDOUT_FILENO, out.data, out.len) != 0) {
        return 1;
    }
    return (int)o.exit_code;
}
