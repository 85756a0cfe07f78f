/* Workload generator for scripts/bench/agent-overhead.
 *
 *   storm exec N [TAG]  fork + exec `/bin/true TAG` N times, one after another
 *                       (TAG lets the benchmark find these execs in the
 *                       agent's output)
 *   storm file N DIR    N times: create, write 4 KiB, rename, unlink in DIR
 *
 * Prints the wall time in seconds on stdout. Written in C so that the
 * workload itself costs as little as possible and the same binary runs under
 * every monitoring setup the benchmark compares.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int exec_storm(long n, char *tag) {
    char *const argv[] = {"/bin/true", tag, NULL};
    char *const envp[] = {NULL};
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            execve("/bin/true", argv, envp);
            _exit(127);
        }
        int status;
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "child %ld failed\n", i);
            return 1;
        }
    }
    return 0;
}

static int file_storm(long n, const char *dir) {
    char buf[4096];
    memset(buf, 'v', sizeof buf);
    char a[4096], b[4096];
    for (long i = 0; i < n; i++) {
        snprintf(a, sizeof a, "%s/f%ld.tmp", dir, i);
        snprintf(b, sizeof b, "%s/f%ld.dat", dir, i);
        int fd = open(a, O_CREAT | O_WRONLY | O_TRUNC, 0644);
        if (fd < 0 || write(fd, buf, sizeof buf) != (ssize_t)sizeof buf || close(fd) != 0) {
            perror(a);
            return 1;
        }
        if (rename(a, b) != 0 || unlink(b) != 0) {
            perror(b);
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3 || (strcmp(argv[1], "file") == 0 && argc < 4)) {
        fprintf(stderr, "usage: storm exec N [TAG] | storm file N DIR\n");
        return 2;
    }
    long n = atol(argv[2]);
    double t0 = now();
    int rc = strcmp(argv[1], "exec") == 0 ? exec_storm(n, argc > 3 ? argv[3] : NULL) : file_storm(n, argv[3]);
    if (rc == 0)
        printf("%.3f\n", now() - t0);
    return rc;
}
