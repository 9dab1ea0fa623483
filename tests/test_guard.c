/* test_guard.c - fatal signals raised while a guard is armed come back as
 * the signal number (guard.h): SIGSEGV from a store to a page that forbids
 * it, SIGABRT from abort(), SIGFPE, SIGBUS and SIGILL raised, and a stack
 * overflow on a thread with its own signal stack; a process that hangs
 * after a caught signal ends when its guard says so (exit_after).
 * Uninstalling puts the previous dispositions back. (No division by zero
 * or null pointer: the sanitizer build would report the undefined
 * behaviour first.) */
#include "guard.h"
#include "test.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int *read_only_page;

static void write_bad_pointer(void) {
    *read_only_page = 1;
}

static void raise_fpe(void) {
    raise(SIGFPE);
}

static void do_abort(void) {
    abort();
}

static void raise_bus(void) {
    raise(SIGBUS);
}

static void raise_ill(void) {
    raise(SIGILL);
}

/* Runs fn armed; returns the signal that jumped back, 0 if none did. */
static int guarded_call(pvf_guard *g, void (*fn)(void)) {
    int sig = sigsetjmp(g->jump, 1);
    if (sig == 0) {
        pvf_guard_arm(g);
        fn();
        pvf_guard_disarm();
    }
    return sig;
}

static void noop(void) {}

static void test_signals_come_back(void) {
    pvf_guard g;
    memset(&g, 0, sizeof g);
    CHECK(guarded_call(&g, noop) == 0);
    CHECK(guarded_call(&g, write_bad_pointer) == SIGSEGV);
    CHECK(guarded_call(&g, raise_fpe) == SIGFPE);
    CHECK(guarded_call(&g, do_abort) == SIGABRT);
    CHECK(guarded_call(&g, raise_bus) == SIGBUS);
    CHECK(guarded_call(&g, raise_ill) == SIGILL);
    /* The signal mask came back with the jump: the same signal again works. */
    CHECK(guarded_call(&g, write_bad_pointer) == SIGSEGV);
    CHECK(strcmp(pvf_guard_signal_name(SIGSEGV), "SIGSEGV") == 0);
    CHECK(strcmp(pvf_guard_signal_name(SIGTERM), "signal") == 0);
}

static volatile int depth_reached;
static volatile int depth_limit = 1 << 30; /* never reached: the stack ends first */

static int recurse(int n) {
    volatile char pad[4096];
    pad[0] = (char)n;
    depth_reached = n;
    if (n >= depth_limit)
        return 0;
    return recurse(n + 1) + pad[0];
}

static void overflow_stack(void) {
    (void)recurse(0);
}

static void *overflow_thread(void *arg) {
    int *sig = arg;
    pvf_guard g;
    memset(&g, 0, sizeof g);
    pvf_err err;
    if (pvf_guard_thread_init(&g, &err)) {
        *sig = -1;
        return NULL;
    }
    *sig = guarded_call(&g, overflow_stack);
    pvf_guard_thread_free(&g);
    return NULL;
}

static void test_stack_overflow(void) {
    /* A small thread stack: the overflow comes quickly. */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_t th;
    int sig = 0;
    CHECK(pthread_create(&th, &attr, overflow_thread, &sig) == 0);
    pthread_join(th, NULL);
    pthread_attr_destroy(&attr);
    CHECK(sig == SIGSEGV);
    CHECK(depth_reached > 10);
}

/* A child that catches a signal with exit_after seconds set and then
 * hangs (as a report stuck on a lock the crash left held would): how it
 * ended within `wait_s` seconds, 0 when it was still running (then killed). */
static int hung_child_end(unsigned exit_after, double wait_s) {
    pid_t pid = fork();
    if (pid == 0) {
        pvf_guard g;
        memset(&g, 0, sizeof g);
        g.exit_after = exit_after;
        if (guarded_call(&g, raise_fpe) != SIGFPE)
            _exit(3);
        for (;;)
            pause();
    }
    if (pid < 0)
        return -1;
    int status = 0;
    for (int i = 0; i < (int)(wait_s * 20); i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFSIGNALED(status) ? WTERMSIG(status) : 1000 + WEXITSTATUS(status);
        usleep(50000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return 0;
}

static void test_exit_after_a_crash(void) {
    CHECK(hung_child_end(1, 10.0) == SIGALRM); /* ends about a second after the signal */
    CHECK(hung_child_end(0, 2.0) == 0);        /* without it, hangs */
}

static void test_install_uninstall(void) {
    pvf_guard_uninstall(); /* main's */
    struct sigaction before, during, after;
    sigaction(SIGFPE, NULL, &before);
    pvf_err err;
    CHECK(pvf_guard_install(&err) == 0);
    CHECK(pvf_guard_install(&err) == 0); /* twice: still one */
    sigaction(SIGFPE, NULL, &during);
    CHECK(during.sa_handler != before.sa_handler);
    pvf_guard_uninstall();
    sigaction(SIGFPE, NULL, &after);
    CHECK(after.sa_handler == before.sa_handler);
    CHECK(pvf_guard_install(&err) == 0); /* for main to uninstall */
}

int main(void) {
    pvf_err err;
    void *page = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) {
        fprintf(stderr, "mmap failed\n");
        return 1;
    }
    read_only_page = page;
    struct sigaction before;
    sigaction(SIGSEGV, NULL, &before);
    if (pvf_guard_install(&err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    RUN(test_signals_come_back);
    RUN(test_exit_after_a_crash);
    RUN(test_stack_overflow);
    RUN(test_install_uninstall);
    pvf_guard_uninstall();
    struct sigaction after;
    sigaction(SIGSEGV, NULL, &after);
    CHECK(after.sa_handler == before.sa_handler);
    munmap(page, 4096);
    return test_summary();
}
