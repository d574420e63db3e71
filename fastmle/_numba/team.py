"""A team of Numba threads that meet at barriers: what OpenMP's `omp
barrier` gives the C SGD epoch, for the Numba one (see glm._epoch_team).

Numba has no atomics, so these are LLVM's, through intrinsics: a
sequentially consistent read-modify-write orders every store made before it
against every load made after the matching read on another thread. The
intrinsics name libc's functions (clock_gettime, sched_yield) rather than
holding pointers to them, so the compiled code stays cacheable.
"""
import platform

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# int64 slots between the counters in a sync array: one cache line each
SYNC_STRIDE = 8
# (_ALONE_FOR_GOOD: the SGD epoch's trial, see glm._epoch_part; set outside
# a barrier, so read only after the next one, unlike _DISBAND)
_BARRIER_COUNT, _BARRIER_GENERATION, _START_ARRIVED, _START_DECISION, _SLEPT, _DISBAND, _ALONE_FOR_GOOD = (
    i * SYNC_STRIDE for i in range(7))
SYNC_SIZE = 7 * SYNC_STRIDE  # the length of a team's sync array (zeroed)
_UNDECIDED, TOGETHER, ALONE = 0, 1, 2
# The outcome of an SGD epoch's trial (csrc's FM_TRIAL_*): none, the team
# resumed, thread 0 kept on alone, the epoch stopped inside the trial, the
# team disbanded at the trial's end
TRIAL_NONE, TRIAL_TEAM, TRIAL_ALONE, TRIAL_STOPPED, TRIAL_DISBANDED = range(5)
# How long a thread waits at the start for the rest of its team before
# thread 0 runs everything alone: far beyond waking a thread pool (tens of
# microseconds), short against an epoch run alone.
_START_WAIT_NS = 20_000_000
# Spins a waiting thread makes before it starts yielding its core at each
# further spin: a partner that is running arrives within microseconds, one
# that is not (more threads than free cores) needs the core.
_SPINS_BEFORE_YIELD = 1000

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
_CLOCK_MONOTONIC = 1  # Linux's clock id


def _slot(context, builder, signature, args):
    array = context.make_array(signature.args[0])(context, builder, args[0])
    return builder.gep(array.data, [args[1]])


def _is_int64_array(a):  # contiguous and writeable: _slot ignores strides
    return (isinstance(a, types.Array) and a.dtype == types.int64 and a.ndim == 1 and a.layout == "C"
            and a.mutable)


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


@intrinsic
def _monotonic_ns(typingctx):
    """clock_gettime(CLOCK_MONOTONIC) in nanoseconds."""
    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        timespec = ir.LiteralStructType([i64, i64])
        fn = builder.module.globals.get("clock_gettime") or ir.Function(
            builder.module, ir.FunctionType(ir.IntType(32), [ir.IntType(32), timespec.as_pointer()]),
            "clock_gettime")
        now = builder.alloca(timespec)
        builder.call(fn, [ir.Constant(ir.IntType(32), _CLOCK_MONOTONIC), now])
        seconds = builder.load(builder.gep(now, [ir.Constant(ir.IntType(32), 0)] * 2))
        nanoseconds = builder.load(builder.gep(now, [ir.Constant(ir.IntType(32), 0),
                                                     ir.Constant(ir.IntType(32), 1)]))
        return builder.add(builder.mul(seconds, i64(1_000_000_000)), nanoseconds)

    return types.int64(), codegen


