/*
 * Log-throughput writer for `cargo xtask bench`.
 *
 *   logflood LINES MARKER
 *
 * Writes LINES numbered lines of exactly 100 bytes to stdout as fast as it can, in 64 KiB
 * writes: "%010u " then 88 'x' then '\n' (line 0 is "0000000000 xxx...x"). The numbers let the
 * harness check that every line arrived exactly once and in order. Then it writes
 * "<start ns> <end ns>\n" (CLOCK_MONOTONIC before the first write and after the last one) to
 * MARKER, atomically. C, so that the writer is never the bottleneck.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINE 100
#define PER_WRITE 655 /* 65,500 bytes: one 64 KiB pipe buffer */

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int write_all(const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(1, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EAGAIN) {
            struct pollfd pfd = {.fd = 1, .events = POLLOUT};
            poll(&pfd, 1, 1000);
        } else if (!(w < 0 && errno == EINTR)) {
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: logflood LINES MARKER\n");
        return 2;
    }
    char *end = NULL;
    unsigned long lines = strtoul(argv[1], &end, 10);
    if (*argv[1] == '\0' || *end != '\0' || lines > 9999999999UL) {
        fprintf(stderr, "logflood: bad line count %s\n", argv[1]);
        return 2;
    }
    static char buf[PER_WRITE * LINE];
    for (int i = 0; i < PER_WRITE; i++) {
        char *l = buf + i * LINE;
        memset(l, 'x', LINE - 1);
        l[10] = ' ';
        l[LINE - 1] = '\n';
    }
    long long start = now_ns();
    unsigned long n = 0;
    while (n < lines) {
        unsigned long batch = lines - n < PER_WRITE ? lines - n : PER_WRITE;
        for (unsigned long i = 0; i < batch; i++) {
            unsigned long v = n + i;
            char *d = buf + i * LINE;
            for (int k = 9; k >= 0; k--) {
                d[k] = (char)('0' + v % 10);
                v /= 10;
            }
        }
        if (write_all(buf, batch * LINE) != 0) {
            perror("logflood: write");
            return 1;
        }
        n += batch;
    }
    long long stop = now_ns();
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[2]);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        perror(tmp);
        return 1;
    }
    fprintf(f, "%lld %lld\n", start, stop);
    if (fclose(f) != 0 || rename(tmp, argv[2]) != 0) {
        perror(argv[2]);
        return 1;
    }
    return 0;
}
