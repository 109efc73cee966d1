"""Render lessons/*.py (jupytext "percent" format) as Markdown pages with their printed output and figures.

A lesson is a Python file of cells: `# %% [markdown]` cells (each line a comment: `# text`) and `# %%` code
cells. `render(lesson, cache)` runs the lesson in a fresh Python process (`python render_lessons.py --run`),
in a folder of its own under `cache` (its working directory and `__file__`'s folder, so whatever it writes
lands there), with matplotlib's Agg backend. After each code cell the process records what the cell printed
and the image files it wrote (.png, .svg, .jpg); a cell that wrote none but left figures open gets them saved.
The page is the markdown cells as written, each code cell in a python block, its output in a text block and
its images below. A lesson that raises, or runs longer than TIMEOUT_S, stops the build with its error.

Results are cached under `cache` by the hash of the lesson and of seqjax's sources: an unchanged lesson is
not run again (`mkdocs serve` stays fast); delete the cache to force a run.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_S = 300
IMAGE_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg")
_CELL = re.compile(r"^# %%(.*)$")


def lesson_files(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_")) if folder.is_dir() else []


def cells(text: str) -> list[tuple[str, str]]:
    """[(kind "markdown" | "code", source)] of a percent-format file; text before the first marker is a code
    cell when it is not blank. Markdown lines lose their leading "# " (or "#")."""
    out, kind, body = [], "code", []

    def flush():
        source = "\n".join(body).strip("\n")
        if source.strip():
            if kind == "markdown":
                source = "\n".join(re.sub(r"^# ?", "", line) for line in source.splitlines())
            out.append((kind, source))

    for line in text.splitlines():
        match = _CELL.match(line)
        if match:
            flush()
            kind, body = ("markdown" if "[markdown]" in match.group(1) else "code"), []
        else:
            body.append(line)
    flush()
    return out


def title(lesson: pathlib.Path) -> str:
    """The first Markdown heading of the lesson, else its file name."""
    for kind, source in cells(lesson.read_text()):
        if kind == "markdown":
            for line in source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return lesson.stem


def _images(folder: pathlib.Path) -> set[pathlib.Path]:
    return {p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES}


def run_cells(lesson: pathlib.Path, folder: pathlib.Path) -> list[dict]:
    """Run the lesson's code cells in one namespace, in `folder` (this process); per code cell its output and
    the images (paths relative to folder) it produced."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.chdir(folder)
    namespace = {"__name__": "__main__", "__file__": str(folder / lesson.name)}
    results, count = [], 0
    for index, (kind, source) in enumerate(cells(lesson.read_text())):
        if kind != "code":
            continue
        before, stdout = _images(folder), io.StringIO()
        with contextlib.redirect_stdout(stdout):
            exec(compile(source, f"{lesson.name} (cell {index + 1})", "exec"), namespace)
        new = sorted(_images(folder) - before)
        if not new:
            for number in plt.get_fignums():
                count += 1
                path = folder / f"figure_{count}.png"
                plt.figure(number).savefig(path, dpi=100, bbox_inches="tight")
                new.append(path)
        plt.close("all")
        results.append({"cell": index, "output": stdout.getvalue(),
                        "images": [str(p.relative_to(folder)) for p in new]})
    return results


def _key(lesson: pathlib.Path) -> str:
    digest = hashlib.sha256(lesson.read_bytes())
    for path in sorted((ROOT / "seqjax").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def render(lesson: pathlib.Path, cache: pathlib.Path) -> tuple[str, list[pathlib.Path]]:
    """(Markdown page, image files to publish beside it under lessons/<stem>/), running the lesson unless a
    cached run of the same lesson and sources exists."""
    folder = cache / f"{lesson.stem}-{_key(lesson)}"
    result = folder / "result.json"
    if not result.exists():
        for stale in cache.glob(f"{lesson.stem}-*"):  # runs of older versions of the lesson or of seqjax
            shutil.rmtree(stale)
        folder.mkdir(parents=True)
        shutil.copy(lesson, folder / lesson.name)
        env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": os.pathsep.join(
            [str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        proc = subprocess.run([sys.executable, __file__, "--run", str(lesson), str(folder)], env=env,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
        if proc.returncode != 0:
            raise RuntimeError(f"lesson {lesson.relative_to(ROOT)} failed:\n{proc.stderr[-4000:]}")
    runs = {r["cell"]: r for r in json.loads(result.read_text())}
    lines, images = [], []
    for index, (kind, source) in enumerate(cells(lesson.read_text())):
        if kind == "markdown":
            lines += [source, ""]
            continue
        lines += ["```python", source, "```", ""]
        run = runs[index]
        if run["output"].strip():
            lines += ["```text", run["output"].rstrip("\n"), "```", ""]
        for image in run["images"]:
            published = image.replace("/", "_")
            images.append((folder / image, published))
            lines += [f"![{published}]({lesson.stem}/{published})", ""]
    source_link = f"*Generated from `lessons/{lesson.name}` (run it: `python lessons/{lesson.name}`).*"
    page = "\n".join([*lines, source_link, ""])
    published_files = []
    for src, name in images:
        target = folder / "published" / name
        target.parent.mkdir(exist_ok=True)
        shutil.copy(src, target)
        published_files.append(target)
    return page, published_files


if __name__ == "__main__" and sys.argv[1:2] == ["--run"]:
    lesson_path, run_folder = pathlib.Path(sys.argv[2]).resolve(), pathlib.Path(sys.argv[3]).resolve()
    (run_folder / "result.json").write_text(json.dumps(run_cells(lesson_path, run_folder)))
