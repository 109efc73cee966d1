"""Every ```python block of README.md runs as written, each in a fresh namespace (the README says each block
stands on its own). ```bash blocks (installs, launches, CI) are not executed: they are whole runs, tested
elsewhere (tests/test_launch.py, tests/test_experiments_*.py)."""
import pathlib
import re

import helpers_train  # noqa: F401  (repository root on sys.path, persistent compilation cache)
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
_FENCE = re.compile(r"^```(\w*)\s*$")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number of the block's first code line, code) for each ```python block; an unclosed fence raises
    (a block that silently swallows the rest of the file would go untested)."""
    blocks, lang, start, body = [], None, 0, []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _FENCE.match(line)
        if lang is None:
            if match:
                lang, start, body = match.group(1), number + 1, []
        elif line.strip() == "```":
            if lang == "python":
                blocks.append((start, "\n".join(body) + "\n"))
            lang = None
        else:
            body.append(line)
    if lang is not None:
        raise ValueError(f"README.md:{start - 1}: ```{lang} block is never closed")
    return blocks


def run_block(start: int, code: str, filename: str = str(README)) -> None:
    # Pad with blank lines so that a traceback's line numbers are README.md's own.
    compiled = compile("\n" * (start - 1) + code, filename, "exec")
    exec(compiled, {"__name__": "readme_block"})


BLOCKS = python_blocks(README.read_text())


def test_extractor_finds_blocks_and_line_numbers():
    text = "intro\n```python\nx = 1\n```\n```bash\nrm -rf /\n```\n```python\ny = 2\nz = 3\n```\n"
    assert python_blocks(text) == [(3, "x = 1\n"), (9, "y = 2\nz = 3\n")]
    with pytest.raises(ValueError, match="README.md:2: ```python block is never closed"):
        python_blocks("a\n```python\nx = 1\n")
    assert len(BLOCKS) >= 3  # the tour: pure core, attention and decoding, NNX models


def test_failing_block_reports_its_readme_line():
    with pytest.raises(NameError) as info:
        run_block(40, "a = 1\nb = undefined_name\n")
    assert info.traceback[-1].lineno + 1 == 41  # pytest's traceback line numbers are 0-based


@pytest.mark.parametrize("start, code", BLOCKS, ids=[f"README.md:{start}" for start, _ in BLOCKS])
def test_readme_block_runs(start, code):
    try:
        run_block(start, code)
    except Exception as e:  # name the block: the traceback alone points into this file's exec
        pytest.fail(f"README.md block starting at line {start} raised {type(e).__name__}: {e}")
