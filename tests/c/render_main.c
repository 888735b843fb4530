/* render_main: command-line front end to fil_render_report, for golden and end-to-end tests.
 *
 *   render_main PROF OUTDIR [peak|oom] [COMMAND_LINE] [EXTRA_NOTE]
 *
 * Set FIL_RENDER_SCRATCH=BYTES to render from a fixed scratch block as the out-of-memory path
 * does (the block itself comes from malloc here; the renderer does not care).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s PROF OUTDIR [peak|oom] [COMMAND_LINE] [EXTRA_NOTE]\n", argv[0]);
        return 2;
    }
    int oom = argc > 3 && strcmp(argv[3], "oom") == 0;
    fil_render_opts_t opts = {
        .prof_path = argv[1],
        .out_dir = argv[2],
        .file_prefix = oom ? "out-of-memory" : "peak-memory",
        .kind = oom ? FIL_REPORT_OOM : FIL_REPORT_PEAK,
        .command_line = argc > 4 ? argv[4] : NULL,
        .extra_note = argc > 5 ? argv[5] : NULL,
    };
    const char *scratch = getenv("FIL_RENDER_SCRATCH");
    if (scratch) {
        opts.scratch_size = strtoull(scratch, NULL, 10);
        opts.scratch = malloc(opts.scratch_size ? opts.scratch_size : 1);
    }
    if (fil_render_report(&opts) < 0) {
        fprintf(stderr, "render_main: %s\n", strerror(errno));
        return 1;
    }
    free(opts.scratch);
    return 0;
}
