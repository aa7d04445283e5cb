/*
 * Fork/exec-heavy workload for the probe-overhead benchmark of `cargo xtask bench`.
 *
 *   forkexec COUNT PROGRAM
 *
 * Starts PROGRAM (e.g. /bin/true, no arguments) COUNT times, one after the other: fork, execv,
 * waitpid. Every iteration goes through the kernel paths TurboProcess's eBPF programs hook
 * (sched_process_fork, sched_process_exec, sched_process_exit). Prints
 * "<wall ns> <cpu ns>\n": CLOCK_MONOTONIC around the loop, and the CPU time (user + system) of
 * this process and its children over the loop, from getrusage: the kernel runs the probes in
 * the context of the process that forks, execs or exits, so their cost lands in that figure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static long long tv_ns(struct timeval tv) {
    return (long long)tv.tv_sec * 1000000000LL + (long long)tv.tv_usec * 1000LL;
}

static long long cpu_ns(void) {
    struct rusage self, children;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &children);
    return tv_ns(self.ru_utime) + tv_ns(self.ru_stime) + tv_ns(children.ru_utime) +
           tv_ns(children.ru_stime);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: forkexec COUNT PROGRAM\n");
        return 2;
    }
    char *end = NULL;
    long count = strtol(argv[1], &end, 10);
    if (*argv[1] == '\0' || *end != '\0' || count < 1 || count > 1000000) {
        fprintf(stderr, "forkexec: bad count %s\n", argv[1]);
        return 2;
    }
    char *child_argv[] = {argv[2], NULL};
    long long cpu0 = cpu_ns();
    long long t0 = now_ns();
    for (long i = 0; i < count; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("forkexec: fork");
            return 1;
        }
        if (pid == 0) {
            execv(argv[2], child_argv);
            _exit(127);
        }
        int status = 0;
        while (waitpid(pid, &status, 0) < 0) {
            if (errno != EINTR) {
                perror("forkexec: waitpid");
                return 1;
            }
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "forkexec: %s failed (status %d)\n", argv[2], status);
            return 1;
        }
    }
    long long t1 = now_ns();
    long long cpu1 = cpu_ns();
    printf("%lld %lld\n", t1 - t0, cpu1 - cpu0);
    return 0;
}