@intrinsic
def _yield_core(typingctx):
    """sched_yield(): let another runnable thread have this core."""
    def codegen(context, builder, signature, args):
        fn = builder.module.globals.get("sched_yield") or ir.Function(
            builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
        builder.call(fn, [])
        return context.get_dummy_value()

    return types.none(), codegen


@njit(inline="always", cache=True)
def _wait(spins):
    """One turn of a spin-wait: pause, and yield the core once the wait is long."""
    if spins < _SPINS_BEFORE_YIELD:
        _pause()
    else:
        _yield_core()
    return spins + 1


@njit(inline="always", cache=True)
def _team_start(sync, team):
    """TOGETHER when all `team` threads have arrived and run together;
    ALONE when they did not all arrive within _START_WAIT_NS (a threading
    layer that grants fewer threads, or runs the iterations one after
    another): then thread 0 must do everything alone. Every thread gets the
    same answer: the first to decide sets it once."""
    _atomic_add(sync, _START_ARRIVED, 1)
    deadline = _monotonic_ns() + _START_WAIT_NS
    spins = 0
    while True:
        decision = _atomic_load(sync, _START_DECISION)
        if decision != _UNDECIDED:
            return decision
        if _atomic_load(sync, _START_ARRIVED) == team:
            _compare_and_set(sync, _START_DECISION, _UNDECIDED, TOGETHER)
        elif spins % 64 == 0 and _monotonic_ns() > deadline:
            _compare_and_set(sync, _START_DECISION, _UNDECIDED, ALONE)
        spins = _wait(spins)


@njit(inline="always", cache=True)
def _team_barrier(sync, team, generation, disband):
    """Wait until all `team` threads reach the barrier (each passes its
    count of barriers passed so far; returns the new count). The last to
    arrive resets the arrivals and opens the next generation.

    A wait that reaches its yielding turns counts as a sleep. A team whose
    threads keep sleeping has more threads than free cores, and its barriers
    cost time slices (2-thread epoch 106-121 ms against 58 on one thread,
    with a busy process on the other core): once disband[0] sleeps have
    happened, and in at least one crossing in 16, the last to arrive sets
    the team's disband flag (_team_disbanded), as csrc's fm_team_barrier.
    Tests also make it disband at crossing disband[1] (1: the first; 0:
    never), as fm_set_team_disband_at."""
    if _atomic_add(sync, _BARRIER_COUNT, 1) == team - 1:
        slept = _atomic_load(sync, _SLEPT)
        if (slept >= disband[0] and slept * 16 >= generation) or generation + 1 == disband[1]:
            _compare_and_set(sync, _DISBAND, 0, 1)
        _atomic_add(sync, _BARRIER_COUNT, -team)
        _atomic_add(sync, _BARRIER_GENERATION, 1)
    else:
        spins = 0
        while _atomic_load(sync, _BARRIER_GENERATION) == generation:
            if spins == _SPINS_BEFORE_YIELD:
                _atomic_add(sync, _SLEPT, 1)
            spins = _wait(spins)
    return generation + 1


@njit(inline="always", cache=True)
def _team_disbanded(sync):
    """Whether the team's barriers disbanded it (see _team_barrier): its
    first thread then goes on alone."""
    return _atomic_load(sync, _DISBAND) != 0


# Sleeps after which an epoch's team disbands, and the crossing at which
# tests make it disband (see _team_barrier).
_DISBAND_LIMITS = {"sleeps": 64, "at": 0}


def set_team_disband_sleeps(sleeps):
    """Set the sleeps after which a team disbands; returns the previous
    value (as csrc's fm_set_team_disband_sleeps; tests force 0)."""
    before = _DISBAND_LIMITS["sleeps"]
    _DISBAND_LIMITS["sleeps"] = max(int(sleeps), 0)
    return before


def set_team_disband_at(crossing):
    """For tests: make a team disband at this barrier crossing as well (1:
    its first; 0: never); returns the previous value (as csrc's
    fm_set_team_disband_at)."""
    before = _DISBAND_LIMITS["at"]
    _DISBAND_LIMITS["at"] = max(int(crossing), 0)
    return before


# The SGD epoch's trial of its team against its first thread alone (see
# glm._epoch_part): batches per timed window (0: none), and the margin in
# percent by which one thread must win.
_TEAM_TRIAL = {"batches": 256, "margin": 10}


def set_team_trial(batches, margin_percent):
    """Set the trial's window and margin; returns the previous window (as
    csrc's fm_set_team_trial; tests force either outcome)."""
    before = _TEAM_TRIAL["batches"]
    _TEAM_TRIAL["batches"] = min(max(int(batches), 0), 2**31 - 1)  # C's int
    _TEAM_TRIAL["margin"] = min(max(int(margin_percent), -100), 1_000_000)  # as C's
    return before
