/* guard.c - fatal signals in a trial become its crash outcome (guard.h). */
#include "guard.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const int guarded[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
#define NGUARDED (sizeof guarded / sizeof guarded[0])

/* A signal handler can only find its way back through static state: the
 * dispositions it replaced, and the armed guard of the faulting thread. */
static struct sigaction previous[NGUARDED];
static int installed;
static _Thread_local pvf_guard *armed;

static void on_fatal_signal(int sig) {
    pvf_guard *g = armed;
    if (g) {
        armed = NULL;
        if (g->exit_after)
            alarm(g->exit_after); /* async-signal-safe */
        siglongjmp(g->jump, sig);
    }
    /* Not in a trial: what the signal did before us (usually: die). */
    for (size_t i = 0; i < NGUARDED; i++)
        if (guarded[i] == sig)
            sigaction(sig, &previous[i], NULL);
    raise(sig);
}

int pvf_guard_install(pvf_err *err) {
    if (installed)
        return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sa.sa_flags = SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < NGUARDED; i++)
        if (sigaction(guarded[i], &sa, &previous[i])) {
            while (i-- > 0)
                sigaction(guarded[i], &previous[i], NULL);
            return pvf_err_set(err, "cannot install the trial crash handlers");
        }
    installed = 1;
    return 0;
}

void pvf_guard_uninstall(void) {
    if (!installed)
        return;
    for (size_t i = 0; i < NGUARDED; i++)
        sigaction(guarded[i], &previous[i], NULL);
    installed = 0;
}

int pvf_guard_thread_init(pvf_guard *g, pvf_err *err) {
    g->altstack_size = 64 * 1024 > SIGSTKSZ ? 64 * 1024 : SIGSTKSZ;
    g->altstack = malloc(g->altstack_size);
    if (!g->altstack)
        return pvf_err_set(err, "out of memory");
    stack_t st = {.ss_sp = g->altstack, .ss_size = g->altstack_size, .ss_flags = 0};
    if (sigaltstack(&st, NULL)) {
        free(g->altstack);
        g->altstack = NULL;
        return pvf_err_set(err, "cannot set the signal stack");
    }
    return 0;
}

void pvf_guard_thread_free(pvf_guard *g) {
    if (!g->altstack)
        return;
    stack_t st = {.ss_flags = SS_DISABLE};
    sigaltstack(&st, NULL);
    free(g->altstack);
    g->altstack = NULL;
}

void pvf_guard_arm(pvf_guard *g) {
    armed = g;
}

void pvf_guard_disarm(void) {
    armed = NULL;
}

const char *pvf_guard_signal_name(int sig) {
    switch (sig) {
    case SIGSEGV:
        return "SIGSEGV";
    case SIGBUS:
        return "SIGBUS";
    case SIGFPE:
        return "SIGFPE";
    case SIGILL:
        return "SIGILL";
    case SIGABRT:
        return "SIGABRT";
    default:
        return "signal";
    }
}
