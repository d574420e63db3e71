"""Numba kernels, one module per family, imported on first use.

Each module mirrors csrc/<family>.c and fastmle/reference/<family>.py: same
function names, same argument order, same algorithm. Kernels are compiled for
explicit float32/float64 signatures with ``cache=True``, so a process pays the
compile time of a family once per machine, not once per run.
"""
