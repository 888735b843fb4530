/* pystack.h: the Python side's view of the engine (pystack_3XX.c, pyalloc.c, pymodule.c). */
#ifndef FIL_PYSTACK_H
#define FIL_PYSTACK_H

/* Frames from these files are not shown (e.g. runpy's, for `run -m`). Copies the strings; the
   first FIL_MAX_HIDDEN are kept. */
#define FIL_MAX_HIDDEN 16
int _fil_pystack_set_hidden(const char *const *files, int count);
/* Install the Python stack provider. With cut_at_caller, stacks of the calling thread stop below
   the Python frame that called (so a report starts at the code that frame runs). GIL held. */
void _fil_pystack_install(int cut_at_caller);
void _fil_pystack_forget_cut(void);
/* Route Python's object and memory allocators through the tracker; pymalloc's arenas are
   obtained untracked. Idempotent. GIL held. */
void _fil_pyalloc_install(void);

/* pythreads.c: the one Python thread waiting in native code with the GIL released, or NULL when
   there are none or several (a PyThreadState *). Caller holds the tracking lock. */
void *_fil_pythreads_sole_waiter(void);
void _fil_pythreads_reset(void);

#endif
