"""The `%%filprofile` cell magic: the peak memory of one notebook cell, shown under the cell.

`%load_ext filprofiler` calls `load()`, which registers the magic, but only in a process where the
Fil library was preloaded (the "Python 3 with Fil" kernel, or `fil-profile python -m IPython`);
anywhere else it tells the user which kernel to switch to.

How a cell is profiled, in the order it happens:
- the report directory DIR (fil-result/<timestamp>/ by default, one per run of a cell) is made
  first, and the cell (its `%%filprofile` line as a comment, then its code after IPython's own
  transformations of `%magic` and `!shell` lines, which keep line numbers) is written to
  DIR/cell.py and compiled with that file name, so the flamegraph shows `cell.py:LINE` with the
  line numbers the notebook shows for the cell, and the source text of each line;
- a cell whose last statement is an expression is split: the rest runs with exec(), that last
  expression with eval(), and its value is the magic's return value, which IPython displays as it
  displays any cell's value (or not, after a trailing `;`);
- the code runs in the notebook's namespace, so names it defines or changes stay afterwards;
- `_filpreload.start()` is called by the very frame that then runs the cell, which makes the
  core cut every stack of this thread at that frame: the report starts at the cell's `<module>`;
- after the cell, also when it raised, the peak is dumped and rendered and shown inline: the
  flamegraph as an <img> (a static picture, so notebook sanitizers keep it and its scripts and
  styles cannot touch the page), the peak, and a link to the interactive index.html. Then the
  cell's exception, if any, propagates as a normal error.

No tracking logic lives here: the C core (`filprofiler._filpreload`) does the work and
`filprofiler._report` names and renders the files.
"""
import ast
import base64
import html
import os
import shutil
import sys

from IPython.core import magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.display import display

from . import _report

KERNEL_DISPLAY_NAME = "Python 3 with Fil"

NOT_PRELOADED = (
    "filprofiler's %%filprofile magic needs the Fil profiler loaded into the kernel process, and "
    "this kernel was started without it. Switch this notebook to the \"" + KERNEL_DISPLAY_NAME
    + "\" kernel (Kernel > Change Kernel...) and run `%load_ext filprofiler` again. If that kernel "
    "is not listed, run `fil-profile install-kernel` in the environment where filprofiler is "
    "installed. Outside Jupyter, start IPython with `fil-profile python -m IPython`."
)


def load(ipython):
    """Register `%%filprofile` in `ipython`; UsageError (a one-line message, no traceback) when
    this process is not running under the Fil library."""
    from . import _filpreload

    if not _filpreload.preloaded():
        raise UsageError(NOT_PRELOADED)
    ipython.register_magics(FilMagics)


def _compile_cell(source, filename, flags):
    """(code for exec, code for eval or None): the cell split before a final expression.
    SyntaxError propagates with the cell's file name and line."""
    tree = ast.parse(source, filename, "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    body = compile(tree, filename, "exec", flags=flags, dont_inherit=True)
    value = compile(last, filename, "eval", flags=flags, dont_inherit=True) if last else None
    return body, value


def _run_profiled(body, value, global_ns, local_ns):
    """Run the cell with tracking on. start() must be called from this frame, the one that then
    runs the cell's code: the core cuts this thread's stacks here."""
    __tracebackhide__ = True  # noqa: F841 (read by IPython's traceback formatter)
    from . import _filpreload

    _filpreload.start(_report.hidden_files(), True)
    try:
        exec(body, global_ns, local_ns)
        return eval(value, global_ns, local_ns) if value is not None else None
    finally:
        _filpreload.stop()


def _from_cell(tb, cell_path):
    """The traceback from the cell's first frame on: the magic's own frames are not the user's."""
    t = tb
    while t is not None and t.tb_frame.f_code.co_filename != cell_path:
        t = t.tb_next
    return t if t is not None else tb


def _write_report(run_dir, command_line):
    """Dump the peak of the cell and render it; (peak bytes, index.html path)."""
    from . import _filpreload

    prof = os.path.join(run_dir, "peak-memory.prof")
    peak = _filpreload.dump(prof)
    index = _report.render(prof, run_dir, "peak", command_line)
    return peak, index


def _report_bundle(peak, index):
    """The inline output: {'text/html': ..., 'text/plain': ...}."""
    run_dir = os.path.dirname(index)
    with open(os.path.join(run_dir, "peak-memory.svg"), "rb") as f:
        svg = f.read()
    image = "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")
    # Jupyter resolves a relative link against the notebook's directory, which is the kernel's
    # working directory unless the notebook changed it; a path outside it cannot be served.
    rel = os.path.relpath(index)
    where = html.escape(os.path.abspath(index))
    if rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        link = "Full report: <code>%s</code>" % where
    else:
        link = ('<a href="%s" target="_blank">Open the full interactive report</a> '
                '(<code>%s</code>)' % (html.escape(rel.replace(os.sep, "/"), quote=True), where))
    title = "Peak tracked memory usage of this cell: %s" % _report.mib(peak)
    markup = (
        '<div class="fil-profile-report">\n'
        "<p><strong>%s</strong>. %s</p>\n"
        '<img src="%s" alt="Flamegraph of the memory allocated by this cell at its peak" '
        'style="max-width: 100%%; height: auto;"/>\n'
        "</div>" % (html.escape(title), link, image)
    )
    text = "%s\nReport: %s" % (title, os.path.abspath(index))
    return {"text/html": markup, "text/plain": text}


