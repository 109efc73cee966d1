"""The documentation's code runs: every ```python block of docs/**/*.md runs as written, each in a fresh
namespace (as tests/test_readme.py does for README.md). The site itself is built by
`mkdocs build --strict` in .ci/run; the parts of its generators that need no MkDocs are tested here."""
import pathlib
import sys

import helpers_train  # noqa: F401  (repository root on sys.path, persistent compilation cache)
import pytest
from test_readme import python_blocks, run_block

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS))
import render_lessons  # noqa: E402

PAGES = sorted(DOCS.rglob("*.md"))
BLOCKS = [(page, start, code) for page in PAGES for start, code in python_blocks(page.read_text())]


def test_docs_have_code_blocks():
    assert len(BLOCKS) >= 5  # getting started, the how-tos


@pytest.mark.parametrize("page, start, code", BLOCKS,
                         ids=[f"{p.relative_to(ROOT)}:{s}" for p, s, _ in BLOCKS])
def test_docs_block_runs(page, start, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a block that writes files writes them here
    try:
        run_block(start, code, filename=str(page))
    except Exception as e:
        pytest.fail(f"{page.relative_to(ROOT)} block starting at line {start} raised {type(e).__name__}: {e}")


def test_lesson_cells_parse_percent_format():
    text = "import x\n# %% [markdown]\n# # Title\n#\n# Some *text*.\n\n# %%\nprint(1)\n\n# %%\n\n"
    assert render_lessons.cells(text) == [("code", "import x"), ("markdown", "# Title\n\nSome *text*."),
                                         ("code", "print(1)")]


def test_lesson_renders_output_and_figures(tmp_path):
    lesson = tmp_path / "01_tiny.py"
    lesson.write_text("# %% [markdown]\n# # Tiny lesson\n\n# %%\nprint(6 * 7)\n\n# %%\n"
                      "import matplotlib.pyplot as plt\nplt.plot([0, 1])\n")
    page, images = render_lessons.render(lesson, tmp_path / "cache")
    assert render_lessons.title(lesson) == "Tiny lesson"
    assert "```python\nprint(6 * 7)\n```\n\n```text\n42\n```" in page
    assert [p.name for p in images] == ["figure_1.png"] and "](01_tiny/figure_1.png)" in page
    again, _ = render_lessons.render(lesson, tmp_path / "cache")  # cached: not run again
    assert again == page
