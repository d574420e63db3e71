"""cffi build script for the C backend (module ``fastmle._cext``).

The cdef is read from csrc/fastmle.h, between the FASTMLE_CDEF markers, so the
declarations exist once. setup.py calls :func:`make_ffibuilder`; you can also
build in place for development with ``python csrc/build_ffi.py``.
"""
import os
import re
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ["runtime.c", "special.c", "losses.c", "glm.c", "fisher.c"]

# -O3 vectorizes the kernel loops; -fno-math-errno lets sqrt/log inline;
# -fno-trapping-math lets the branch-free selects in vexp.h vectorize.
# No -march: the AVX2+FMA code paths are compiled with target pragmas and
# picked at run time (see fm_internal.h), so the wheel runs on any x86-64.
BASE_FLAGS = ["-O3", "-std=c11", "-ffp-contract=fast", "-fno-math-errno", "-fno-trapping-math", "-fvisibility=hidden"]
OPENMP_FLAGS = ["-fopenmp"]


def read_cdef():
    with open(os.path.join(HERE, "fastmle.h")) as f:
        header = f.read()
    m = re.search(r"/\* FASTMLE_CDEF_BEGIN \*/(.*)/\* FASTMLE_CDEF_END \*/", header, re.S)
    return m.group(1)


def make_ffibuilder(openmp=True, extra_flags=(), root="."):
    """root: where csrc/ is, as seen from the compiler's working directory."""
    ffibuilder = FFI()
    ffibuilder.cdef(read_cdef())
    flags = BASE_FLAGS + (OPENMP_FLAGS if openmp else []) + list(extra_flags)
    ffibuilder.set_source(
        "fastmle._cext",
        '#include "fastmle.h"',
        sources=[os.path.join(root, "csrc", s) for s in SOURCES],
        include_dirs=[os.path.join(root, "csrc")],
        # the kernel bodies are headers: a changed one rebuilds (build_ext
        # otherwise looks at the .c files only and kept a stale library)
        depends=[os.path.join(root, "csrc", h) for h in sorted(os.listdir(HERE)) if h.endswith(".h")],
        extra_compile_args=flags,
        extra_link_args=(OPENMP_FLAGS if openmp else []) + list(extra_flags),
        libraries=["m"],
    )
    return ffibuilder


# ``cffi_modules=["csrc/build_ffi.py:ffibuilder"]`` style access
extra = os.environ.get("FASTMLE_CFLAGS", "").split()
ffibuilder = make_ffibuilder(extra_flags=extra)

if __name__ == "__main__":
    # in-place development build: writes fastmle/_cext*.so
    top = os.path.dirname(HERE)
    builder = make_ffibuilder(extra_flags=extra, root=top)
    so = builder.compile(tmpdir=os.path.join(top, "build", "cffi"), verbose="-v" in sys.argv)
    import shutil
    shutil.copy(so, os.path.join(top, "fastmle"))