@magics_class
class FilMagics(Magics):
    @magic_arguments.magic_arguments()
    @magic_arguments.argument(
        "-o", "--output", metavar="DIR", default="fil-result",
        help="directory for reports (default: fil-result); each run of the cell gets a new "
             "timestamped directory inside it")
    @magic_arguments.argument(
        "--limit-thread-pools", action="store_true",
        help="run BLAS, OpenMP, numexpr and BLOSC thread pools with one thread for this cell")
    @cell_magic
    def filprofile(self, line, cell):
        """Profile the peak memory of this cell and show the flamegraph under it.

        The cell runs in the notebook's namespace as usual; its report (flamegraphs, index.html,
        the .prof data and the cell's source as cell.py) is written to a new directory under
        fil-result/.
        """
        __tracebackhide__ = True  # noqa: F841
        args = magic_arguments.parse_argstring(self.filprofile, line)
        shell = self.shell
        magic_line = "%%filprofile" + (" " + line.strip() if line.strip() else "")
        # Line 1 of the cell is the magic line, so the file starts with it (as a comment): the
        # cell's code keeps the line numbers the notebook shows for it.
        source = "# " + magic_line + "\n" + shell.input_transformer_manager.transform_cell(cell)
        try:
            run_dir = os.path.abspath(_report.new_run_dir(args.output))
            cell_path = os.path.join(run_dir, "cell.py")
            with open(cell_path, "w", encoding="utf-8") as f:
                f.write(source)
        except OSError as e:
            raise UsageError("%%%%filprofile could not create its report directory in %r: %s; "
                             "choose a writable one with `%%%%filprofile -o DIR`"
                             % (args.output, e.strerror or e))
        flags = getattr(shell.compile, "flags", 0)
        try:
            body, value = _compile_cell(source, cell_path, flags)
        except SyntaxError:
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing ran: no report
            raise

        command_line = magic_line + "\n" + cell
        failure = None
        result = None
        try:
            if args.limit_thread_pools:
                from . import _threadpools

                with _threadpools.limited():
                    result = _run_profiled(body, value, shell.user_global_ns, shell.user_ns)
            else:
                result = _run_profiled(body, value, shell.user_global_ns, shell.user_ns)
        except BaseException as e:
            failure = e
        try:
            sys.stdout.flush()
            peak, index = _write_report(run_dir, command_line)
            display(_report_bundle(peak, index), raw=True)
        except OSError as e:
            sys.stderr.write(_report.PREFIX + "error: could not write the report in %s: %s\n"
                             % (run_dir, e.strerror or e))
        if failure is not None:
            try:
                raise failure.with_traceback(_from_cell(failure.__traceback__, cell_path))
            finally:
                failure = None  # no cycle through this frame
        return result
