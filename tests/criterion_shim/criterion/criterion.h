/*
 * criterion.h -- a stand-in for the subset of Criterion's API that the test
 * files run under qemu-aarch64 use (arm64.mk: make test-arm64).
 *
 * Why: libcriterion3:arm64 cannot be installed beside the amd64 Criterion
 * that the native `make test` links (its libnanomsg5 is not Multi-Arch:
 * same, so dpkg would remove the amd64 packages), so the cross-built suite
 * links this header and runner.c instead.  (The hang under qemu first
 * blamed on Criterion's forking runner was a mismatched dynamic loader and
 * libc: arm64.mk says which.)  Same source files, same assertions:
 * each Test() runs in the runner's process (with its TestSuite's
 * .init/.fini); a failed assertion prints file, line, condition and
 * message and fails that test.  cr_expect* are fatal here (Criterion goes
 * on to the end of the test); timeouts are not enforced (emulation is slow;
 * the CI stage bounds the run).
 */
#ifndef AVQ_CRITERION_SHIM_H
#define AVQ_CRITERION_SHIM_H

#include <stddef.h>
#include <string.h>

struct cr_shim_opts {
    void (*init)(void);
    void (*fini)(void);
    double timeout;
};

struct cr_shim_test {
    const char *suite, *name;
    void (*fn)(void);
    struct cr_shim_opts opts;
    struct cr_shim_test *next;
};

struct cr_shim_suite {
    const char *name;
    struct cr_shim_opts opts;
    struct cr_shim_suite *next;
};

void cr_shim_register_test(struct cr_shim_test *t);
void cr_shim_register_suite(struct cr_shim_suite *s);
void cr_shim_fail(const char *file, int line, const char *cond, const char *fmt, ...);

#define Test(suite, name, ...)                                                                  \
    static void cr_shim_fn_##suite##_##name(void);                                              \
    static struct cr_shim_test cr_shim_t_##suite##_##name = {                                   \
        #suite, #name, cr_shim_fn_##suite##_##name, {__VA_ARGS__}, NULL};                       \
    __attribute__((constructor)) static void cr_shim_reg_##suite##_##name(void) {               \
        cr_shim_register_test(&cr_shim_t_##suite##_##name);                                     \
    }                                                                                           \
    static void cr_shim_fn_##suite##_##name(void)

#define TestSuite(suite, ...)                                                                   \
    static struct cr_shim_suite cr_shim_s_##suite = {#suite, {__VA_ARGS__}, NULL};              \
    __attribute__((constructor)) static void cr_shim_sreg_##suite(void) {                       \
        cr_shim_register_suite(&cr_shim_s_##suite);                                             \
    }

#define cr_assert(cond, ...)                                                                    \
    do {                                                                                        \
        if (!(cond)) cr_shim_fail(__FILE__, __LINE__, #cond, "" __VA_ARGS__);                   \
    } while (0)
#define cr_expect(cond, ...) cr_assert(cond, __VA_ARGS__)
#define cr_assert_eq(a, b, ...) cr_assert((a) == (b), __VA_ARGS__)
#define cr_expect_eq(a, b, ...) cr_assert((a) == (b), __VA_ARGS__)
#define cr_assert_neq(a, b, ...) cr_assert((a) != (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...) cr_assert((a) < (b), __VA_ARGS__)
#define cr_assert_gt(a, b, ...) cr_assert((a) > (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...) cr_assert((a) >= (b), __VA_ARGS__)
#define cr_assert_leq(a, b, ...) cr_assert((a) <= (b), __VA_ARGS__)
#define cr_assert_null(p, ...) cr_assert((p) == NULL, __VA_ARGS__)
#define cr_assert_not_null(p, ...) cr_assert((p) != NULL, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) cr_assert(strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_assert_arr_eq(a, b, size, ...) cr_assert(memcmp((a), (b), (size)) == 0, __VA_ARGS__)
#define cr_assert_float_eq(a, b, eps, ...)                                                      \
    cr_assert(__builtin_fabs((double)(a) - (double)(b)) <= (double)(eps), __VA_ARGS__)

#endif
