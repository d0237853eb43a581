"""Build of fastloss: the C kernels in csrc/ as one static library, linked into the
Cython boundary modules (fastloss._core: the torch-style functions; fastloss._ufuncs:
the NumPy ufuncs).  Strict IEEE flags: no -ffast-math, no -march=native (CPU-specific
code comes from per-target builds behind runtime dispatch, never from the baseline)."""
import os
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    """build_ext that builds the kernel library first, so that
    `python setup.py build_ext --inplace` works on its own as well as `pip install .`."""

    def run(self):
        if self.distribution.has_c_libraries():
            self.run_command("build_clib")
        super().run()

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = "csrc"

KERNEL_SOURCES = [os.path.join(CSRC, f) for f in (
    "binary.c",
    "regression.c",
    "cross_entropy.c",
    "overlap.c",
)]

if sys.platform == "win32":
    C_FLAGS = ["/O2", "/fp:precise"]
else:
    # -ffp-contract=off: a*b+c is never fused behind our back, so every target rounds alike.
    C_FLAGS = ["-std=c11", "-O3", "-ffp-contract=off", "-fno-math-errno",
               "-Wall", "-Wextra"]

kernels = ("fastloss_kernels", {
    "sources": KERNEL_SOURCES,
    "include_dirs": [CSRC],
    "cflags": C_FLAGS,
})

common = dict(
    include_dirs=[CSRC, np.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=[] if sys.platform == "win32" else ["-O2"],
    depends=[os.path.join(CSRC, h) for h in ("fastloss.h", "real.h", "accumulate.h")]
    + ["fastloss/_kernels.pxd"],
)

extensions = [
    Extension("fastloss._core", ["fastloss/_core.pyx"], **common),
    Extension("fastloss._ufuncs", ["fastloss/_ufuncs.pyx"], **common),
]

setup(
    cmdclass={"build_ext": BuildExt},
    libraries=[kernels],
    ext_modules=cythonize(
        extensions,
        language_level=3,
        # No boundscheck/wraparound switches: the boundary code indexes Python objects
        # (where they would turn axes[-1] into an out-of-bounds read), and the hot loops
        # are in C.
        compiler_directives={"cdivision": True, "embedsignature": True},
    ),
)
