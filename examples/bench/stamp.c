/*
 * Restart-latency probe for `cargo xtask bench`.
 *
 *   stamp FILE [MEGABYTES]
 *
 * First thing on start, reads CLOCK_MONOTONIC (one system-wide clock on Linux, the same one the
 * harness reads just before it sends SIGKILL), then writes "<pid> <monotonic ns>\n" to FILE
 * atomically (a temporary file renamed over it) and sleeps until it is killed. With MEGABYTES,
 * after the stamp it allocates and touches that much memory before sleeping (the harness waits
 * for the RSS before it kills), so that the kernel has that much to free when it dies. After 10
 * minutes it exits on its own, so a leftover can never live for long.
 *
 * C rather than Python so that the measured latency is the process manager's, not an
 * interpreter's start-up (python3 takes 15-30 ms to reach its first line).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: stamp FILE [MEGABYTES]\n");
        return 2;
    }
    long mb = 0;
    if (argc == 3) {
        char *end = NULL;
        mb = strtol(argv[2], &end, 10);
        if (*argv[2] == '\0' || *end != '\0' || mb < 0 || mb > 65536) {
            fprintf(stderr, "stamp: bad size %s\n", argv[2]);
            return 2;
        }
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", argv[1], (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        perror(tmp);
        return 1;
    }
    fprintf(f, "%d %lld\n", (int)getpid(), (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
    if (fclose(f) != 0 || rename(tmp, argv[1]) != 0) {
        perror(argv[1]);
        return 1;
    }
    if (mb > 0) {
        size_t len = (size_t)mb << 20;
        /* volatile: the compiler must not drop stores to memory nobody reads */
        volatile char *p = malloc(len);
        if (p == NULL) {
            perror("stamp: malloc");
            return 1;
        }
        for (size_t off = 0; off < len; off += 4096) {
            p[off] = 1;
        }
    }
    for (int i = 0; i < 600; i++) {
        sleep(1);
    }
    return 0;
}
