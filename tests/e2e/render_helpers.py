"""Building and running tests/c/render_main, the renderer's command-line driver, for the
renderer tests (golden files, XML validity, the browser)."""
import os
import subprocess

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GOLDEN = os.path.join(ROOT, "tests", "golden")
RENDER_MAIN = os.path.join(ROOT, "build", "render_main")
SOURCES = ["src/render_tree.c", "src/render_svg.c", "src/render_html.c", "src/escape.c",
           "src/outbuf.c", "tests/c/render_main.c"]


def build_render_main():
    os.makedirs(os.path.dirname(RENDER_MAIN), exist_ok=True)
    cc = os.environ.get("CC", "cc")
    cmd = [cc, "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-O2", "-Isrc",
           *SOURCES, "-o", RENDER_MAIN, "-lm"]
    subprocess.run(cmd, cwd=ROOT, check=True)
    return RENDER_MAIN


def render(prof, outdir, kind="peak", cmdline=None, note=None, cwd=None, env=None):
    args = [RENDER_MAIN, prof, outdir, kind]
    if cmdline is not None:
        args.append(cmdline)
        if note is not None:
            args.append(note)
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, check=True)
