"""MkDocs hooks (mkdocs.yml `hooks:`): the pages generated at build time, none of them committed.

- reference/api-<layer>.md: one page per layer of the package, a mkdocstrings `::: module` block for every
  public module of seqjax (found by walking the package, so a new module appears without editing anything;
  a module that fits no layer stops the build);
- reference/config.md: every field of every experiment and variant (docs/gen_config_reference.py);
- lessons/<name>.md: each lessons/*.py executed, with its printed output and figures (docs/render_lessons.py).
"""
from __future__ import annotations

import pathlib
import sys

from mkdocs.structure.files import File

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "docs")]  # the generators below

import gen_config_reference  # noqa: E402
import render_lessons  # noqa: E402

# (page, title, module prefixes) in the order of ARCHITECTURE.md's layers; a module goes to the page of its
# longest matching prefix.
API_PAGES = [
    ("core", "Pure core", ["seqjax.cells", "seqjax.scan", "seqjax.patterns", "seqjax.masks", "seqjax.dropout",
                           "seqjax.losses", "seqjax.attention", "seqjax.positional", "seqjax.decoding",
                           "seqjax.embedding", "seqjax.corruption", "seqjax.alignment"]),
    ("kernels", "Kernels", ["seqjax.kernels"]),
    ("data", "Data", ["seqjax.data", "seqjax.translation_metrics", "seqjax.translation_baselines"]),
    ("nn", "NNX layers (seqjax.nn)", ["seqjax.nn"]),
    ("models", "Models", ["seqjax.models"]),
    ("training", "Training", ["seqjax.optim", "seqjax.checkpoint", "seqjax.workdir", "seqjax.sharding",
                              "seqjax.parallel", "seqjax.metrics_io", "seqjax.configs", "seqjax.task",
                              "seqjax.train", "seqjax.cli", "seqjax.preflight", "seqjax.stopping",
                              "seqjax.allocator", "seqjax.precision"]),
    ("tasks", "Tasks", ["seqjax.tasks"]),
    ("tools", "Tools (sample, viz, translate, sweep, slurm)", ["seqjax.sample", "seqjax.viz",
                                                               "seqjax.translate", "seqjax.sweep",
                                                               "seqjax.slurm"]),
]


def public_modules() -> list[str]:
    """Every module of seqjax whose name has no part starting with "_", in path order."""
    package = ROOT / "seqjax"
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        if len(parts) > 1 and not any(p.startswith("_") for p in parts):
            names.append(".".join(parts))
    return names


def api_pages() -> dict[str, list[str]]:
    """{page: [module, ...]} covering every public module; raises on a module that fits no page."""
    pages = {page: [] for page, _, _ in API_PAGES}
    for name in public_modules():
        matches = [(len(prefix), page) for page, _, prefixes in API_PAGES for prefix in prefixes
                   if name == prefix or name.startswith(prefix + ".")]
        if not matches:
            raise ValueError(f"docs/hooks.py: module {name} fits no API page; add it to API_PAGES")
        pages[max(matches)[1]].append(name)
    return pages


def api_markdown(page: str, title: str, modules: list[str]) -> str:
    lines = [f"# {title}", "",
             "Generated from the docstrings (shapes use ARCHITECTURE.md's alphabet: B batch, T time, "
             "D width, ...).", ""]
    for name in modules:
        lines += [f"::: {name}", ""]
    return "\n".join(lines)


def on_config(config, **kwargs):
    reference = next(item["Reference"] for item in config.nav
                     if isinstance(item, dict) and "Reference" in item)
    reference += [{title: f"reference/api-{page}.md"} for page, title, _ in API_PAGES]
    lessons = render_lessons.lesson_files(ROOT / "lessons")
    if lessons:
        config.nav.append({"Lessons": [{render_lessons.title(p): f"lessons/{p.stem}.md"} for p in lessons]})
    return config


def on_files(files, config, **kwargs):
    pages = api_pages()
    for page, title, _ in API_PAGES:
        files.append(File.generated(config, f"reference/api-{page}.md",
                                    content=api_markdown(page, title, pages[page])))
    files.append(File.generated(config, "reference/config.md", content=gen_config_reference.markdown()))
    files.append(File.generated(config, "architecture.md",
                                content=(ROOT / "ARCHITECTURE.md").read_text()))
    for lesson in render_lessons.lesson_files(ROOT / "lessons"):
        page, images = render_lessons.render(lesson, ROOT / ".cache" / "docs-lessons")
        files.append(File.generated(config, f"lessons/{lesson.stem}.md", content=page))
        for image in images:
            files.append(File.generated(config, f"lessons/{lesson.stem}/{image.name}",
                                        abs_src_path=str(image)))
    return files
