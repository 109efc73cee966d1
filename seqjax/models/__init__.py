"""Models: one file per model, each an NNX module whose keyword arguments are its config keys.

`config.model_name` names a model by a short name below or as "module:Class"; `config.model` holds exactly
the class's keyword arguments (seqjax/configs.py), and the task supplies the ones that come from its data
(`task.model_args()`: vocabulary sizes, number of classes, ...). Named presets of the transformer models are
in `seqjax.models.variants`.
"""
from __future__ import annotations

MODELS = {
    # transformers
    "gpt": "seqjax.models.gpt:GPT",
    "encoder": "seqjax.models.encoder:Encoder",
    "transformer_classifier": "seqjax.models.encoder:TransformerClassifier",
    "masked_lm": "seqjax.models.masked_lm:MaskedLM",
    "encoder_decoder": "seqjax.models.encoder_decoder:EncoderDecoder",
    "vit": "seqjax.models.vit:ViT",
    # recurrent
    "forecaster": "seqjax.models.forecaster:Forecaster",
    "rnn_classifier": "seqjax.models.rnn_classifier:RNNClassifier",
    "rnn_seq2seq": "seqjax.models.rnn_seq2seq:RNNSeq2Seq",
    "pattern_models": "seqjax.models.patterns:PatternModels",
}


def get(name: str) -> type:
    from seqjax.configs import import_object

    return import_object(name, MODELS, "config.model_name")
