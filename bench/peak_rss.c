/* peak_rss: run a command and print its peak resident set size.
 *
 *   peak_rss COMMAND [ARG...]    prints "peak_rss_kib N" on standard error
 *
 * A child's ru_maxrss also counts the memory of the process that forked it
 * (Linux carries the high-water mark across fork and exec), so measuring a
 * small program from a large Python interpreter reports the interpreter.
 * Forked from this small process instead, the figure is the command's own
 * (to within this program's few hundred KiB). Exits with the command's
 * status. */
#include <stdio.h>
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
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) {
        perror("peak_rss: wait4");
        return 2;
    }
    fprintf(stderr, "peak_rss_kib %ld\n", ru.ru_maxrss);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
