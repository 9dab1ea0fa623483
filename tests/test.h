/* test.h - a minimal test harness: each test_*.c is one ctest executable.
 *
 *   static void test_something(void) { CHECK(x == 1); CHECK_EQ_U64(a, b); }
 *   int main(void) { RUN(test_something); return test_summary(); }
 *
 * PVF_TEST_ONLY=part runs only the tests whose name contains part.
 *
 * A failed CHECK prints file:line and the expression and marks the test
 * failed; the test goes on so one run shows every failure. */
#ifndef PVF_TEST_H
#define PVF_TEST_H

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failures_;
static int test_checks_;
static int test_ran_;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        test_checks_++;                                                                            \
        if (!(cond)) {                                                                             \
            test_failures_++;                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_U64(a, b)                                                                         \
    do {                                                                                           \
        uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                                           \
        test_checks_++;                                                                            \
        if (a_ != b_) {                                                                            \
            test_failures_++;                                                                      \
            fprintf(stderr, "%s:%d: %s == %s failed: 0x%" PRIx64 " != 0x%" PRIx64 "\n", __FILE__,  \
                    __LINE__, #a, #b, a_, b_);                                                     \
        }                                                                                          \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double a_ = (double)(a), b_ = (double)(b);                                                 \
        test_checks_++;                                                                            \
        if (!(fabs(a_ - b_) <= (tol))) {                                                           \
            test_failures_++;                                                                      \
            fprintf(stderr, "%s:%d: |%s - %s| <= %g failed: %.9g vs %.9g\n", __FILE__, __LINE__,   \
                    #a, #b, (double)(tol), a_, b_);                                                \
        }                                                                                          \
    } while (0)

#define RUN(fn)                                                                                    \
    do {                                                                                           \
        const char *only_ = getenv("PVF_TEST_ONLY"); /* a name part: run just those tests */       \
        if (only_ && !strstr(#fn, only_))                                                          \
            break;                                                                                 \
        int before_ = test_failures_;                                                              \
        fn();                                                                                      \
        test_ran_++;                                                                               \
        fprintf(stderr, "%s %s\n", test_failures_ == before_ ? "ok  " : "FAIL", #fn);              \
    } while (0)

static inline int test_summary(void) {
    fprintf(stderr, "%d tests, %d checks, %d failed\n", test_ran_, test_checks_, test_failures_);
    return test_failures_ ? 1 : 0;
}

/* Directory with the checked-in fixtures and models (set by CMake). */
#ifndef PVF_SOURCE_DIR
#define PVF_SOURCE_DIR "."
#endif

#endif
