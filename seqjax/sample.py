"""Generate text from a trained character-level GPT (a run of experiments/char_gpt.py).

    python -m seqjax.sample --workdir=DIR --prompt="ROMEO:" --temperature=0.8 --top_k=40 --top_p=0.95 \
        --length=500 [--seed=0]

The run's config is read from DIR/config.json, the task rebuilt (which gives the character vocabulary) and
the model's parameters restored from DIR's latest checkpoint. Decoding uses the KV cache of seqjax.decoding
through `seqjax.models.transformers.sample_chars` (a sliding window once the text outgrows the position
table). Temperature 0 is greedy. Errors: a prompt with characters outside the vocabulary names them; a workdir
of another task, or a checkpoint whose parameters do not fit the configured model, says so.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import ml_collections
from flax import nnx

from seqjax import checkpoint as ckpt_lib
from seqjax.models import transformers
from seqjax.task import build_model, build_task


def load_run(workdir: str, expected_task: str | tuple[str, ...] | None = None):
    """(config, task, model with the latest checkpoint's parameters) of the run in `workdir`."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"--workdir={workdir!r}: no config.json (not a training run workdir)")
    with open(path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    expected = (expected_task,) if isinstance(expected_task, str) else expected_task
    if expected and config.task not in expected:
        raise ValueError(f"--workdir={workdir!r}: checkpoint from another model: the run trained task "
                         f"{config.task!r}, this tool needs {' or '.join(map(repr, expected))}")
    task = build_task(config)
    model = build_model(config, task, nnx.Rngs(config.seed))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    try:
        params = ckpt_lib.load_params(workdir, params)
    except ckpt_lib.CheckpointError as e:
        raise FileNotFoundError(f"--workdir={workdir!r}: no checkpoint to load ({e})") from e
    except ValueError as e:
        raise ValueError(f"--workdir={workdir!r}: checkpoint from another model: its parameters do not fit "
                         f"the model configured in config.json ({e})") from e
    return config, task, nnx.merge(graphdef, params, rest)


def sample_text(task, model, prompt: str, length: int, *, temperature: float = 0.8, top_k: int | None = None,
                top_p: float | None = None, seed: int = 0) -> str:
    """The prompt followed by `length` generated characters."""
    if not prompt:
        raise ValueError("--prompt: must contain at least one character")
    ids = task.vocab.encode(prompt, "--prompt")
    key = None if temperature == 0.0 else jax.random.PRNGKey(seed)
    new = transformers.sample_chars(model, ids, length, key=key, temperature=temperature,
                                    top_k=top_k or None, top_p=top_p if top_p and top_p < 1.0 else None)
    return prompt + task.vocab.decode(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seqjax.sample", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="workdir of a char_lm training run")
    parser.add_argument("--prompt", default="\n")
    parser.add_argument("--length", type=int, default=500, help="characters to generate")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    parser.add_argument("--top_k", type=int, default=0, help="0 = off")
    parser.add_argument("--top_p", type=float, default=1.0, help="1 = off")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        _, task, model = load_run(args.workdir, "char_lm")
        text = sample_text(task, model, args.prompt, args.length, temperature=args.temperature,
                           top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    except (ValueError, FileNotFoundError) as e:
        print(f"seqjax.sample: error: {e}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
