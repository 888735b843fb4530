"""Builds the C core with the project's Makefile (the one build description of the core, shared
with the C unit tests) and installs it as the `filprofiler._filpreload` extension module, which
is also the library preloaded into profiled processes."""
import os
import shutil
import subprocess
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


def build_error(message):
    """A build problem the user can fix, in one line rather than a compiler's or make's output."""
    sys.stderr.write("filprofiler: %s\n" % message)
    sys.exit(1)


class MakeBuildExt(build_ext):
    def build_extension(self, ext):
        if not sys.platform.startswith("linux"):
            build_error("this version runs on Linux only (it preloads itself into Python through "
                        "the dynamic linker's LD_PRELOAD); use a Linux machine or container")
        compiler = (os.environ.get("CC") or "cc").split()[0]
        if shutil.which("make") is None or shutil.which(compiler) is None:
            build_error("building the C core needs make and a C compiler; on Debian or Ubuntu: "
                        "apt-get install build-essential")
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        check_stacks = os.environ.get("FIL_CHECK_STACKS") == "1"
        sanitize = os.environ.get("FIL_SANITIZE")
        # One build directory per variant: make decides what to rebuild by timestamps alone.
        variant = "fil-core" + ("-check" if check_stacks else "")
        if sanitize:
            variant += "-" + sanitize.replace(",", "-")
        build_dir = os.path.abspath(os.path.join(self.build_temp, variant))
        cmd = ["make", "-C", HERE, "lib", "BUILD=" + build_dir, "PYTHON=" + sys.executable,
               "EXT_SUFFIX=" + suffix, "PY_INCLUDE=" + sysconfig.get_paths()["include"]]
        if os.environ.get("FIL_WERROR") == "1":
            cmd.append("WERROR=1")
        if check_stacks:
            cmd.append("CHECK_STACKS=1")
        if sanitize:
            cmd.append("SANITIZE=" + sanitize)
        subprocess.check_call(cmd)
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(build_dir, "_filpreload" + suffix), target)


setup(
    ext_modules=[Extension("filprofiler._filpreload", sources=[])],
    # The `fil-profile` command: a plain script, not an entry point (bin/fil-profile says why).
    scripts=["bin/fil-profile"],
    cmdclass={"build_ext": MakeBuildExt},
    # The kernelspec, read by `fil-profile install-kernel`; data_files below puts the same
    # file where Jupyter looks for kernels.
    package_data={"filprofiler.kernelspec": ["*"]},
    data_files=[("share/jupyter/kernels/filprofile",
                 ["filprofiler/kernelspec/kernel.json"])] if os.path.exists(
        os.path.join(HERE, "filprofiler/kernelspec/kernel.json")) else [],
)
