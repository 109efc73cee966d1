"""Sentence polarity with a transformer encoder (CLS/mean pooling) over learned word embeddings.

Variants: "full" (default) or "smoke". Same data, split (seed 0, 80/10/10), tokenizer and evaluation as
experiments/sentiment_rnn.py (task "sentiment"), with the model "transformer_classifier"
(seqjax.models.encoder.TransformerClassifier): 2 layers, D=64, mean pooling, dropout 0.3 on the word
embeddings and 0.1 on each residual branch.

Result, AS MEASURED (2026-12-01 02:54 UTC, 2-core Xeon CPU, no GPU, load average 5.6-6.3 from other jobs;
commit 6d4ef8f):
    python launch.py --config=experiments/sentiment_transformer.py --workdir=/work/runs/sentiment_transformer
    1200 steps of batch 32 (4.5 epochs), wall 84 s: test accuracy 75.31% (val 78.33%). Beside it on the same
    test split: naive Bayes 78.33%, majority class 48.4%, the BiLSTM of sentiment_rnn.py 78.24%.
    The run before the config redesign (2026-11-26) reported 74.8%, but it ran WITHOUT the embedding dropout
    this file declared (the old builder never read `embed_dropout`) and with weight decay on the attention
    biases and the position table; both are fixed now. The transformer still overfits (validation loss
    0.59 at step 400, 1.21 at step 1200): with 8.5k sentences and embeddings learned from scratch it trails
    the BiLSTM by 2.9 points.
With masked-LM pretraining (experiments/mlm_pretrain.py, then this file's "pretrained" variant, which loads
only the encoder: train.init_from_params="encoder"; 2026-12-01 06:29-06:52 UTC, same machine, load 5-12):
    python launch.py --config=experiments/mlm_pretrain.py --workdir=runs/mlm_pretrain
    python launch.py --config=experiments/sentiment_transformer.py:pretrained \
        --workdir=runs/sentiment_pretrained
    test accuracy 74.65% (val 76.82%), wall 151 s: 0.66 points BELOW from scratch; the goal of +2 points is
    not met (the table of all runs, MR-only pretraining and lr 3e-4 included, is in mlm_pretrain.py; best
    pretrained 75.02%, while from scratch at lr 3e-4 reaches 76.63%).
Attention maps: python -m seqjax.viz --workdir=/tmp/f_sentiment --input="The big red dog" --out=DIR
"""
from seqjax import configs

VARIANTS = {"full": "1200 steps of 32 sentences, L=2, D=64, mean pooling (the measured run)",
            "smoke": "6 steps of a 1-layer D=16 model on 256 sentences (seconds; the tests run it)",
            "pretrained": "the encoder initialised from experiments/mlm_pretrain.py's run in "
                          "runs/mlm_pretrain (train.init_from; combine as smoke,pretrained)"}
PRETRAINED = "runs/mlm_pretrain"  # the masked-LM run's workdir (relative to the working directory)


def get_config(arg: str | None = None):
    parts = [p for p in (arg or "full").split(",") if p]
    c = configs.base("sentiment", "transformer_classifier")
    d = c.data
    d.max_len = 50
    m = c.model
    m.d_model = 64
    m.num_heads = 4
    m.num_layers = 2
    m.mlp_dim = 128
    m.max_len = 50
    m.residual_dropout = 0.1
    m.embed_dropout = 0.3
    m.pooling = "mean"  # "cls" | "mean" over the valid tokens
    c.optim.lr = 1e-3
    c.optim.weight_decay = 0.05
    c.optim.warmup_steps = 100
    c.optim.clip_norm = 1.0
    c.train.steps = 1200  # about 4.5 epochs of 8,454 sentences at batch 32
    c.train.batch_size = 32
    c.train.eval_every = 400
    c.train.log_every = 100
    c.train.checkpoint_every = 800
    for p in parts:
        if p == "smoke":
            d.max_train, d.max_eval, d.max_len = 256, 128, 24
            m.d_model, m.num_heads, m.num_layers, m.mlp_dim = 16, 2, 1, 32
            m.max_len = 25  # data.max_len + 1: room for a [CLS] token should pooling be "cls"
            configs.smoke_train(c, steps=6, batch_size=16)
        elif p == "pretrained":  # experiments/mlm_pretrain.py: its encoder has this file's arguments
            c.train.init_from = PRETRAINED
            c.train.init_from_params = "encoder"  # the pooling head is new; the MLM head is not loaded
        elif p != "full":
            raise ValueError(f"experiments/sentiment_transformer.py: unknown variant {p!r}; "
                             "use full|smoke|pretrained")
    return c
