"""Translate a sentence with a trained translation run (experiments/translate_*.py), print the n-best list
with scores and draw the cross-attention alignment of the best translation.

    python -m seqjax.translate --workdir=DIR --text="The big red dog barks." [--beam_size=4 --nbest=3]
        [--out=DIR]

The run's config is read from DIR/config.json, the task rebuilt (the pyrealb vocabulary, or the run's own
subword models saved in DIR) and the model's parameters restored from DIR's latest checkpoint. With a
transformer, beam search (`EncoderDecoder.generate`, the shared `seqjax.decoding.beam_search`) gives the
`nbest` best of `beam_size` beams, each with its score: the summed token log-probability divided by beam
search's length penalty ((5 + length) / 6) ** alpha; beam_size 1 is greedy (score: the summed
log-probability). The alignment picture (`seqjax.viz.render_translation`: alignment.png, cross_attention.png)
goes to --out (default: DIR). An RNN run prints its best translation only (no scores, no picture).
"""
from __future__ import annotations

import os
import sys

import jax
import numpy as np
from absl import flags

from seqjax import cli, viz
from seqjax.task import load_run

PROG = "python -m seqjax.translate"
FLAGS = cli.new_flags()
flags.DEFINE_string("workdir", None, "Workdir of a translation training run.", flag_values=FLAGS)
flags.DEFINE_string("text", None, "The English sentence to translate.", flag_values=FLAGS)
flags.DEFINE_integer("beam_size", 4, "Beams; 1 = greedy.", flag_values=FLAGS)
flags.DEFINE_integer("nbest", 1, "How many of the best beams to print (at most beam_size).",
                     flag_values=FLAGS)
flags.DEFINE_string("out", None, "Folder for the alignment pictures (default: the workdir).",
                    flag_values=FLAGS)


def translate(task, model, text: str, beam_size: int = 4, nbest: int = 1
              ) -> list[tuple[str, float | None, np.ndarray]]:
    """[(translation, score or None, target ids without BOS)], best first: `nbest` of `beam_size` beams."""
    if beam_size < 1 or not 1 <= nbest <= beam_size:
        raise ValueError(f"--beam_size, --nbest: expected 1 <= nbest <= beam_size, got nbest={nbest}, "
                         f"beam_size={beam_size}")
    src, src_lengths, _ = task.encode_source(text)
    if not hasattr(model, "generate"):  # the RNN seq2seq: its best translation only
        if nbest > 1:
            raise ValueError("--nbest: this run trained a recurrent model, which returns its best beam only")
        ids = np.asarray(model.translate(src, src_lengths, task.T, beam_size=beam_size))[0]
        return [(task.decode_target(ids)[0], None, ids)]
    if beam_size == 1:
        seqs = np.asarray(model.generate(src, src_lengths, max_new_tokens=task.T))[:, None]  # [1, 1, 1 + T]
        scores = np.array([[_log_prob(model, src, src_lengths, seqs[0, 0])]])
    else:
        seqs, scores = model.generate(src, src_lengths, max_new_tokens=task.T, beam_size=beam_size)
        seqs, scores = np.asarray(seqs), np.asarray(scores)
    return [(task.decode_target(seqs[0, w, 1:])[0], float(scores[0, w]), seqs[0, w, 1:])
            for w in range(nbest)]


def _log_prob(model, src, src_lengths, seq) -> float:
    """Summed log-probability of the greedy output (up to and including its EOS) under teacher forcing."""
    seq = [int(i) for i in seq]
    end = seq.index(model.eos_id, 1) + 1 if model.eos_id in seq[1:] else len(seq)
    tokens = np.array([seq[:end]], np.int32)
    logits = model(src, src_lengths, tokens[:, :-1])  # [1, n, V]
    logp = jax.nn.log_softmax(np.asarray(logits, np.float32), axis=-1)
    return float(np.take_along_axis(np.asarray(logp), tokens[:, 1:, None], axis=-1).sum())


def main(argv: list[str] | None = None) -> int:
    """argv without the program name (None: sys.argv[1:]); returns the exit status."""
    try:
        if not cli.parse(FLAGS, sys.argv[1:] if argv is None else argv, PROG, __doc__):
            return 0
        for name in ("workdir", "text"):
            if not FLAGS[name].value:
                raise cli.UsageError(f"--{name} is required")
        _, task, model = load_run(FLAGS.workdir, ("translation",))
        results = translate(task, model, FLAGS.text, FLAGS.beam_size, FLAGS.nbest)
        paths = []
        if hasattr(model, "project_memory"):
            out = FLAGS.out or FLAGS.workdir
            os.makedirs(out, exist_ok=True)
            paths = viz.render_translation(task, model, FLAGS.text, out, target_ids=results[0][2])
    except (cli.UsageError, ValueError, FileNotFoundError) as e:
        return cli.fail(PROG, str(e))
    for rank, (hyp, score, _) in enumerate(results, 1):
        print(f"{rank}. {hyp}" + ("" if score is None else f"    (score {score:.4f})"))
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
