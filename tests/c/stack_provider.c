/* See stack_provider.h. */
#include "stack_provider.h"

static test_stack_fn full, quick;

void test_set_stack_provider(test_stack_fn fn) { full = fn; }
void test_set_quick_stack_provider(test_stack_fn fn) { quick = fn; }

callsite_t _fil_stack_of(fil_thread_t *ts) { return full ? full(ts) : ts->inherited; }
callsite_t _fil_stack_quick(fil_thread_t *ts) { return quick ? quick(ts) : FIL_STACK_UNKNOWN; }
