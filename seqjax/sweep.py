"""Sweeps: a grid of config overrides ('a.b=1,2;c.d=x,y'), one workdir per point, and the results table.

launch.py runs the points one after another (`--sweep`), prints one command per point (`--sweep_launch`),
or submits them as one SLURM job array (`--sweep --slurm`, seqjax/slurm.py); `--sweep_collect` builds the
table from the points' summary.json files, however they ran. Standard library only: launch.py reads a grid
without importing JAX.
"""
from __future__ import annotations

import csv
import itertools
import json
import os

from seqjax.cli import UsageError

MISSING = "missing"  # the status of a point without summary.json: not run yet, running, or failed


def get_field(config, key: str):
    """`config['a']['b']` for key 'a.b'; UsageError naming the key when it is not a field of `config`."""
    node = config
    for part in key.split("."):
        if not hasattr(node, "keys") or part not in node.keys():
            raise UsageError(f"--sweep: unknown config key {key!r}")
        node = node[part]
    return node


def _parse_value(key: str, text: str, current):
    """`text` as the type of the config field it overrides."""
    try:
        if isinstance(current, bool):
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if current is None or isinstance(current, str):
            return text
    except ValueError:
        pass
    raise UsageError(f"--sweep: value {text!r} for {key} is not of type {type(current).__name__}")


def parse_sweep(spec: str, config) -> list[tuple]:
    """'a.b=1,2;c=x,y' -> the grid: one tuple of (key, typed value, text) per point, first axis slowest."""
    axes = []
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        if "=" not in part:
            raise UsageError(f"--sweep: expected 'key=v1,v2' in {part!r}")
        key, values = (s.strip() for s in part.split("=", 1))
        current = get_field(config, key)
        axes.append([(key, _parse_value(key, v.strip(), current), v.strip()) for v in values.split(",")])
    if not axes:
        raise UsageError(f"--sweep: no axes in {spec!r}")
    return list(itertools.product(*axes))


def point_name(point) -> str:
    """The point's workdir name under the sweep's: 'a.b=1__c=x'."""
    return "__".join(f"{key}={text}" for key, _, text in point).replace("/", "_")


def point_config(config, point):
    """A copy of `config` with the point's values set."""
    config = config.copy_and_resolve_references()
    with config.unlocked():
        for key, value, _ in point:
            parent, _, leaf = key.rpartition(".")
            (get_field(config, parent) if parent else config)[leaf] = value
    return config


class Results:
    """The sweep's table: one row per point with the swept values, steps, status and every final metric.

    results.csv holds every column; results.md the swept keys, steps, status and the task's headline metrics
    (each labelled with which way is better).
    """

    def __init__(self, grid):
        self.rows: list[dict] = []
        self.brief = [key for key, _, _ in grid[0]] + ["steps", "status"]
        self.labels: dict[str, str] = {}

    def add(self, point, summary: dict | None) -> None:
        """The point's row from its summary (None: no summary.json, status MISSING)."""
        row = {key: text for key, _, text in point}
        if summary is None:
            self.rows.append({**row, "steps": "", "status": MISSING})
            return
        self.rows.append({**row, "steps": summary["steps"], "status": summary["status"], **summary["final"]})
        for metric in summary["headline"]["metrics"]:
            if metric["name"] not in self.brief:
                self.brief.append(metric["name"])
                self.labels[metric["name"]] = f"{metric['name']} ({metric['better']} is better)"

    def write(self, directory: str) -> tuple[str, str]:
        return write_results(directory, self.rows, self.brief, self.labels)


def collect(directory: str, grid) -> Results:
    """The table of the points' summary.json files under `directory` (one workdir per point)."""
    results = Results(grid)
    for point in grid:
        path = os.path.join(directory, point_name(point), "summary.json")
        summary = None
        if os.path.exists(path):  # written atomically (metrics_io.write_json): complete or absent
            with open(path) as f:
                summary = json.load(f)
        results.add(point, summary)
    return results


def write_results(directory: str, rows: list[dict], brief: list[str] | None = None,
                  labels: dict[str, str] | None = None) -> tuple[str, str]:
    """results.csv with every column of `rows`, results.md with the columns `brief` only (all if None), each
    headed by labels.get(column, column)."""
    columns = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    csv_path, md_path = os.path.join(directory, "results.csv"), os.path.join(directory, "results.md")
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v if v is not None else "")

    shown = columns if brief is None else brief
    labels = labels or {}
    with open(md_path, "w") as f:
        f.write("| " + " | ".join(labels.get(c, c) for c in shown) + " |\n|" + "---|" * len(shown) + "\n")
        for row in rows:
            f.write("| " + " | ".join(fmt(row.get(c)) for c in shown) + " |\n")
    return csv_path, md_path
