/*-------------------------------------------------------------------------
 *
 * sanitize.c
 *		The sanitizer runtimes' options, for test/run --sanitize.
 *
 * Built with TASKER_SANITIZE=1, tasker.so carries AddressSanitizer and
 * UndefinedBehaviorSanitizer, and their runtimes load with it.  They read
 * ASAN_OPTIONS and UBSAN_OPTIONS from /proc/self/environ, which a backend
 * has overwritten with its ps display by the time it loads tasker (CREATE
 * EXTENSION without shared_preload_libraries), so the options are compiled
 * in here instead: the link-order check off (the runtime cannot come first
 * in Debian's postgres), no leak detection (PostgreSQL frees by memory
 * context and at exit), reports written under TASKER_SANITIZE_LOG, where
 * test/run reads them.  In any other build this file defines nothing.
 *
 * IDENTIFICATION
 *		src/sanitize.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#ifdef TASKER_SANITIZE_LOG

extern const char *__asan_default_options(void);
extern const char *__ubsan_default_options(void);

/*
 * __asan_default_options: called by the ASan runtime when it starts.
 */
const char *
__asan_default_options(void)
{
	return "detect_leaks=0:verify_asan_link_order=0:log_path=" TASKER_SANITIZE_LOG "/asan";
}

/*
 * __ubsan_default_options: called by the UBSan runtime when it starts.
 */
const char *
__ubsan_default_options(void)
{
	return "print_stacktrace=1:log_path=" TASKER_SANITIZE_LOG "/ubsan";
}

#endif							/* TASKER_SANITIZE_LOG */
