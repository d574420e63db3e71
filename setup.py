"""Builds the optional C backend (fastmle._cext) through cffi.

The build is optional: with FASTMLE_NO_C=1, or when compiling fails (no C
compiler), the package installs without it and fastmle.show_config() reports
the "c" backend unavailable with the reason. OpenMP is used when the compiler
supports it; otherwise the kernels are built single-threaded.
"""
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc"))


class OptionalBuildExt(build_ext):
    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # CompileError, LinkError, missing compiler
            if "-fopenmp" in ext.extra_compile_args:
                print(f"fastmle: building with OpenMP failed ({exc}); retrying without", file=sys.stderr)
                ext.extra_compile_args = [f for f in ext.extra_compile_args if f != "-fopenmp"]
                ext.extra_link_args = [f for f in ext.extra_link_args if f != "-fopenmp"]
                return self.build_extension(ext)
            print(f"fastmle: WARNING: C backend not built ({exc}); "
                  "the numba and numpy backends remain available", file=sys.stderr)


ext_modules = []
if not os.environ.get("FASTMLE_NO_C"):
    from build_ffi import make_ffibuilder

    ext_modules = [make_ffibuilder(extra_flags=os.environ.get("FASTMLE_CFLAGS", "").split())
                   .distutils_extension()]

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
