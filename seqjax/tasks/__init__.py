"""Tasks: data, loss and evaluation of one kind of problem (the contract is in seqjax/task.py).

`config.task` names a task by a short name below or as "module:Class"; `config.data` holds exactly the
class's keyword arguments.
"""
from __future__ import annotations

TASKS = {
    "char_lm": "seqjax.tasks.char_lm:CharLMTask",
    "forecast": "seqjax.tasks.forecast:ForecastTask",
    "g2p": "seqjax.tasks.g2p:G2PTask",
    "image_classification": "seqjax.tasks.image_classification:ImageClassificationTask",
    "patterns": "seqjax.tasks.patterns:PatternsTask",
    "masked_lm": "seqjax.tasks.mlm:MaskedLMTask",
    "sentiment": "seqjax.tasks.sentiment:SentimentTask",
    "translation": "seqjax.tasks.translation:TranslationTask",
}


def get(name: str) -> type:
    from seqjax.configs import import_object

    return import_object(name, TASKS, "config.task")
