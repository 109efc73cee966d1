"""Tokenizers that turn text into padded integer arrays: a word tokenizer and a character vocabulary.

Both reserve small ids for special symbols and pad on the right, returning `(ids int32[N, T], lengths
int32[N])` so that models can take `lengths` directly (ARCHITECTURE.md: right padding, lengths int[B]).

    tok = WordTokenizer.fit(train_texts, min_count=2)          # vocabulary from the training split only
    ids, lengths = tok.encode(texts, max_len=60)               # unknown words -> tok.unk_id
    vocab = CharVocab.fit(words, specials=("<pad>", "<bos>", "<eos>"))
    ids, lengths = vocab.encode(words, add_bos=False, add_eos=True)
"""
from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Sequence

import numpy as np

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"

# Lower-cased words, numbers, and English clitics split off the way the Penn Treebank does ("do" "n't",
# "it" "'s"); any other non-space character is its own token so punctuation like "!" and "?" stays visible.
_WORD_RE = re.compile(r"[a-z0-9]+(?=n't\b)|n't\b|'(?:s|re|ve|ll|d|m)\b|[a-z0-9]+(?:-[a-z0-9]+)*|[^\sa-z0-9]")


def word_split(text: str) -> list[str]:
    """Lower-case `text` and split it into word and punctuation tokens ("Don't stop!" -> do n't stop !)."""
    return _WORD_RE.findall(text.lower())


# Any script, case kept: letter/digit runs (inner hyphens kept, "au-dessus") and every other character alone.
_CASED_WORD_RE = re.compile(r"[^\W_]+(?:-[^\W_]+)*|\S")
_NO_SPACE_BEFORE = frozenset(",.;:!?)]'")
_NO_SPACE_AFTER = frozenset("([-'")


def split_words(text: str) -> list[str]:
    """Case-kept words and punctuation of any language ("L'Éternel dit:" -> L ' Éternel dit :)."""
    return _CASED_WORD_RE.findall(text)


def join_words(words: Sequence[str]) -> str:
    """Text from `split_words` tokens: no space before closing punctuation or after "(" and apostrophes.

    The inverse of `split_words` on text written that way ("L'Éternel dit: (oui)"), and a readable
    detokenisation of word-by-word output for BLEU, whose own tokenizer splits punctuation off again.
    """
    out = ""
    for w in words:
        if out and w[:1] not in _NO_SPACE_BEFORE and out[-1] not in _NO_SPACE_AFTER:
            out += " "
        out += w
    return out


