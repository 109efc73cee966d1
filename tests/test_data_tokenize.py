"""Word tokenizer and character vocabulary: round trips, padding, OOV, and errors."""
import numpy as np
import pytest

from seqjax.data.tokenize import CharVocab, WordTokenizer, word_split


def test_word_split_handles_clitics_and_punctuation():
    assert word_split("Don't stop, it's GREAT!") == ["do", "n't", "stop", ",", "it", "'s", "great", "!"]
    assert word_split("a well-made film") == ["a", "well-made", "film"]


def test_vocabulary_is_frequency_ordered_from_training_texts():
    tok = WordTokenizer.fit(["b a a", "c a b"], min_count=1)
    assert tok.itos == ["<pad>", "<unk>", "a", "b", "c"]  # a:3, b:2, c:1
    tok2 = WordTokenizer.fit(["b a a", "c a b"], min_count=2)
    assert tok2.itos == ["<pad>", "<unk>", "a", "b"]
    assert len(WordTokenizer.fit(["b a a", "c a b"], max_size=3)) == 3


def test_encode_pads_right_and_maps_unknown_words():
    tok = WordTokenizer.fit(["the film is good", "the plot is bad"])
    ids, lengths = tok.encode(["the film", "an awful film is good", ""], max_len=4)
    assert ids.dtype == np.int32 and lengths.dtype == np.int32
    assert ids.shape == (3, 4)
    np.testing.assert_array_equal(lengths, [2, 4, 0])  # the long text is truncated to max_len
    expected_row1 = [tok.unk_id, tok.unk_id, tok.stoi["film"], tok.stoi["is"]]
    np.testing.assert_array_equal(ids[1], expected_row1)
    assert (ids[0, 2:] == tok.pad_id).all() and (ids[2] == tok.pad_id).all()


def test_word_round_trip():
    texts = ["the film is good !", "a bad , bad plot"]
    tok = WordTokenizer.fit(texts)
    ids, lengths = tok.encode(texts)
    assert tok.decode(ids, lengths) == texts
    assert tok.decode(ids) == texts  # stops at the first pad


def test_encode_rejects_a_single_string():
    with pytest.raises(ValueError, match="texts"):
        WordTokenizer.fit(["a"]).encode("a b")


def test_char_vocab_round_trip_with_bos_eos():
    words = ["cat", "dog", "a"]
    v = CharVocab.fit(words)
    assert v.itos[:3] == ["<pad>", "<bos>", "<eos>"] and v.itos[3:] == sorted(set("catdog"))
    ids, lengths = v.encode(words, add_bos=True, add_eos=True)
    np.testing.assert_array_equal(lengths, [5, 5, 3])
    assert ids[2, 0] == v.bos_id and ids[2, 2] == v.eos_id and ids[2, 3] == v.pad_id
    assert v.decode(ids) == words


def test_char_vocab_over_symbol_lists():
    prons = [["K", "AE", "T"], ["D", "AO", "G"]]
    v = CharVocab.fit(prons, specials=("<pad>", "<bos>", "<eos>"))
    ids, _ = v.encode(prons, add_eos=True)
    assert v.decode(ids, join=" ") == ["K AE T", "D AO G"]


def test_char_vocab_unknown_symbols():
    v = CharVocab.fit(["abc"])
    with pytest.raises(ValueError, match=r"\['z'\]"):
        v.encode(["abz"])
    v_unk = CharVocab.fit(["abc"], specials=("<pad>", "<unk>"))
    ids, _ = v_unk.encode(["abz"])
    assert ids[0, 2] == v_unk.unk_id
    with pytest.raises(ValueError, match="<eos>"):
        v_unk.encode(["ab"], add_eos=True)
