"""Bible WEB -> LSG (English -> French verses) with an RNN encoder-decoder with attention, beside the
transformer of translate_bible.py (same data, split, subwords and evaluation).

Variants (comma-separated): "full" (default) or "smoke".

Data: as experiments/translate_bible.py (task "translation", corpus "bible", split by book, verses of at
most 20 words, 4,000 SentencePiece pieces per language trained on the training verses, at most 400 val and
400 test verses evaluated, greedy and beam 4).
Model: `RNNSeq2Seq`: bidirectional GRU encoder (E=128, H=256) with a tanh memory projection and a bridge to
the decoder, GRU decoder with Luong "general" attention, dropout 0.2 on the source embeddings and the
memory; AdamW 2e-3, 200 warmup steps, cosine decay, batches of 64 verses in 4 length buckets.

Result, AS MEASURED: a short run only (2026-12-01 06:55-07:01 UTC, 2-core CPU shared with other jobs, load
average 2-5, nice 10); the full variant (3000 steps) is untried:
    python launch.py --config=experiments/translate_bible_rnn.py --workdir=/tmp/tbr --config.train.steps=600 \
        --config.train.eval_every=300
    600 steps of 64 verses (3.4 epochs) at 2.3-2.7 steps/s; wall 5 min 27 s (summary.json 327 s, including
    greedy + beam-4 decoding of 147 val and 400 test verses). Test (unseen books): BLEU 1.83 with beam 4,
    2.11 greedy (chrF 12.9 / 14.4); val 1.02 / 0.89; val loss 4.47 at step 300, 4.02 at 600. Baselines as in
    translate_bible.py: IBM Model 1 8.85, copy the source 0.29. Beside it, the transformer of
    translate_bible.py after 800 steps (40 minutes at load 7-21): BLEU 3.90 beam / 3.54 greedy, val loss 3.80.
"""
from seqjax import configs

VARIANTS = {"full": "GRU H=256 E=128, batches of 64 verses, beam 4",
            "smoke": "4 steps of H=16 on 256 verses, 100-piece vocabularies, greedy (the tests run it)"}


def get_config(arg: str | None = None):
    parts = [p for p in (arg or "full").split(",") if p]
    c = configs.base("translation", "rnn_seq2seq")
    d = c.data
    d.corpus = "bible"
    d.split = "book"
    d.vocab_size = 4000
    d.max_words = 20
    d.max_eval = 400
    d.beam_size = 4
    m = c.model
    m.cell = "gru"
    m.embed_dim = 128
    m.hidden_size = 256
    m.attention = "general"
    m.bidirectional = True
    m.embed_dropout = 0.2
    m.memory_dropout = 0.2
    c.optim.lr = 2e-3
    c.optim.warmup_steps = 200
    c.optim.clip_norm = 1.0
    c.train.steps = 3000
    c.train.batch_size = 64
    c.train.length_buckets = 4
    c.train.eval_every = 500
    c.train.eval_batches = 0
    c.train.log_every = 100
    c.train.checkpoint_every = 500
    for p in parts:
        if p == "smoke":
            d.max_train, d.max_eval, d.vocab_size, d.max_words = 256, 8, 100, 12
            d.beam_size = 1  # greedy only: the transformer's smoke runs the beams
            m.embed_dim, m.hidden_size = 8, 16
            configs.smoke_train(c, steps=4, batch_size=16)
            c.train.eval_batches = 1
        elif p != "full":
            raise ValueError(f"experiments/translate_bible_rnn.py: unknown variant {p!r}; use full|smoke")
    return c
