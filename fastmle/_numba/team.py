"""A team of Numba threads that meet at barriers: what OpenMP's `omp
barrier` gives the C SGD epoch, for the Numba one (see glm._epoch_team).

Numba has no atomics, so these are LLVM's, through intrinsics: a
sequentially consistent read-modify-write orders every store made before it
against every load made after the matching read on another thread.
"""
import platform

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# int64 slots between the counters in a sync array: one cache line each
SYNC_STRIDE = 8
_BARRIER_COUNT, _BARRIER_GENERATION, _START_ARRIVED, _START_DECISION = (i * SYNC_STRIDE for i in range(4))
_UNDECIDED, _TOGETHER, _ALONE = 0, 1, 2
# Spins (each a pause instruction, tens of cycles) a thread waits at the
# start for the rest of its team before thread 0 runs everything alone:
# about 0.1 s, far beyond a thread pool's start-up.
_START_SPINS = 1 << 22

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _slot(context, builder, signature, args):
    array = context.make_array(signature.args[0])(context, builder, args[0])
    return builder.gep(array.data, [args[1]])


def _is_int64_array(a):
    return isinstance(a, types.Array) and a.dtype == types.int64 and a.ndim == 1


@intrinsic
def _atomic_add(typingctx, a, i, v):
    """a[i] += v atomically; returns the value before."""
    if not (_is_int64_array(a) and isinstance(i, types.Integer) and isinstance(v, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        return builder.atomic_rmw("add", _slot(context, builder, signature, args), args[2], "seq_cst")

    return types.int64(a, types.intp, types.int64), codegen


@intrinsic
def _atomic_load(typingctx, a, i):
    """a[i], read atomically."""
    if not (_is_int64_array(a) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        return builder.load_atomic(_slot(context, builder, signature, args), "seq_cst", 8)

    return types.int64(a, types.intp), codegen


@intrinsic
def _compare_and_set(typingctx, a, i, expected, new):
    """a[i] = new if a[i] == expected, atomically; returns the value before."""
    if not (_is_int64_array(a) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        pair = builder.cmpxchg(_slot(context, builder, signature, args), args[2], args[3], "seq_cst",
                               "seq_cst")
        return builder.extract_value(pair, 0)

    return types.int64(a, types.intp, types.int64, types.int64), codegen


@intrinsic
def _pause(typingctx):
    """x86's pause (a spinning thread yields the core's pipeline to its
    sibling and saves power); nothing elsewhere."""
    def codegen(context, builder, signature, args):
        if _X86:
            fn = builder.module.declare_intrinsic("llvm.x86.sse2.pause", [],
                                                  ir.FunctionType(ir.VoidType(), []))
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.none(), codegen


@njit(cache=True)
def _team_start(sync, team):
    """True when all `team` threads have arrived and run together; False
    when they did not arrive within _START_SPINS (a threading layer that
    grants fewer threads, or runs the iterations one after another): then
    thread 0 must do everything alone. Every thread gets the same answer:
    the first to decide sets it once."""
    _atomic_add(sync, _START_ARRIVED, 1)
    spins = 0
    while True:
        decision = _atomic_load(sync, _START_DECISION)
        if decision != _UNDECIDED:
            return decision == _TOGETHER
        if _atomic_load(sync, _START_ARRIVED) == team:
            _compare_and_set(sync, _START_DECISION, _UNDECIDED, _TOGETHER)
        elif spins >= _START_SPINS:
            _compare_and_set(sync, _START_DECISION, _UNDECIDED, _ALONE)
        spins += 1
        _pause()


@njit(cache=True)
def _team_barrier(sync, team, generation):
    """Wait until all `team` threads reach the barrier (each passes its
    count of barriers passed so far; returns the new count). The last to
    arrive resets the arrivals and opens the next generation."""
    if _atomic_add(sync, _BARRIER_COUNT, 1) == team - 1:
        _atomic_add(sync, _BARRIER_COUNT, -team)
        _atomic_add(sync, _BARRIER_GENERATION, 1)
    else:
        while _atomic_load(sync, _BARRIER_GENERATION) == generation:
            _pause()
    return generation + 1
