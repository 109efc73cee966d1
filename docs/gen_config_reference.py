"""The config reference: every field of every experiment (experiments/*.py) and what each variant changes.

`python docs/gen_config_reference.py > config.md` prints the page; the documentation build calls `markdown()`
(docs/hooks.py). The fields and their meanings come from `seqjax.configs.field_docs`, the function behind
`launch.py --show_config` (trainer fields: `configs.FIELD_DOCS`; optimiser fields: `optim.FIELD_DOCS`;
config.data and config.model: the task's and model's constructor signatures and "Args:" docstrings), so the
page, the command line and the code cannot disagree. A field's default is the constructor's for config.data
and config.model, `configs.base`'s for the others; its value is the experiment's.
"""
from __future__ import annotations

import importlib
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")


def _code(value) -> str:
    return f"`{_cell(repr(value))}`" if repr(value) else ""


def _flat(config) -> dict:
    out = {}

    def walk(node, prefix):
        for key in node.keys():
            value = node[key]
            if hasattr(value, "keys"):
                walk(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = value

    walk(config, "")
    return out


def experiment_section(name: str) -> list[str]:
    from seqjax import configs

    module = importlib.import_module(f"experiments.{name}")
    doc = (module.__doc__ or "").strip().splitlines()
    variants = getattr(module, "VARIANTS", {})
    config = module.get_config(None)
    base = _flat(configs.base(config.task, config.model_name, optimizer=config.optim.name))
    default = _flat(config)
    lines = [f"## {name}", "", _cell(doc[0]) if doc else "", "",
             f"`python launch.py --config=experiments/{name}.py[:variant] --workdir=DIR` "
             f"(`--show_config` prints the same fields with the overrides applied).", ""]
    if variants:
        lines += ["| variant | what it is | keys it changes from the default |", "|---|---|---|"]
        for variant, text in variants.items():
            changed = _flat(module.get_config(variant))
            diff = ", ".join(f"`{k} = {_cell(repr(v))}`" for k, v in changed.items() if default.get(k) != v)
            lines.append(f"| `{variant}` | {_cell(text)} | {diff or '(none: the default)'} |")
        lines.append("")
    lines += ["| key | value | type | default | meaning |", "|---|---|---|---|---|"]
    for f in configs.field_docs(config):
        if f["owner"] is not None:
            kind, default_value = f["type"], _code(f["default"])
            meaning = f"{f['meaning']} ({f['owner']} argument)"
        else:
            kind = type(f["value"]).__name__
            default_value = _code(base[f["key"]]) if f["key"] in base else "(required)"
            meaning = f["meaning"]
        lines.append(f"| `{f['key']}` | {_code(f['value'])} | `{_cell(kind)}` | {default_value} | "
                     f"{_cell(meaning)} |")
    return lines + [""]


def markdown() -> str:
    if str(ROOT) not in sys.path:  # experiments/ and seqjax/ (mkdocs restores sys.path after loading hooks)
        sys.path.insert(0, str(ROOT))
    names = sorted(p.stem for p in (ROOT / "experiments").glob("*.py") if not p.name.startswith("_"))
    lines = ["# Config reference", "",
             "Every field of every experiment, generated from `experiments/*.py` by "
             "`docs/gen_config_reference.py` with `seqjax.configs.field_docs` (what `python launch.py "
             "--config=... --show_config` prints). `config.data` holds the keyword arguments of the task "
             "class "
             "`config.task` names and `config.model` those of the model class `config.model_name` names; "
             "`config.optim` the fields of the named optimiser; `config.train` and `config.distributed` the "
             "trainer's. Any field can be set on the command line: `--config.optim.lr=3e-3`. "
             "Variants combine with commas where the experiment says so: `experiments/weather.py:full,lstm`.",
             "", "Experiments: " + ", ".join(f"[{n}](#{n})" for n in names) + ".", ""]
    for name in names:
        lines += experiment_section(name)
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
