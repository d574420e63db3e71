"""Fresh Python interpreters for the tests that need one: a crash must fail
a test rather than kill the run, or the test is about start-up itself
(environment variables, the command line, imports).

Every child starts in a working folder outside the source tree (/ unless
the test gives its own). `python -c` and `python -m` put the working folder
first on sys.path, and a source tree there would shadow the installed
fastmle: in CI, whose clone has no C extension built in place, the C
backend's cases in a child started from the clone once all "passed" as
backend-unavailable errors."""
import os
import subprocess
import sys


def run_python(*args, cwd="/", timeout=600, check=True, env=None):
    """`python *args` in a new interpreter (text output captured, faulthandler
    on, `env` added to this process's environment). With check, a nonzero
    exit fails the test, showing the ends of stdout and stderr."""
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})})
    if check:
        assert proc.returncode == 0, (f"child {args[:2]} exited {proc.returncode}:\n"
                                      f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc
