"""Translation English -> French over parallel sentences: the pyrealb corpus (words) or the Bible (subwords).

Corpora (`corpus`):
- "pyrealb": `seqjax.data.pyrealb_corpus.generate(seed, num_train, num_eval, num_eval, num_held_out)`, the
  course's "The big red dog barks." / "Le gros chien rouge aboie." at scale; tokens are the realised words
  (the gold alignments are between words), vocabularies from every split's words (the lexicon is closed;
  what val/test hold out is adjective-noun combinations, not words). Each pair also carries its gold
  alignment as `sure`, `possible` bool[T, S] (target word t, source word s) for the AER.
  Every source ends with EOS (as in fairseq): a token without a word where cross-attention can rest, left
  out of the alignments (each target word is linked to the source *word* it attends to most).
- "bible": WEB -> LSG verse pairs (`seqjax.data.bible`, both sides at most `max_words` words), split by book
  (unseen test books, `bible.DEFAULT_TEST_BOOKS`) or at random (`split="random"`, `seed`); one SentencePiece
  unigram model per language with `vocab_size` pieces, trained on the training split only. The models live
  in the run's workdir (`subword_en.model`, `subword_fr.model`): `use_workdir` (called by the trainer before
  training and by `load_run`) saves them on a run's first start and loads them on resume and in the CLIs.
Keys of the other corpus must keep their defaults (a changed one is an error, not silently ignored).

Arrays: src = x <eos> int[N, S], tgt_in = <bos> y, tgt_out = y <eos>, lengths; model: "encoder_decoder"
or "rnn_seq2seq" (`model(src, src_lengths, tgt_in)` -> logits, `translate(src, src_lengths, T, beam_size)`).

Periodic evaluation (train.eval_every) on pyrealb also measures the AER of each decoder layer's
head-averaged cross-attention (teacher forcing; `aer_layer<l>` in metrics.jsonl: the mean over the eval
batches of each batch's AER), which shows when alignment emerges. The final report (`evaluate`, in
translation_eval.py): BLEU/chrF (sacrebleu, detokenised) with greedy and beam decoding, exact match, AER per
layer (head-averaged and best head), the baselines copy-the-source and IBM Model 1 word by word, per-sentence
scores and figures in the workdir.
"""
from __future__ import annotations

import functools
import inspect
import os
import tempfile

import numpy as np

from seqjax import alignment, losses, masks
from seqjax.data.tokenize import BOS, EOS, PAD, CharVocab
from seqjax.task import Figure

CORPORA = ("pyrealb", "bible")
SPLITS = ("book", "random")
PYREALB_KEYS = ("num_train", "num_eval", "num_held_out")
BIBLE_KEYS = ("split", "vocab_size", "max_words", "max_train", "max_eval")
SIDES = ("en", "fr")


@functools.lru_cache(maxsize=2)
def _bible_pairs():
    from seqjax.data import bible

    return tuple(bible.load_pairs())


def _spread(items: list, limit: int) -> list:
    """At most `limit` items evenly spread over `items` (every book of a split stays represented)."""
    if not limit or limit >= len(items):
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


