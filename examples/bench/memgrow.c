/*
 * Memory-limit workload for `cargo xtask bench` (the memory-limit reaction metric).
 *
 *   memgrow EVENTS LIMIT_MB STEP_MB INTERVAL_MS CAP_MB
 *
 * First thing on start, appends "start <pid> <ns>\n" to EVENTS (CLOCK_MONOTONIC, the clock the
 * harness and the other workloads use). Then every INTERVAL_MS it maps STEP_MB more anonymous
 * memory and writes to every page (so it is resident); after every 16 pages (64 KiB on x86-64)
 * it reads its own resident size (/proc/self/statm) and:
 *   - keeps the largest value seen in "EVENTS.peak.<pid>" (rewritten in place, so whatever
 *     kills the process, the file holds its peak to within 64 KiB);
 *   - the first time the resident size reaches LIMIT_MB, appends "cross <pid> <ns> <bytes>\n"
 *     to EVENTS: the moment the limit was crossed, as the process itself saw it.
 * At CAP_MB it stops growing and holds its memory (a bound for a manager that reacts late or
 * never); after 10 minutes it exits on its own, so a leftover can never live for long.
 *
 * A manager acting on the kernel's own counter kills the process within microseconds of its
 * crossing at the earliest (an event, a wake-up, a kill(2)), while 16 pages take a few
 * microseconds to touch: the process sees its crossing before any manager can react.
 *
 * Appends of one short line with O_APPEND are atomic, so the lines of successive processes
 * (the restarts) never mix.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static long number(const char *s, long max) {
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > max) {
        fprintf(stderr, "memgrow: bad number %s\n", s);
        exit(2);
    }
    return v;
}

/* Resident bytes of this process, from /proc/self/statm (its second field, in pages). */
static long long resident(int statm, long page) {
    char buf[128];
    ssize_t n = pread(statm, buf, sizeof buf - 1, 0);
    if (n <= 0) {
        return -1;
    }
    buf[n] = '\0';
    long long size = 0, rss = 0;
    if (sscanf(buf, "%lld %lld", &size, &rss) != 2) {
        return -1;
    }
    return rss * page;
}

static void append(int fd, const char *line) {
    if (write(fd, line, strlen(line)) < 0) {
        perror("memgrow: write");
        exit(1);
    }
}

int main(int argc, char **argv) {
    long long started = now_ns();
    if (argc != 6) {
        fprintf(stderr, "usage: memgrow EVENTS LIMIT_MB STEP_MB INTERVAL_MS CAP_MB\n");
        return 2;
    }
    long long limit = (long long)number(argv[2], 65536) << 20;
    long step = number(argv[3], 65536);
    long interval_ms = number(argv[4], 60000);
    long cap = number(argv[5], 65536);
    int events = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (events < 0) {
        perror(argv[1]);
        return 1;
    }
    char line[256];
    snprintf(line, sizeof line, "start %d %lld\n", (int)getpid(), started);
    append(events, line);

    char path[4096];
    snprintf(path, sizeof path, "%s.peak.%d", argv[1], (int)getpid());
    int peak_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int statm = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (peak_fd < 0 || statm < 0) {
        perror("memgrow: open");
        return 1;
    }
    long page = sysconf(_SC_PAGESIZE);
    long long peak = 0;
    int crossed = 0;
    long grown = 0;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    while (grown < cap) {
        long mb = step < cap - grown ? step : cap - grown;
        volatile char *p =
            mmap(NULL, (size_t)mb << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            perror("memgrow: mmap");
            return 1;
        }
        size_t len = (size_t)mb << 20;
        size_t check = 16 * (size_t)page;
        for (size_t off = 0; off < len; off += (size_t)page) {
            p[off] = 1;
            if ((off + (size_t)page) % check != 0 && off + (size_t)page < len) {
                continue;
            }
            long long rss = resident(statm, page);
            if (rss > peak) {
                peak = rss;
                char num[32];
                int n = snprintf(num, sizeof num, "%020lld\n", peak);
                if (pwrite(peak_fd, num, (size_t)n, 0) != n) {
                    perror("memgrow: pwrite");
                    return 1;
                }
            }
            if (!crossed && rss >= limit) {
                crossed = 1;
                snprintf(line, sizeof line, "cross %d %lld %lld\n", (int)getpid(), now_ns(), rss);
                append(events, line);
            }
        }
        grown += mb;
        /* a fixed rate: the next step starts INTERVAL_MS after the previous one started */
        next.tv_nsec += (interval_ms % 1000) * 1000000L;
        next.tv_sec += interval_ms / 1000 + next.tv_nsec / 1000000000L;
        next.tv_nsec %= 1000000000L;
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    for (int i = 0; i < 600; i++) {
        sleep(1);
    }
    return 0;
}
