"""Plain-numpy reference implementations: the oracle every compiled kernel is
tested against, and the fallback for inputs the kernels do not cover
(complex, float16, longdouble, 0-d, empty). One module per family, with the
same function names as fastmle/_numba/<family>.py and csrc/<family>.c."""
