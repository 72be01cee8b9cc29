/* hostile — what a hostile tenant's module does to its volumes (the security tests).
 *
 * Usage: hostile link TARGET PATH        create PATH as a symbolic link to TARGET
 *        hostile flip PATH TARGET COUNT  COUNT times (0: until stopped) turn PATH from a directory
 *                                        into a link to TARGET and back; the directory holds a
 *                                        file `marker` that says "inside"
 *        hostile fill PATH BYTES         write BYTES bytes to the file PATH, 64 KiB at a time,
 *                                        then keep running (until stopped)
 * `link` confirms on stdout (`hostile: PATH -> TARGET`); `flip` prints how many turns it made when
 * COUNT is reached; `fill` prints `hostile: wrote N bytes to PATH` before it waits. A failing
 * `link` or `fill` prints `hostile: cannot <verb> PATH: <reason>` to stderr and exits 1 (a runtime
 * may refuse links); `flip` carries on past a failed step, because a reader racing it may have
 * created or opened the path in between.
 * A malformed command line prints usage to stderr and exits 2.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int usage(void) {
    fputs("usage: hostile link TARGET PATH | flip PATH TARGET COUNT | fill PATH BYTES\n", stderr);
    return 2;
}

static int cmd_link(const char *target, const char *path) {
    if (symlink(target, path) != 0) {
        fprintf(stderr, "hostile: cannot link %s: %s\n", path, strerror(errno));
        return 1;
    }
    printf("hostile: %s -> %s\n", path, target);
    return 0;
}

/* A directory holding `marker`, ready to be renamed into place. */
static int prepare(const char *spare) {
    char marker[4096];
    snprintf(marker, sizeof marker, "%s/marker", spare);
    mkdir(spare, 0755);
    int fd = open(marker, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        fprintf(stderr, "hostile: cannot write %s: %s\n", marker, strerror(errno));
        return 1;
    }
    int failed = write(fd, "inside\n", 7) != 7;
    close(fd);
    return failed;
}

/* Keep the current state a while (a thousand host calls) so that a reader can meet either one. */
static void linger(const char *path) {
    struct stat st;
    for (int i = 0; i < 1000; i++) {
        lstat(path, &st);
    }
}

static int cmd_flip(const char *path, const char *target, long count) {
    char spare[4096];
    snprintf(spare, sizeof spare, "%s.real", path);
    if (prepare(spare) != 0) {
        return 1;
    }
    long turns = 0;
    for (; count == 0 || turns < count; turns++) {
        /* A directory: the spare moves into place (over an empty directory a reader made, too). */
        rename(spare, path);
        linger(path);
        /* Then a link: the directory moves aside and the link takes its name. */
        if (rename(path, spare) != 0) {
            rmdir(path);
        }
        symlink(target, path);
        linger(path);
        unlink(path);
    }
    printf("hostile: flipped %s %ld times\n", path, turns);
    return 0;
}

static int cmd_fill(const char *path, long long bytes) {
    static char chunk[65536];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        fprintf(stderr, "hostile: cannot fill %s: %s\n", path, strerror(errno));
        return 1;
    }
    long long written = 0;
    memset(chunk, 'x', sizeof chunk);
    while (written < bytes) {
        size_t step = bytes - written < (long long)sizeof chunk ? (size_t)(bytes - written) : sizeof chunk;
        ssize_t put = write(fd, chunk, step);
        if (put <= 0) {
            fprintf(stderr, "hostile: cannot fill %s: %s\n", path, strerror(errno));
            close(fd);
            return 1;
        }
        written += put;
    }
    close(fd);
    printf("hostile: wrote %lld bytes to %s\n", written, path);
    fflush(stdout);
    for (;;) {
        sleep(1);
    }
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "link") == 0) {
        return cmd_link(argv[2], argv[3]);
    }
    if (argc == 4 && strcmp(argv[1], "fill") == 0) {
        return cmd_fill(argv[2], strtoll(argv[3], NULL, 10));
    }
    if (argc == 5 && strcmp(argv[1], "flip") == 0) {
        return cmd_flip(argv[2], argv[3], strtol(argv[4], NULL, 10));
    }
    return usage();
}