class TranslationTask:
    """Arguments (config.data): see __init__; the module docstring says what the task does."""

    HEADLINE = (
        Figure("test_bleu", "test BLEU (sacrebleu, detokenised)", "higher",
               baselines=(("test_ibm1_bleu", "IBM Model 1 word by word"), ("test_copy_bleu", "copy source")),
               also=(("test_bleu_greedy", "greedy"), ("test_chrf", "chrF"))),
        Figure("test_exact_match", "test exact match (held-out adjective-noun pairs)", "higher", unit="%",
               baselines=(("test_ibm1_exact_match", "IBM Model 1"),)),
        Figure("test_aer_best_layer", "test AER of the best layer's head-averaged cross-attention", "lower",
               unit="%", baselines=(("test_ibm1_aer", "IBM Model 1 Viterbi"),),
               also=(("test_aer_best_head", "best single head"),)),
    )

    def __init__(self, *, corpus: str = "pyrealb", seed: int = 0, num_train: int = 8000, num_eval: int = 500,
                 num_held_out: int = 12, split: str = "book", vocab_size: int = 4000, max_words: int = 20,
                 max_train: int = 0, max_eval: int = 0, label_smoothing: float = 0.0, beam_size: int = 4):
        """The config keys.

        Args:
            corpus: "pyrealb" (generated, word tokens, gold alignments) or "bible" (WEB -> LSG, subwords).
            seed: pyrealb: the generator's seed; bible: the seed of `split="random"`.
            num_train: pyrealb: training sentences generated.
            num_eval: pyrealb: val sentences and test sentences generated (each).
            num_held_out: pyrealb: adjective-noun pairs held out of training (each val/test sentence has one).
            split: bible: "book" (unseen test books) or "random" (verses at random, for comparison).
            vocab_size: bible: SentencePiece pieces per language (4 special ids included).
            max_words: bible: keep the pairs with at most this many words on both sides.
            max_train: bible: use at most N training pairs (0 = all).
            max_eval: bible: use at most N val and N test pairs, spread over their books (0 = all).
            label_smoothing: label smoothing of the training loss (evaluation loss is plain).
            beam_size: beams of the final evaluation's decoding (greedy is always reported too).
        """
        if corpus not in CORPORA:
            raise ValueError(f"corpus: expected one of {CORPORA}, got {corpus!r}")
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
        given = dict(num_train=num_train, num_eval=num_eval, num_held_out=num_held_out, split=split,
                     vocab_size=vocab_size, max_words=max_words, max_train=max_train, max_eval=max_eval,
                     seed=seed)
        defaults = {k: p.default for k, p in inspect.signature(TranslationTask.__init__).parameters.items()}
        other = BIBLE_KEYS if corpus == "pyrealb" else PYREALB_KEYS
        if corpus == "bible" and split == "book":
            other = (*other, "seed")  # the book split draws nothing
        changed = [k for k in other if given[k] != defaults[k]]
        if changed:
            raise ValueError(f"{', '.join(changed)}: not used with corpus={corpus!r}"
                             + (f", split={split!r}" if "seed" in changed else "") + "; leave the default")
        if beam_size < 1:
            raise ValueError(f"beam_size: expected >= 1, got {beam_size}")
        self.corpus, self.split = corpus, split
        self.label_smoothing, self.beam_size = float(label_smoothing), int(beam_size)
        self.tokenizers = None  # bible: {"en", "fr"} SubwordTokenizer
        if corpus == "pyrealb":
            self._init_pyrealb(seed, num_train, num_eval, num_held_out)
        else:
            self._init_bible(seed, vocab_size, max_words, max_train, max_eval)

    # ------------------------------------------------------------------------------------------ pyrealb
    def _init_pyrealb(self, seed, num_train, num_eval, num_held_out):
        from seqjax.data import pyrealb_corpus as pc

        c = pc.generate(seed=seed, num_train=num_train, num_val=num_eval, num_test=num_eval,
                        num_held_out=num_held_out)
        self.held_out_pairs = c.held_out_pairs
        self.pairs = {"train": c.train, "val": c.val, "test": c.test}
        every = [p for ps in self.pairs.values() for p in ps]
        self.src_vocab = CharVocab.fit([p.en for p in every], specials=(PAD, BOS, EOS))
        self.tgt_vocab = CharVocab.fit([p.fr for p in every], specials=(PAD, BOS, EOS))
        self.S = max(len(p.en) for ps in self.pairs.values() for p in ps) + 1  # + EOS
        self.T = max(len(p.fr) for ps in self.pairs.values() for p in ps) + 1
        self.sources = {k: [pc.detokenize(p.en) for p in ps] for k, ps in self.pairs.items()}
        self.references = {k: [pc.detokenize(p.fr) for p in ps] for k, ps in self.pairs.items()}
        self.padded_lengths = {}  # the gold alignments are [T, S]: no length buckets
        self._splits = {k: self._encode_pyrealb(ps) for k, ps in self.pairs.items()}

    def _encode_pyrealb(self, pairs):
        src, src_lengths = self.src_vocab.encode([p.en for p in pairs], add_eos=True, max_len=self.S)
        tgt_in, _ = self.tgt_vocab.encode([p.fr for p in pairs], add_bos=True, max_len=self.T)
        tgt_out, tgt_lengths = self.tgt_vocab.encode([p.fr for p in pairs], add_eos=True, max_len=self.T)
        sure = np.zeros((len(pairs), self.T, self.S), bool)  # [N, T, S]: target word t, source word s
        possible = np.zeros_like(sure)
        for n, p in enumerate(pairs):
            for links, out in ((p.align, sure), (p.possible, possible)):
                for s, t in links:
                    out[n, t, s] = True
        return {"src": src, "src_lengths": src_lengths, "tgt_in": tgt_in, "tgt_out": tgt_out,
                "tgt_lengths": tgt_lengths, "sure": sure, "possible": possible}

    # -------------------------------------------------------------------------------------------- bible
    def _init_bible(self, seed, vocab_size, max_words, max_train, max_eval):
        from seqjax.data import bible

        pairs = bible.max_words(list(_bible_pairs()), max_words)
        split = (bible.split_by_book(pairs) if self.split == "book"
                 else bible.random_split(pairs, seed=seed, val_fraction=0.02, test_fraction=0.04))
        self.pairs = {"train": split["train"][:max_train] if max_train else split["train"],
                      "val": _spread(split["val"], max_eval), "test": _spread(split["test"], max_eval)}
        self.sources = {k: [p.en for p in ps] for k, ps in self.pairs.items()}
        self.references = {k: [p.fr for p in ps] for k, ps in self.pairs.items()}
        self.vocab_size = int(vocab_size)
        self.padded_lengths = {"src": "src_lengths", "tgt_in": "tgt_lengths", "tgt_out": "tgt_lengths"}
        self._set_tokenizers(self._train_tokenizers())

    def _train_tokenizers(self) -> dict:
        from seqjax.data.subword import SubwordTokenizer

        out = {}
        with tempfile.TemporaryDirectory() as tmp:  # the bytes are kept; use_workdir saves them in the run
            for side in SIDES:
                texts = [getattr(p, side) for p in self.pairs["train"]]
                path = os.path.join(tmp, f"subword_{side}.model")
                out[side] = SubwordTokenizer.train(texts, path, vocab_size=self.vocab_size)
                out[side].model_bytes = open(path, "rb").read()
        return out

    def _set_tokenizers(self, tokenizers: dict) -> None:
        self.tokenizers = tokenizers
        en, fr = tokenizers["en"], tokenizers["fr"]
        arrays = {k: (en.encode_batch(self.sources[k], add_eos=True),
                      fr.encode_batch(self.references[k], add_bos=True),
                      fr.encode_batch(self.references[k], add_eos=True)) for k in self.pairs}
        self.S = max(int(src[1].max()) for src, _, _ in arrays.values())
        self.T = max(int(out[1].max()) for _, _, out in arrays.values())

        def widen(ids, width):  # every split padded to the same S / T
            return np.pad(ids, ((0, 0), (0, width - ids.shape[1])), constant_values=fr.pad_id)

        self._splits = {k: {"src": widen(src[0], self.S), "src_lengths": src[1],
                            "tgt_in": widen(tgt_in[0], self.T), "tgt_out": widen(tgt_out[0], self.T),
                            "tgt_lengths": tgt_out[1]} for k, (src, tgt_in, tgt_out) in arrays.items()}

    def use_workdir(self, workdir: str) -> None:
        """Bible: save the subword models in `workdir` on a run's first start; load them from there when
        present (a resumed run, the CLIs), re-encoding the data if they differ from the ones trained here."""
        if self.corpus != "bible":
            return
        from seqjax.data.subword import SubwordTokenizer

        paths = {side: os.path.join(workdir, f"subword_{side}.model") for side in SIDES}
        present = [os.path.exists(p) for p in paths.values()]
        if all(present):
            loaded = {}
            for side, path in paths.items():
                loaded[side] = SubwordTokenizer.load(path)
                loaded[side].model_bytes = open(path, "rb").read()
            if any(loaded[s].model_bytes != self.tokenizers[s].model_bytes for s in SIDES):
                self._set_tokenizers(loaded)
        elif any(present):
            have = [p for p, e in zip(paths.values(), present, strict=True) if e]
            raise FileNotFoundError(f"{workdir}: has {have} but not its companion subword model: the run's "
                                    "tokenizers are incomplete")
        else:
            os.makedirs(workdir, exist_ok=True)
            for side, path in paths.items():
                tmp = path + ".tmp"
                with open(tmp, "wb") as f:
                    f.write(self.tokenizers[side].model_bytes)
                os.replace(tmp, path)

    # ------------------------------------------------------------------------------------ the contract
    def data(self):
        return self._splits

    def model_args(self):
        if self.tokenizers:
            fr = self.tokenizers["fr"]
            return {"src_vocab_size": self.tokenizers["en"].vocab_size, "tgt_vocab_size": fr.vocab_size,
                    "pad_id": fr.pad_id, "bos_id": fr.bos_id, "eos_id": fr.eos_id}
        return {"src_vocab_size": len(self.src_vocab), "tgt_vocab_size": len(self.tgt_vocab),
                "pad_id": self.tgt_vocab.pad_id, "bos_id": self.tgt_vocab.bos_id,
                "eos_id": self.tgt_vocab.eos_id}

    def loss(self, model, batch, key):
        aligned = key is None and "sure" in batch and _returns_attention(model)
        out = model(batch["src"], batch["src_lengths"], batch["tgt_in"], key=key,
                    **({"return_attention": True} if aligned else {}))
        logits, weights = out if aligned else (out, None)  # [B, T, V]
        T = batch["tgt_out"].shape[1]
        valid = masks.lengths_to_mask(batch["tgt_lengths"], T)  # [B, T]
        smoothing = self.label_smoothing if key is not None else 0.0
        loss = losses.softmax_cross_entropy(logits, batch["tgt_out"], valid, label_smoothing=smoothing)
        metrics = {"token_accuracy": losses.accuracy(logits, batch["tgt_out"], valid)}
        if aligned:
            # The words: neither side's EOS is aligned (the source EOS is where attention may rest).
            words = masks.lengths_to_mask(batch["tgt_lengths"] - 1, T)  # [B, T]
            src_words = masks.lengths_to_mask(batch["src_lengths"] - 1, batch["src"].shape[1])  # [B, S]
            for layer, w in enumerate(weights["cross"]):  # [B, N, T, S] per layer
                counts = alignment.aer_counts(w.mean(axis=1), batch["sure"], batch["possible"], words,
                                              src_words)
                metrics[f"aer_layer{layer}"] = alignment.aer_from_counts(*counts)
        return loss, metrics

    def evaluate(self, model, splits, workdir: str) -> dict[str, float]:
        from seqjax.tasks import translation_eval

        return translation_eval.evaluate(self, model, splits, workdir)

    # ------------------------------------------------------------------------------- text in, text out
    def encode_source(self, text: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """One source sentence -> (src int32[1, n], lengths int32[1], token labels), EOS last as in training;
        a clear error for words outside the pyrealb vocabulary or text longer than the training sources."""
        if self.tokenizers:
            tok = self.tokenizers["en"]
            ids = tok.encode(text)
            labels = [tok.id_to_piece(i) for i in ids]
        else:
            from seqjax.data.pyrealb_corpus import tokenize

            labels = tokenize(text)
            unknown = [w for w in labels if w not in self.src_vocab.stoi]
            if unknown:
                raise ValueError(f"text: words outside the pyrealb vocabulary: {unknown} (known: "
                                 f"{len(self.src_vocab) - 3} words such as 'dog', 'big', 'red', 'barks')")
            ids = self.src_vocab.to_ids(labels)
        if not ids or len(ids) >= self.S:
            raise ValueError(f"text: expected 1..{self.S - 1} source tokens, got {len(ids)}")
        ids = [*ids, self.tokenizers["en"].eos_id if self.tokenizers else self.src_vocab.eos_id]
        return np.array([ids], np.int32), np.array([len(ids)], np.int32), [*labels, EOS]

    def decode_target(self, ids) -> tuple[str, list[str]]:
        """Target ids (BOS dropped) -> (detokenised text, token labels), cut at the first EOS."""
        ids = [int(i) for i in ids]
        eos = self.tokenizers["fr"].eos_id if self.tokenizers else self.tgt_vocab.eos_id
        ids = ids[:ids.index(eos)] if eos in ids else ids
        if self.tokenizers:
            tok = self.tokenizers["fr"]
            ids = [i for i in ids if i not in (tok.pad_id, tok.bos_id)]
            return tok.decode(ids), [tok.id_to_piece(i) for i in ids]
        from seqjax.data.pyrealb_corpus import detokenize

        words = self.tgt_vocab.decode(np.array([ids + [eos]]), join=" ")[0].split()
        return detokenize(words), words


def _returns_attention(model) -> bool:
    return "return_attention" in inspect.signature(type(model).__call__).parameters

