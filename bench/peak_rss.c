/* peak_rss: run a command and print its peak resident set size.
 *
 *   peak_rss COMMAND [ARG...]    prints "peak_rss_kib N" on standard error
 *
 * Before it, the command's I/O counters as /proc/PID/io has them once it has
 * exited (read while it is a zombie, not yet reaped): "io_rchar N" (the
 * bytes its read calls asked for and got, from the page cache or the disk)
 * and "io_read_bytes N" (those that came from the disk).
 *
 * A child's ru_maxrss also counts the memory of the process that forked it
 * (Linux carries the high-water mark across fork and exec), so measuring a
 * small program from a large Python interpreter reports the interpreter.
 * Forked from this small process instead, the figure is the command's own
 * (to within this program's few hundred KiB). Exits with the command's
 * status. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: peak_rss COMMAND [ARG...]\n");
        return 2;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("peak_rss: fork");
        return 2;
    }
    if (pid == 0) {
        execvp(argv[1], argv + 1);
        perror(argv[1]);
        _exit(127);
    }
    siginfo_t info;
    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT) == 0) {
        char path[64], line[128];
        snprintf(path, sizeof path, "/proc/%ld/io", (long)pid);
        FILE *io = fopen(path, "r");
        while (io && fgets(line, sizeof line, io)) {
            unsigned long long n;
            if (sscanf(line, "rchar: %llu", &n) == 1)
                fprintf(stderr, "io_rchar %llu\n", n);
            else if (sscanf(line, "read_bytes: %llu", &n) == 1)
                fprintf(stderr, "io_read_bytes %llu\n", n);
        }
        if (io)
            fclose(io);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) {
        perror("peak_rss: wait4");
        return 2;
    }
    fprintf(stderr, "peak_rss_kib %ld\n", ru.ru_maxrss);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
