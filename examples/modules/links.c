/* links — plants symbolic links in a volume, as a hostile container would (security tests).
 *
 * Usage: links make TARGET PATH          create PATH as a symbolic link to TARGET
 *        links flip PATH TARGET COUNT    COUNT times (0: until stopped) turn PATH from a directory
 *                                        into a link to TARGET and back; the directory holds a
 *                                        file `marker` that says "inside"
 * `make` confirms on stdout (`links: PATH -> TARGET`); `flip` prints how many turns it made when
 * COUNT is reached. A failing `make` prints `links: cannot link PATH: <reason>` to stderr and
 * exits 1 (a runtime may refuse links); `flip` carries on past a failed step, because a reader
 * racing it may have created or opened the path in between.
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
    fputs("usage: links make TARGET PATH | flip PATH TARGET COUNT\n", stderr);
    return 2;
}

static int cmd_make(const char *target, const char *path) {
    if (symlink(target, path) != 0) {
        fprintf(stderr, "links: cannot link %s: %s\n", path, strerror(errno));
        return 1;
    }
    printf("links: %s -> %s\n", path, target);
    return 0;
}

/* A directory holding `marker`, ready to be renamed into place. */
static int prepare(const char *spare) {
    char marker[4096];
    snprintf(marker, sizeof marker, "%s/marker", spare);
    mkdir(spare, 0755);
    int fd = open(marker, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        fprintf(stderr, "links: cannot write %s: %s\n", marker, strerror(errno));
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
    printf("links: flipped %s %ld times\n", path, turns);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "make") == 0) {
        return cmd_make(argv[2], argv[3]);
    }
    if (argc == 5 && strcmp(argv[1], "flip") == 0) {
        return cmd_flip(argv[2], argv[3], strtol(argv[4], NULL, 10));
    }
    return usage();
}
