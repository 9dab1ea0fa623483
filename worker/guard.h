/* guard.h - a fatal signal raised by a trial becomes that trial's crash
 * outcome, reported by the worker that saw it.
 *
 * Why: a worker that just dies tells the coordinator nothing about why. A
 * trial that crashes every worker it runs on and a worker killed from
 * outside (kill -9, a reboot) look the same, and taking a death for a crash
 * turned innocent trials into crash outcomes. A crash the worker catches
 * itself is a fact about one trial, the same on every worker: it is the only
 * kind stored as an outcome.
 *
 * Use, on an executor thread:
 *     if (sigsetjmp(g->jump, 1) == 0) { pvf_guard_arm(g); ...trials...; pvf_guard_disarm(); }
 *     else { the trial running when the signal came crashed; leave soon }
 * The handler jumps back only while armed on the faulting thread; anywhere
 * else the signal does what it did before (the process dies). After a jump
 * the process may hold broken state: report the crash and exit. */
#ifndef PVF_GUARD_H
#define PVF_GUARD_H

#include "pvf_common.h"

#include <setjmp.h>

typedef struct pvf_guard {
    sigjmp_buf jump;
    void *altstack; /* the handler runs here: a stack overflow is caught too */
    size_t altstack_size;
    /* Seconds after a caught signal at which the process ends (SIGALRM's
     * default action), 0: never. What follows a crash may never finish: a
     * crash inside malloc leaves its lock held, and the report then waits
     * on it forever; a worker that ends is restarted, one that hangs is
     * not. */
    unsigned exit_after;
} pvf_guard;

/* Process-wide handlers for SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT;
 * pvf_guard_uninstall puts the previous ones back. Signal dispositions
 * are process state by nature: call these once, from the main thread. */
int pvf_guard_install(pvf_err *err);
void pvf_guard_uninstall(void);

/* The calling thread's alternate signal stack; free it on the same thread. */
int pvf_guard_thread_init(pvf_guard *g, pvf_err *err);
void pvf_guard_thread_free(pvf_guard *g);

void pvf_guard_arm(pvf_guard *g);
void pvf_guard_disarm(void);

/* "SIGSEGV" for a signal number the guard catches, else "signal". */
const char *pvf_guard_signal_name(int sig);

#endif
