/*
 * Page-fault-heavy workload for the probe-overhead benchmark of `cargo xtask bench`.
 *
 *   pagefault MEGABYTES
 *
 * Maps MEGABYTES of anonymous memory and writes one byte to every page, so each page takes a
 * fault and the kernel updates the process's RSS counters (where the `rss_stat` tracepoint
 * fires, which TurboProcess hooks while some app has a memory limit); then unmaps it. Prints
 * "<wall ns> <cpu ns>\n": CLOCK_MONOTONIC around the touching, and this process's CPU time (user
 * + system, getrusage) over it.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static long long cpu_ns(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return ((long long)r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1000000000LL +
           ((long long)r.ru_utime.tv_usec + r.ru_stime.tv_usec) * 1000LL;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: pagefault MEGABYTES\n");
        return 2;
    }
    char *end = NULL;
    long mb = strtol(argv[1], &end, 10);
    if (*argv[1] == '\0' || *end != '\0' || mb < 1 || mb > 65536) {
        fprintf(stderr, "pagefault: bad size %s\n", argv[1]);
        return 2;
    }
    size_t len = (size_t)mb << 20;
    long page = sysconf(_SC_PAGESIZE);
    long long cpu0 = cpu_ns();
    long long t0 = now_ns();
    volatile char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("pagefault: mmap");
        return 1;
    }
    /* no transparent huge pages: one fault per small page, as most programs see them */
    madvise((void *)p, len, MADV_NOHUGEPAGE);
    for (size_t off = 0; off < len; off += (size_t)page) {
        p[off] = 1;
    }
    munmap((void *)p, len);
    long long t1 = now_ns();
    long long cpu1 = cpu_ns();
    printf("%lld %lld\n", t1 - t0, cpu1 - cpu0);
    return 0;
}
