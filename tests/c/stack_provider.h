/* The stack provider of the C unit tests (the library's is the Python stack, pystack_311.c):
 * each test sets the functions that answer for it. */
#ifndef FIL_TEST_STACK_PROVIDER_H
#define FIL_TEST_STACK_PROVIDER_H
#include "fil_internal.h"

typedef callsite_t (*test_stack_fn)(fil_thread_t *ts);
/* The full answer (_fil_stack_of); none set: the thread's inherited callsite. */
void test_set_stack_provider(test_stack_fn fn);
/* The quick answer (_fil_stack_quick); none set: always FIL_STACK_UNKNOWN. */
void test_set_quick_stack_provider(test_stack_fn fn);
#endif
