/* http-json — a tiny JSON API over a directory, such as a mounted ConfigMap.
 *
 * Usage: http-json     (run by the agent once per HTTP request, docs/http.md)
 * The directory is $DATA_DIR, default /config; its items are the regular files in it (symlinks
 * followed) whose names do not start with `.` (a kubelet's ConfigMap volume also holds `..data`
 * and `..<timestamp>` entries). Routes, on PATH_INFO:
 *   GET /items          200 ["a", "b"]                    the item names, sorted bytewise
 *   GET /items/NAME     200 {"name": "NAME", "value": "<the file's content>"}
 *                       404 {"error": "no item NAME"}     no such regular file
 *                       400 {"error": "bad item name NAME"}  NAME has a `/` or starts with `.`
 *   anything else       404 {"error": "no route for PATH"}
 * A known route with another method than GET gets 405 and `Allow: GET`; a missing or
 * unreadable directory 503; an item over 1 MiB (a ConfigMap's limit) 500. Every body is
 * `Content-Type: application/json`, one line. Strings are UTF-8: valid UTF-8 passes through,
 * control characters are escaped, and each byte of an invalid sequence becomes U+FFFD.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ITEM_BYTES (1024 * 1024)

/* A growable byte buffer. `failed` sticks after an allocation failure: check it once, at the end. */
struct buf {
    char *data;
    size_t len, cap;
    int failed;
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

/* The length of the well-formed UTF-8 sequence at `s` (of `n` bytes), or 0 if it is none. */
static size_t utf8_length(const unsigned char *s, size_t n) {
    size_t length;
    uint32_t code, least;
    if (s[0] < 0x80) {
        return 1;
    } else if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        length = 2, code = s[0] & 0x1fu, least = 0x80;
    } else if ((s[0] & 0xf0) == 0xe0) {
        length = 3, code = s[0] & 0x0fu, least = 0x800;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        length = 4, code = s[0] & 0x07u, least = 0x10000;
    } else {
        return 0;
    }
    if (length > n) {
        return 0;
    }
    for (size_t i = 1; i < length; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        code = code << 6 | (s[i] & 0x3fu);
    }
    /* No overlong forms, no surrogates, nothing past U+10FFFF. */
    if (code < least || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) {
        return 0;
    }
    return length;
}

/* The characters of a JSON string (no quotes) for `n` bytes of text. */
static void put_json_chars(struct buf *b, const char *text, size_t n) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)text;
    size_t plain = 0; /* start of the run of bytes that pass through unchanged */
    for (size_t i = 0; i < n;) {
        size_t length = utf8_length(s + i, n - i);
        char escape[6] = {'\\', (char)s[i], 0, 0, 0, 0};
        size_t escape_len = 2;
        if (length == 0) {
            memcpy(escape, "\\ufffd", 6);
            escape_len = 6;
            length = 1;
        } else if (s[i] == '\n' || s[i] == '\r' || s[i] == '\t') {
            escape[1] = s[i] == '\n' ? 'n' : s[i] == '\r' ? 'r' : 't';
        } else if (s[i] < 0x20) {
            memcpy(escape, "\\u00", 4);
            escape[4] = hex[s[i] >> 4];
            escape[5] = hex[s[i] & 15];
            escape_len = 6;
        } else if (s[i] != '"' && s[i] != '\\') {
            i += length;
            continue;
        }
        put(b, text + plain, i - plain);
        put(b, escape, escape_len);
        i += length;
        plain = i;
    }
    put(b, text + plain, n - plain);
}

static void put_json(struct buf *b, const char *text, size_t n) {
    put(b, "\"", 1);
    put_json_chars(b, text, n);
    put(b, "\"", 1);
}

static int write_all(const char *bytes, size_t n) {
    while (n > 0) {
        ssize_t put = write(STDOUT_FILENO, bytes, n);
        if (put < 0 && errno == EINTR) {
            continue;
        }
        if (put <= 0) {
            return 1;
        }
        bytes += put;
        n -= (size_t)put;
    }
    return 0;
}

/* Writes the response: `status` ("404 Not Found"), any extra header lines, then `json`.
 * Returns the exit code: 0, or 1 when the response could not be built or written. */
static int respond(const char *status, const char *headers, struct buf *json) {
    struct buf out = {0};
    put_str(&out, "Status: ");
    put_str(&out, status);
    put_str(&out, "\nContent-Type: application/json\n");
    put_str(&out, headers);
    put_str(&out, "\n");
    put(&out, json->data, json->len);
    put_str(&out, "\n");
    int failed = json->failed || out.failed || write_all(out.data, out.len);
    free(out.data);
    free(json->data);
    return failed;
}

/* {"error": "<message><detail>"} with `status`. */
static int fail(const char *status, const char *headers, const char *message, const char *detail) {
    struct buf json = {0};
    put_str(&json, "{\"error\": \"");
    put_json_chars(&json, message, strlen(message));
    put_json_chars(&json, detail, strlen(detail));
    put_str(&json, "\"}");
    return respond(status, headers, &json);
}

