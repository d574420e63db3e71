"""Every ```python block of README.md runs as written, each in a fresh
interpreter (a reader copies them one at a time): no undefined name, no
placeholder, no call the API no longer takes."""
import re
from pathlib import Path

import pytest

from child import run_python

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_its_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path):
    code = BLOCKS[index]
    if "dask" in code:
        pytest.importorskip("distributed", reason="dask is optional (fastmle[dask]); the test extra installs it")
    proc = run_python("-c", code, cwd=tmp_path, timeout=900, check=False)
    assert proc.returncode == 0, f"README block {index + 1}:\n{code}\n{proc.stderr[-3000:]}"
