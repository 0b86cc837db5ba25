/* The spawn ceiling: how many times per second PARALLEL loops of posix_spawn +
 * waitpid can run PROGRAM, its output thrown away, for SECONDS. No server can run a
 * CGI program more often than this on the same machine, so vs-nginx.sh prints it
 * beside the servers' rates for the same program.
 *
 *   spawn-ceiling PROGRAM SECONDS PARALLEL      (prints starts per second)
 */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s PROGRAM SECONDS PARALLEL\n", argv[0]);
        return 2;
    }
    double seconds = atof(argv[2]);
    int parallel = atoi(argv[3]);
    long *started = mmap(0, sizeof(long) * parallel, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    double begin = now();
    for (int p = 0; p < parallel; p++) {
        if (fork() != 0) continue;
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
        char *args[] = {argv[1], 0};
        while (now() - begin < seconds) {
            pid_t pid;
            if (posix_spawn(&pid, argv[1], &actions, 0, args, environ) != 0) _exit(1);
            waitpid(pid, 0, 0);
            started[p]++;
        }
        _exit(0);
    }
    int failed = 0, status;
    while (wait(&status) > 0) failed |= !WIFEXITED(status) || WEXITSTATUS(status);
    long total = 0;
    for (int p = 0; p < parallel; p++) total += started[p];
    if (failed) {
        fprintf(stderr, "spawn-ceiling: cannot start %s\n", argv[1]);
        return 1;
    }
    printf("%.0f\n", total / (now() - begin));
    return 0;
}
