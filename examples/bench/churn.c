/*
 * Process-churn workload for the churn benchmark of `cargo xtask bench`.
 *
 *   churn RATE SECONDS CODE
 *
 * Forks RATE short-lived children a second for SECONDS (each child exits at once; the parent
 * reaps it), the way shell loops, CGI-style workers and build agents churn through processes,
 * then prints "forked <count> in <ns> ns" and exits with CODE. Paced by CLOCK_MONOTONIC: when
 * it falls behind it forks without pause, when ahead it sleeps a millisecond. Up to 64 children
 * are in flight (reaped without blocking), so a fork need not wait for the last child's exit to
 * be scheduled: on two cores a strictly serial fork/wait loop stays far below 10,000 a second
 * on a busy machine. Every child goes
 * through the kernel paths TurboProcess's eBPF programs hook (sched_process_fork and
 * sched_process_exit).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static long parse(const char *s, long max) {
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0 || v > max) {
        fprintf(stderr, "churn: bad number %s\n", s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: churn RATE SECONDS CODE\n");
        return 2;
    }
    long rate = parse(argv[1], 1000000);
    long seconds = parse(argv[2], 86400);
    long code = parse(argv[3], 255);
    long long start = now_ns();
    long long end = start + seconds * 1000000000LL;
    long long forked = 0;
    long in_flight = 0;
    for (;;) {
        long long t = now_ns();
        if (t >= end) {
            break;
        }
        long long due = (t - start) * rate / 1000000000LL;
        if (forked >= due) {
            struct timespec pause = {0, 1000000};
            nanosleep(&pause, NULL);
            continue;
        }
        while (waitpid(-1, NULL, in_flight >= 64 ? 0 : WNOHANG) > 0) {
            in_flight--;
        }
        pid_t pid = fork();
        if (pid == 0) {
            _exit(0);
        }
        if (pid < 0) {
            perror("churn: fork");
            return 1;
        }
        in_flight++;
        forked++;
    }
    while (in_flight > 0 && waitpid(-1, NULL, 0) > 0) {
        in_flight--;
    }
    printf("forked %lld in %lld ns\n", forked, now_ns() - start);
    fflush(stdout);
    return (int)code;
}
