/* The pod sandbox's only process: sleep until SIGTERM or SIGINT, then exit 0.
 * As PID 1 of the pod's PID namespace it gets no default signal actions, so it
 * installs handlers; SIGCHLD reaps anything re-parented to it. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction on_stop = {.sa_handler = stop};
    struct sigaction on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
    if (sigaction(SIGTERM, &on_stop, NULL) || sigaction(SIGINT, &on_stop, NULL) ||
        sigaction(SIGCHLD, &on_child, NULL))
        return 1;
    for (;;)
        pause();
}
