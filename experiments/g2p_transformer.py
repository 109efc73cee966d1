"""CMUdict grapheme-to-phoneme with a transformer encoder-decoder, teacher forcing, beam-search decoding.

Variants (comma-separated): "full" (default) or "smoke". Goal: test WER <= 30%.
Same data, split (seed 0, 90/5/5 by word) and WER/PER evaluation as experiments/g2p_rnn.py (task g2p, owned
by the recurrent helper), with `config.model.family = "transformer"` ->
seqjax.models.transformers.g2p_transformer and `config.eval.beam_size` beams at test time.

Result, AS MEASURED (2-core CPU shared with other jobs):
    python launch.py --config=experiments/g2p_transformer.py --workdir=/tmp/g2p_transformer
    RESULT_PLACEHOLDER
"""
import ml_collections

from seqjax import configs


def get_config(arg: str | None = None):
    parts = [p for p in (arg or "full").split(",") if p]
    c = configs.base()
    c.task = "g2p"
    d = c.data
    d.split_seed = 0
    d.keep_stress = False
    d.max_word_len = 20
    d.max_train = 0  # 0 = all
    d.max_eval = 0
    m = c.model
    m.family = "transformer"
    m.d_model = 128
    m.num_heads = 4
    m.num_encoder_layers = 2
    m.num_decoder_layers = 2
    m.mlp_dim = 256
    m.dropout = 0.1
    m.max_src_len = 20  # = data.max_word_len
    m.max_tgt_len = 24  # >= the longest pronunciation + 1
    c.eval = e = ml_collections.ConfigDict()
    e.beam_size = 4
    c.optim.lr = 2e-3
    c.optim.b2 = 0.98
    c.optim.warmup_steps = 200
    c.optim.clip_norm = 1.0
    # Sized for the 15-minute budget on the shared 2-core CPU, beam-search evaluation of 11.7k words included.
    c.train.steps = 1800
    c.train.batch_size = 64
    c.train.eval_every = 600
    c.train.eval_batches = 10
    c.train.log_every = 100
    c.train.checkpoint_every = 600
    for p in parts:
        if p == "smoke":
            d.max_train, d.max_eval = 512, 64
            m.d_model, m.num_heads, m.num_encoder_layers, m.num_decoder_layers, m.mlp_dim = 16, 2, 1, 1, 32
            e.beam_size = 2
            c.optim.warmup_steps = 0
            c.train.steps = 6
            c.train.batch_size = 32
            c.train.eval_every = 0
            c.train.eval_batches = 1
            c.train.log_every = 3
            c.train.checkpoint_every = 0
            c.train.plots = False
        elif p != "full":
            raise ValueError(f"experiments/g2p_transformer.py: unknown variant {p!r}; use full|smoke")
    return c