static int unavailable(const char *dir) {
    return fail("503 Service Unavailable", "", "data directory unavailable: ", dir);
}

/* `dir` + "/" + `name` in new memory, or NULL. */
static char *join(const char *dir, const char *name) {
    size_t dir_len = strlen(dir), name_len = strlen(name);
    int slash = dir_len == 0 || dir[dir_len - 1] != '/';
    char *path = malloc(dir_len + (size_t)slash + name_len + 1);
    if (path) {
        memcpy(path, dir, dir_len);
        if (slash) {
            path[dir_len] = '/';
        }
        memcpy(path + dir_len + (size_t)slash, name, name_len + 1);
    }
    return path;
}

static int is_regular_file(const char *dir, const char *name) {
    char *path = join(dir, name);
    struct stat st;
    int regular = path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
    free(path);
    return regular;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t count) {
    for (size_t i = 0; i < count; i++) {
        free(names[i]);
    }
    free(names);
}

static int list_items(const char *dir) {
    DIR *stream = opendir(dir);
    if (!stream) {
        return unavailable(dir);
    }
    char **names = NULL;
    size_t count = 0;
    int failed = 0, out_of_memory = 0;
    for (;;) {
        errno = 0;
        struct dirent *entry = readdir(stream);
        if (!entry) {
            failed = errno != 0;
            break;
        }
        if (entry->d_name[0] == '.' || !is_regular_file(dir, entry->d_name)) {
            continue;
        }
        char **grown = count < SIZE_MAX / sizeof *names - 1
                           ? realloc(names, (count + 1) * sizeof *names)
                           : NULL;
        char *copy = grown ? strdup(entry->d_name) : NULL;
        names = grown ? grown : names;
        if (!copy) {
            out_of_memory = 1;
            break;
        }
        names[count++] = copy;
    }
    closedir(stream);
    if (failed || out_of_memory) {
        free_names(names, count);
        return out_of_memory ? fail("500 Internal Server Error", "", "out of memory", "")
                             : unavailable(dir);
    }
    if (count > 0) {
        qsort(names, count, sizeof *names, compare_names);
    }
    struct buf json = {0};
    put_str(&json, "[");
    for (size_t i = 0; i < count; i++) {
        put_str(&json, i == 0 ? "" : ", ");
        put_json(&json, names[i], strlen(names[i]));
    }
    put_str(&json, "]");
    free_names(names, count);
    return respond("200 OK", "", &json);
}

/* Reads at most MAX_ITEM_BYTES + 1 bytes of `fd` into `content`; 0, or an errno value. */
static int read_item(int fd, struct buf *content) {
    char chunk[4096];
    while (content->len <= MAX_ITEM_BYTES) {
        ssize_t got = read(fd, chunk, sizeof chunk);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            return errno;
        }
        if (got == 0) {
            break;
        }
        put(content, chunk, (size_t)got);
    }
    return content->failed ? ENOMEM : 0;
}

static int show_item(const char *dir, const char *name) {
    char *path = join(dir, name);
    if (!path) {
        return 1;
    }
    int fd = open(path, O_RDONLY);
    int open_error = fd < 0 ? errno : 0;
    free(path);
    struct stat st;
    if (fd < 0 && open_error != ENOENT && open_error != ENOTDIR) {
        return fail("503 Service Unavailable", "", "cannot read item ", name);
    }
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) {
            close(fd);
        }
        return fail("404 Not Found", "", "no item ", name);
    }
    struct buf content = {0};
    int error = read_item(fd, &content);
    close(fd);
    if (error || content.len > MAX_ITEM_BYTES) {
        free(content.data);
        return error ? fail("503 Service Unavailable", "", "cannot read item ", name)
                     : fail("500 Internal Server Error", "", "item is over 1 MiB: ", name);
    }
    struct buf json = {0};
    put_str(&json, "{\"name\": ");
    put_json(&json, name, strlen(name));
    put_str(&json, ", \"value\": ");
    put_json(&json, content.data, content.len);
    put_str(&json, "}");
    free(content.data);
    return respond("200 OK", "", &json);
}

int main(void) {
    const char *method = getenv("REQUEST_METHOD");
    const char *path = getenv("PATH_INFO");
    const char *dir = getenv("DATA_DIR");
    path = path ? path : "";
    dir = dir && *dir ? dir : "/config";
    const char *name = NULL;
    if (strncmp(path, "/items/", 7) == 0 && path[7] != '\0') {
        name = path + 7;
    } else if (strcmp(path, "/items") != 0 && strcmp(path, "/items/") != 0) {
        return fail("404 Not Found", "", "no route for ", path);
    }
    if (!method || strcmp(method, "GET") != 0) {
        return fail("405 Method Not Allowed", "Allow: GET\n", "method not allowed: ",
                    method ? method : "");
    }
    if (name && (name[0] == '.' || strchr(name, '/'))) {
        return fail("400 Bad Request", "", "bad item name ", name);
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        return unavailable(dir);
    }
    return name ? show_item(dir, name) : list_items(dir);
}
