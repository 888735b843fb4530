/* oom.h: out-of-memory detection and the emergency report (oom.c), as seen by the engine
 * (track.c), the hooks (hooks.c, pyalloc.c) and the Python module (pymodule.c). */
#ifndef FIL_OOM_H
#define FIL_OOM_H

#include "prim.h"

#include <stdint.h>

/* The exit status of a program stopped for lack of memory (Fil's). */
#define FIL_OOM_EXIT_CODE 53

/* Bytes that may still be allocated before the early check reads the memory figures again.
   track.c subtracts every tracked allocation's size under the tracking lock and, once it is
   negative, calls _fil_oom_poll() after releasing the lock. INT64_MAX while the early check is
   off. Protected by the tracking lock. */
extern int64_t _fil_oom_countdown;

/* Where reports go (OUT_DIR/<timestamp>/out-of-memory.*) and the command line shown in them;
   both copied. Default directory: "fil-result" (relative to the cwd at report time). */
void _fil_oom_configure(const char *out_dir, const char *command_line);

/* At tracking start, before _fil_tracking is set, with the guard set: reads
   FIL_DISABLE_OOM_DETECTION and FIL_OOM_THRESHOLD_MIB, reserves the renderer's scratch memory
   once per process (touched by a poll once memory gets short), and arms the early check. */
void _fil_oom_start(void);
/* The memory reserved for an out-of-memory report: its resident bytes, and in *mapped what
   prim_pages_in_use counts for it (it stays untouched until memory runs low). */
size_t _fil_oom_reserve_resident(size_t *mapped);

/* The countdown ran out: read the memory figures; below the threshold this writes the report
   and ends the process, otherwise it sets the next countdown. Call with the guard set and
   without the tracking lock. Concurrent calls return at once while one thread reads. */
void _fil_oom_poll(void);

/* An intercepted allocation of `size` bytes failed while tracking. Writes the report (the
   allocations alive now plus the failed request) and ends the process with FIL_OOM_EXIT_CODE.
   Call without the tracking lock; the guard may or may not be set. */
void _fil_oom_on_failure(uint64_t size) __attribute__((noreturn));

/* The decision, a pure function for unit tests. `pending`: bytes allocated since the figures
   were read, subtracted from the system and cgroup figures. Returns 1 when some figure's
   available memory is under its threshold (`override` bytes, or the default for that figure's
   limit when 0). v describes the figure that fired (or the scarcest one; which == -1 and
   limit == PRIM_NO_LIMIT when no figure has a limit), and the bytes to allow before the next
   reading. */
typedef struct {
    int which;             /* 0 system, 1 cgroup, 2 address space, -1 none */
    uint64_t available, limit, threshold;   /* bytes */
    uint64_t budget;       /* bytes until the next reading, 1 MiB..64 MiB */
} oom_verdict_t;
int _fil_oom_assess(const prim_memory_t *m, uint64_t override, uint64_t pending,
                    oom_verdict_t *v);

#endif
