"""SentencePiece tokenizer: round trips (accents, punctuation), fixed special ids, determinism, errors."""
import numpy as np
import pytest

from seqjax.data.subword import SubwordTokenizer

TEXTS = ["Le gros chien rouge aboie.", "The big red dog barks.", "Les gros chiens rouges dormiront.",
         "Au commencement, Dieu créa les cieux et la terre.",
         "L'esprit de Dieu se mouvait au-dessus des eaux!",
         "Qui es-tu? -- Je suis; (dit-il) « là »."] * 3


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def tok(request, tmp_path_factory):
    return SubwordTokenizer.train(TEXTS, tmp_path_factory.mktemp("sp") / "m.model", vocab_size=60,
                                  model_type=request.param)


@pytest.mark.parametrize("text", [*TEXTS[:6], "chien rouge", "Dieu créa."])
def test_round_trip(tok, text):
    ids = tok.encode(text)
    assert ids and all(4 <= i < tok.vocab_size for i in ids)  # no special id, no unknown piece
    assert tok.decode(ids) == text


def test_special_ids_and_pieces(tok):
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert tok.vocab_size == 60
    assert tok.decode([tok.bos_id, *tok.encode("chien"), tok.eos_id, tok.pad_id]) == "chien"
    assert [tok.piece_to_id(tok.id_to_piece(i)) for i in range(tok.vocab_size)] == list(range(tok.vocab_size))
    assert "".join(tok.pieces("Le gros chien")).replace("▁", " ").strip() == "Le gros chien"
    assert tok.encode("Le gros chien ✓")[-1] == tok.unk_id  # a character never seen in training


def test_batches(tok):
    texts = ["chien rouge", "Le gros chien rouge aboie."]
    ids, lengths = tok.encode_batch(texts, add_bos=True, add_eos=True)
    assert ids.dtype == lengths.dtype == np.int32 and ids.shape == (2, int(lengths.max()))
    for row, n, text in zip(ids, lengths, texts, strict=True):
        assert list(row[:n]) == [tok.bos_id, *tok.encode(text), tok.eos_id] and set(row[n:]) <= {tok.pad_id}
    assert tok.decode_batch(ids) == texts
    assert tok.decode_batch(ids, lengths - 1) == texts  # cut before EOS
    cut, cut_lengths = tok.encode_batch(texts, max_len=2)
    assert cut.shape == (2, 2) and list(cut_lengths) == [min(2, len(tok.encode(t))) for t in texts]
    with pytest.raises(TypeError, match="single str"):
        tok.encode_batch("chien")
    with pytest.raises(ValueError, match=r"\[N, T\]"):
        tok.decode_batch(np.zeros(3, np.int32))


def test_errors(tok, tmp_path):
    with pytest.raises(KeyError, match="'zzzq' is not in the vocabulary"):
        tok.piece_to_id("zzzq")
    with pytest.raises(ValueError, match=r"\[60, -1\] outside \[0, 60\)"):
        tok.decode([5, 60, -1])
    with pytest.raises(FileNotFoundError, match="nope.model"):
        SubwordTokenizer.load(tmp_path / "nope.model")
    (tmp_path / "bad.model").write_bytes(b"this is not a model")
    with pytest.raises(ValueError, match="bad.model is not a readable SentencePiece model"):
        SubwordTokenizer.load(tmp_path / "bad.model")
    with pytest.raises(ValueError, match="model_type"):
        SubwordTokenizer.train(TEXTS, tmp_path / "x.model", vocab_size=60, model_type="wordpiece")
    with pytest.raises(ValueError, match="vocab_size=5000"):
        SubwordTokenizer.train(TEXTS, tmp_path / "x.model", vocab_size=5000)
    with pytest.raises(ValueError, match="no non-empty"):
        SubwordTokenizer.train(["", "  "], tmp_path / "x.model", vocab_size=60)


def test_deterministic_and_trained_on_given_texts_only(tmp_path):
    a = SubwordTokenizer.train(TEXTS, tmp_path / "a.model", vocab_size=60)
    b = SubwordTokenizer.train(iter(TEXTS), tmp_path / "b" / "b.model", vocab_size=60)
    assert (tmp_path / "a.model").read_bytes() == (tmp_path / "b" / "b.model").read_bytes()
    loaded = SubwordTokenizer.load(tmp_path / "a.model")
    assert loaded.encode(TEXTS[3]) == a.encode(TEXTS[3]) and loaded.vocab_size == b.vocab_size
    other = SubwordTokenizer.train(["zebra quartz vixen"] * 5, tmp_path / "o.model", vocab_size=18)
    assert other.unk_id in other.encode("chien")  # letters absent from its texts are unknown to it
