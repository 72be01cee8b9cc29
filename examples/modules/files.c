/* files — reads and writes files in the directories a runtime mounts (preopens).
 *
 * Usage: files read PATH          print the file's bytes to stdout
 *        files write PATH TEXT    replace the file with TEXT and a newline
 *        files append PATH TEXT   add TEXT and a newline at the end (creates the file)
 *        files list DIR           print the entries of DIR sorted, directories with a `/`
 *        files mkdir DIR          create DIR (its parent must exist)
 * write/append/mkdir confirm on stdout (`files: wrote 6 bytes to /data/a.txt`).
 * On failure prints `files: cannot <verb> PATH: <reason>` to stderr and exits 1, e.g. writing
 * to a read-only mount (wasmtime: "Operation not permitted") or naming a path outside every
 * preopen (wasi-libc finds no preopen for it: "No such file or directory").
 * A malformed command line prints usage to stderr and exits 2.
 * Tests use it for volumeMounts (readOnly, emptyDir, configMap/secret files).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(const char *verb, const char *path) {
    fprintf(stderr, "files: cannot %s %s: %s\n", verb, path, strerror(errno));
    return 1;
}

static int usage(void) {
    fputs("usage: files read PATH | write PATH TEXT | append PATH TEXT | list DIR | mkdir DIR\n",
          stderr);
    return 2;
}

static int cmd_read(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        return fail("read", path);
    }
    char buffer[4096];
    ssize_t got;
    while ((got = read(fd, buffer, sizeof buffer)) > 0) {
        fwrite(buffer, 1, (size_t)got, stdout);
    }
    int failed = got < 0;
    close(fd);
    return failed ? fail("read", path) : 0;
}

static int cmd_write(const char *path, const char *text, int flags, const char *verb,
                     const char *done) {
    int fd = open(path, O_WRONLY | O_CREAT | flags, 0644);
    if (fd < 0) {
        return fail(verb, path);
    }
    size_t length = strlen(text);
    /* One write call for text and newline, so concurrent appenders never interleave a line. */
    char *line = malloc(length + 1);
    if (!line) {
        close(fd);
        return fail(verb, path);
    }
    memcpy(line, text, length);
    line[length] = '\n';
    ssize_t put = write(fd, line, length + 1);
    free(line);
    if (put != (ssize_t)(length + 1) || close(fd) != 0) {
        return fail(verb, path);
    }
    printf("files: %s %zu bytes to %s\n", done, length + 1, path);
    return 0;
}

static int compare(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmd_list(const char *path) {
    DIR *dir = opendir(path);
    if (!dir) {
        return fail("list", path);
    }
    char **names = NULL;
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) {
            continue;
        }
        char **grown = realloc(names, (count + 1) * sizeof *names);
        if (!grown) {
            return fail("list", path);
        }
        names = grown;
        size_t length = strlen(entry->d_name);
        names[count] = malloc(length + 2);
        if (!names[count]) {
            return fail("list", path);
        }
        memcpy(names[count], entry->d_name, length + 1);
        if (entry->d_type == DT_DIR) {
            memcpy(names[count] + length, "/", 2);
        }
        count++;
    }
    closedir(dir);
    /* readdir order is whatever the runtime's filesystem returns; sort for stable output. */
    qsort(names, count, sizeof *names, compare);
    for (size_t i = 0; i < count; i++) {
        puts(names[i]);
        free(names[i]);
    }
    free(names);
    return 0;
}

static int cmd_mkdir(const char *path) {
    if (mkdir(path, 0755) != 0) {
        return fail("mkdir", path);
    }
    printf("files: created %s\n", path);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "read") == 0) {
        return cmd_read(argv[2]);
    }
    if (argc == 4 && strcmp(argv[1], "write") == 0) {
        return cmd_write(argv[2], argv[3], O_TRUNC, "write", "wrote");
    }
    if (argc == 4 && strcmp(argv[1], "append") == 0) {
        return cmd_write(argv[2], argv[3], O_APPEND, "append to", "appended");
    }
    if (argc == 3 && strcmp(argv[1], "list") == 0) {
        return cmd_list(argv[2]);
    }
    if (argc == 3 && strcmp(argv[1], "mkdir") == 0) {
        return cmd_mkdir(argv[2]);
    }
    return usage();
}
