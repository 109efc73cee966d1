"""NNX building blocks over the pure core: they declare parameters (with their roles) and call pure functions.

Every module's `__call__` takes `key=None`: dropout is active iff a key is given (training). Modules split the
key for their children (`seqjax.dropout.split_keys`), so a train step stays a pure function of
(params, batch, key). Rates and kernel choices are constructor arguments, fixed when the module is built.
"""
from seqjax.nn.embedding import Embedding, PositionEmbedding
from seqjax.nn.linear import MLP, Dense, LayerNorm
from seqjax.nn.params import Bias, ClassToken, Kernel, Norm, ParamTree, Position, count_params
from seqjax.nn.recurrent import GRU, LSTM, RNN, Bidirectional, RecurrentLayer, SimpleRNN

__all__ = ["Bias", "ClassToken", "Dense", "Embedding", "Kernel", "LayerNorm", "MLP", "Norm", "ParamTree",
           "Position", "PositionEmbedding", "count_params",
           "Bidirectional", "GRU", "LSTM", "RNN", "RecurrentLayer", "SimpleRNN"]
