"""Build of fastloss: the C kernels in csrc/ as static libraries, one per CPU target,
linked into the Cython boundary modules (fastloss._core: the torch-style functions;
fastloss._ufuncs: the NumPy ufuncs).

Every family file is compiled once per target with that target's flags and
-DFL_TARGET=<name> (kernel names get the target suffix); csrc/dispatch.c, compiled for
the baseline, points the public kernel names at the best target the CPU supports at
import.  Strict IEEE flags everywhere: no -ffast-math, no -march=native, no FP
contraction (fusing is explicit in csrc/vecmath.h).
"""
import os
import platform
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_clib import build_clib
from setuptools.command.build_ext import build_ext

CSRC = "csrc"
FAMILIES = [os.path.join(CSRC, f) for f in (
    "binary.c",
    "regression.c",
    "cross_entropy.c",
    "overlap.c",
    "stream.c",
)]
HEADERS = [os.path.join(CSRC, h) for h in (
    "fastloss.h", "real.h", "accumulate.h", "vecmath.h", "elementwise.h")]

MSVC = sys.platform == "win32"
X86_64 = platform.machine().lower() in ("x86_64", "amd64") and not MSVC

if MSVC:
    C_FLAGS = ["/O2", "/fp:precise"]
else:
    # -ffp-contract=off: a*b+c is never fused behind our back, so every target rounds alike.
    C_FLAGS = ["-std=c11", "-O3", "-ffp-contract=off", "-fno-math-errno",
               "-pthread", "-Wall", "-Wextra"]

# (target, extra flags): must match FL_TARGETS in csrc/fastloss.h.  Worst first.
TARGETS = [("baseline", [])]
if X86_64:
    TARGETS += [
        ("avx2", ["-mavx2", "-mfma"]),
        ("avx512", ["-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512dq",
                    "-mavx512vl"]),
    ]

kernel_libraries = [
    (f"fastloss_{name}", {
        "sources": FAMILIES + ([os.path.join(CSRC, "dispatch.c"), os.path.join(CSRC, "threads.c")]
                               if name == "baseline" else []),
        "include_dirs": [CSRC],
        "macros": [("FL_TARGET", name)],
        "cflags": C_FLAGS + flags,
        "depends": HEADERS,
    })
    for name, flags in TARGETS
]


class BuildClib(build_clib):
    """Compiles each target's library into its own object folder: the same family files
    are compiled once per target, and a shared folder would let one target's objects
    stand in for another's."""

    def build_libraries(self, libraries):
        for lib_name, info in libraries:
            objects = self.compiler.compile(
                info["sources"], output_dir=os.path.join(self.build_temp, lib_name),
                macros=info.get("macros"), include_dirs=info.get("include_dirs"),
                extra_postargs=info.get("cflags"), debug=self.debug,
                depends=info.get("depends", []))
            self.compiler.create_static_lib(objects, lib_name, output_dir=self.build_clib,
                                            debug=self.debug)


class BuildExt(build_ext):
    """build_ext that builds the kernel libraries first, so that
    `python setup.py build_ext --inplace` works on its own as well as `pip install .`."""

    def run(self):
        if self.distribution.has_c_libraries():
            self.run_command("build_clib")
        super().run()


common = dict(
    include_dirs=[CSRC, np.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=[] if MSVC else ["-O2"],
    extra_link_args=[] if MSVC else ["-pthread"],
    depends=HEADERS + ["fastloss/_kernels.pxd"],
)

extensions = [
    Extension("fastloss._core", ["fastloss/_core.pyx"], **common),
    Extension("fastloss._ufuncs", ["fastloss/_ufuncs.pyx"], **common),
]

setup(
    cmdclass={"build_clib": BuildClib, "build_ext": BuildExt},
    libraries=kernel_libraries,
    ext_modules=cythonize(
        extensions,
        language_level=3,
        # No boundscheck/wraparound switches: the boundary code indexes Python objects
        # (where they would turn axes[-1] into an out-of-bounds read), and the hot loops
        # are in C.
        compiler_directives={"cdivision": True, "embedsignature": True},
    ),
)