def _pad(seqs: Sequence[Sequence[int]], max_len: int | None, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad (and right-truncate) int sequences to ids int32[N, T] with lengths int32[N]."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int32)
    T = int(lengths.max(initial=0)) if max_len is None else int(max_len)
    if T < 0:
        raise ValueError(f"max_len: expected a non-negative int, got {max_len}")
    lengths = np.minimum(lengths, T).astype(np.int32)
    ids = np.full((len(seqs), T), pad_id, dtype=np.int32)
    for i, s in enumerate(seqs):
        ids[i, : lengths[i]] = s[: lengths[i]]
    return ids, lengths


class WordTokenizer:
    """Word-level vocabulary: id 0 is padding, id 1 is out-of-vocabulary, then words by falling frequency.

    Build it with `fit` on the training split only, so validation and test words unseen in training map to
    `unk_id` exactly as they would for a deployed model.
    """

    def __init__(self, words: Sequence[str]):
        self.itos: list[str] = [PAD, UNK, *words]
        if len(set(self.itos)) != len(self.itos):
            raise ValueError("words: the vocabulary has duplicates or contains a special token")
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}
        self.pad_id, self.unk_id = 0, 1

    @classmethod
    def fit(cls, texts: Iterable[str], *, min_count: int = 1, max_size: int | None = None) -> WordTokenizer:
        """Vocabulary of words seen at least `min_count` times, most frequent first (ties alphabetical)."""
        counts = collections.Counter(w for t in texts for w in word_split(t))
        words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[: max(0, max_size - 2)]
        return cls(words)

    def __len__(self) -> int:
        return len(self.itos)

    def tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        return [self.stoi.get(w, self.unk_id) for w in tokens]

    def encode(self, texts: Sequence[str], max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """ids int32[N, T], lengths int32[N]; texts longer than `max_len` are truncated (keep their start)."""
        if isinstance(texts, str):
            raise ValueError("texts: expected a sequence of strings, got a single str")
        return _pad([self.tokens_to_ids(word_split(t)) for t in texts], max_len, self.pad_id)

    def decode(self, ids: np.ndarray, lengths: np.ndarray | None = None) -> list[str]:
        """Space-joined tokens of each row (up to its length, or up to the first padding id)."""
        ids = np.asarray(ids)
        out = []
        for i, row in enumerate(ids):
            n = int(lengths[i]) if lengths is not None else int(np.argmax(np.append(row, 0) == self.pad_id))
            out.append(" ".join(self.itos[int(j)] for j in row[:n]))
        return out


class CharVocab:
    """Character vocabulary: the `specials` first (ids 0..), then the characters seen, in sorted order.

    `pad_id`, `bos_id`, `eos_id`, `unk_id` are the ids of "<pad>", "<bos>", "<eos>", "<unk>" when those are
    among the specials, else None. Without "<unk>", encoding an unseen character raises a ValueError naming
    it. Symbols need not be single characters: `fit` also takes sequences of strings (e.g. ARPAbet phonemes).
    """

    def __init__(self, symbols: Sequence[str], specials: Sequence[str] = (PAD, BOS, EOS)):
        self.itos: list[str] = [*specials, *symbols]
        if len(set(self.itos)) != len(self.itos):
            raise ValueError(f"symbols: duplicates or clashes with specials {tuple(specials)}")
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}
        self.specials = tuple(specials)
        self.pad_id = self.stoi.get(PAD)
        self.bos_id = self.stoi.get(BOS)
        self.eos_id = self.stoi.get(EOS)
        self.unk_id = self.stoi.get(UNK)

    @classmethod
    def fit(cls, sequences: Iterable[Sequence[str]], specials: Sequence[str] = (PAD, BOS, EOS)) -> CharVocab:
        """Vocabulary of every symbol in `sequences` (strings are sequences of characters)."""
        seen = {s for seq in sequences for s in seq}
        return cls(sorted(seen - set(specials)), specials)

    def __len__(self) -> int:
        return len(self.itos)

    def to_ids(self, seq: Sequence[str]) -> list[int]:
        if self.unk_id is not None:
            return [self.stoi.get(s, self.unk_id) for s in seq]
        missing = sorted({s for s in seq if s not in self.stoi})
        if missing:
            raise ValueError(f"symbols not in the vocabulary: {missing!r} (vocabulary size {len(self)})")
        return [self.stoi[s] for s in seq]

    def encode(self, sequences: Sequence[Sequence[str]], *, add_bos: bool = False, add_eos: bool = False,
               max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """ids int32[N, T], lengths int32[N] (lengths count the BOS/EOS added); padding with `pad_id`."""
        if isinstance(sequences, str):
            raise ValueError("sequences: expected a sequence of strings/symbol lists, got a single str")
        if self.pad_id is None:
            raise ValueError(f"encode needs {PAD!r} among the specials, got {self.specials}")
        for flag, sid, name in ((add_bos, self.bos_id, BOS), (add_eos, self.eos_id, EOS)):
            if flag and sid is None:
                raise ValueError(f"add_{name[1:-1]}=True needs {name!r} among the specials, "
                                 f"got {self.specials}")
        seqs = [([self.bos_id] if add_bos else []) + self.to_ids(s) + ([self.eos_id] if add_eos else [])
                for s in sequences]
        return _pad(seqs, max_len, self.pad_id)

    def decode(self, ids: np.ndarray, *, join: str = "", strip_specials: bool = True) -> list[str]:
        """Each row up to its first EOS (if any), specials dropped, symbols joined with `join`."""
        out = []
        for row in np.asarray(ids):
            syms = []
            for j in row:
                j = int(j)
                if j == self.eos_id:
                    break
                if strip_specials and self.itos[j] in self.specials:
                    continue
                syms.append(self.itos[j])
            out.append(join.join(syms))
        return out
