"""Generate text from a trained character-level GPT (a run of experiments/char_gpt.py).

    python -m seqjax.sample --workdir=DIR --prompt="ROMEO:" --temperature=0.8 --top_k=40 --top_p=0.95 \
        --length=500 [--seed=0]
    python -m seqjax.sample --workdir=DIR --prompt="ROMEO:" --beam_size=4 --length=60

The run's config is read from DIR/config.json, the task rebuilt (which gives the character vocabulary) and
the model's parameters restored from DIR's latest checkpoint. Decoding uses the KV cache of seqjax.decoding
through `seqjax.models.gpt.generate_long` (a sliding window once the text outgrows the position
table). Temperature 0 is greedy. --beam_size > 1 prints the best beam of a deterministic beam search
(`GPT.generate(beam_size=...)`, no length penalty: every beam has the same length); it decodes within the
position table (prompt + length - 1 <= max_len) and refuses the sampling flags. Errors: a prompt with
characters outside the vocabulary names them; a workdir of another task, or a checkpoint whose parameters
do not fit the configured model, says so.
"""
from __future__ import annotations

import sys

from seqjax import allocator

if __name__ == "__main__":  # before JAX loads: glibc reads malloc tunables at start (may re-execute)
    allocator.tune_cli("python -m seqjax.sample")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags

from seqjax import cli
from seqjax.models import gpt
from seqjax.task import load_run

PROG = "python -m seqjax.sample"
FLAGS = cli.new_flags()
flags.DEFINE_string("workdir", None, "Workdir of a char_lm training run.", flag_values=FLAGS)
flags.DEFINE_string("prompt", "\n", "Text to continue.", flag_values=FLAGS)
flags.DEFINE_integer("length", 500, "Characters to generate.", flag_values=FLAGS)
flags.DEFINE_float("temperature", 0.8, "Sampling temperature; 0 = greedy.", flag_values=FLAGS)
flags.DEFINE_integer("top_k", 0, "Keep the k most likely characters (clamped to the vocabulary); 0 = off.",
                     flag_values=FLAGS)
flags.DEFINE_float("top_p", 1.0, "Nucleus sampling mass; 1 = off.", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Sampling seed.", flag_values=FLAGS)
flags.DEFINE_integer("beam_size", 1, "1 = sample (or greedy); W > 1 = the best of a W-beam search.",
                     flag_values=FLAGS)


def sample_text(task, model, prompt: str, length: int, *, temperature: float = 0.8, top_k: int | None = None,
                top_p: float | None = None, seed: int = 0) -> str:
    """The prompt followed by `length` generated characters."""
    if not prompt:
        raise ValueError("--prompt: must contain at least one character")
    ids = task.vocab.encode(prompt, "--prompt")
    key = None if temperature == 0.0 else jax.random.PRNGKey(seed)
    top_k = min(top_k, model.vocab_size) if top_k else None
    new = gpt.generate_long(model, ids, length, key=key, temperature=temperature, top_k=top_k,
                            top_p=top_p if top_p and top_p < 1.0 else None)
    return prompt + task.vocab.decode(new)


def beam_text(task, model, prompt: str, length: int, beam_size: int) -> str:
    """The prompt followed by the `length` characters of the best beam (within the position table)."""
    if not prompt:
        raise ValueError("--prompt: must contain at least one character")
    if length < 1:
        raise ValueError(f"--length: must be >= 1 with --beam_size, got {length}")
    ids = task.vocab.encode(prompt, "--prompt")
    if len(ids) + length - 1 > model.max_len:
        raise ValueError(f"--beam_size: prompt ({len(ids)}) + length ({length}) - 1 exceeds the model's "
                         f"position table max_len = {model.max_len}; beam search does not slide a window")
    seqs, _ = model.generate(jnp.asarray([ids], jnp.int32), length, beam_size=beam_size, length_penalty=0.0)
    return prompt + task.vocab.decode(np.asarray(seqs)[0, 0, len(ids):])


def main(argv: list[str] | None = None) -> int:
    """argv without the program name (None: sys.argv[1:]); returns the exit status."""
    try:
        if not cli.parse(FLAGS, sys.argv[1:] if argv is None else argv, PROG, __doc__):
            return 0
        if not FLAGS.workdir:
            raise cli.UsageError("--workdir is required")
        given = [f"--{n}" for n in ("temperature", "top_k", "top_p", "seed") if FLAGS[n].present]
        if FLAGS.beam_size != 1 and given:
            raise cli.UsageError(f"--beam_size={FLAGS.beam_size}: beam search is deterministic; "
                                 f"{', '.join(given)} apply to sampling only")
        _, task, model = load_run(FLAGS.workdir, ("char_lm",))
        if FLAGS.beam_size != 1:
            text = beam_text(task, model, FLAGS.prompt, FLAGS.length, FLAGS.beam_size)
        else:
            text = sample_text(task, model, FLAGS.prompt, FLAGS.length, temperature=FLAGS.temperature,
                               top_k=FLAGS.top_k, top_p=FLAGS.top_p, seed=FLAGS.seed)
    except (cli.UsageError, ValueError, FileNotFoundError) as e:
        return cli.fail(PROG, str(e))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
