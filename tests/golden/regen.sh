#!/bin/sh
# Regenerate the expected renderer outputs after an intended change, then review the diff:
#   sh tests/golden/regen.sh && git diff tests/golden/expected
# Inputs are the *.prof files here; frames name files under src/ relative to this directory,
# so render_main runs from here.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mkdir -p "$root/build"
${CC:-cc} -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -I"$root/src" \
    "$root"/src/render_tree.c "$root"/src/render_svg.c "$root"/src/render_html.c \
    "$root"/src/escape.c "$root"/src/outbuf.c "$root"/tests/c/render_main.c \
    -o "$root/build/render_main" -lm
cd "$here"
for case in basic:peak hostile:peak basic:oom; do
    name=${case%%:*}
    kind=${case#*:}
    out="expected/$name-$kind"
    rm -rf "$out"
    mkdir -p "$out"
    "$root/build/render_main" "$name.prof" "$out" "$kind" "python job.py --n 3 '<&>'" \
        "The allocation that failed asked for 1.0 GiB; 7.7 MiB were tracked."
done
echo "regenerated: $(ls expected)"
