"""Sentence-polarity corpus (shipped copy) and the IMDB loader (on a tiny tarball the test writes)."""
import gzip
import io
import pathlib
import tarfile

import numpy as np
import pytest

from seqjax.data import sentiment


def test_shipped_polarity_corpus():
    texts, labels = sentiment.load_polarity()
    assert len(texts) == len(labels) == 10_605 - 37  # exact-zero scores dropped
    assert labels.dtype == np.int32 and set(np.unique(labels)) == {0, 1}
    assert int(labels.sum()) == 5242
    assert "Effective but too tepid biopic" in texts


def test_polarity_splits_are_seeded_disjoint_and_cover_everything():
    a = sentiment.load_polarity_splits(seed=0)
    b = sentiment.load_polarity_splits(seed=0)
    c = sentiment.load_polarity_splits(seed=1)
    assert [len(a[k][0]) for k in ("train", "val", "test")] == [8454, 1057, 1057]
    assert a["test"][0] == b["test"][0] and a["test"][0] != c["test"][0]
    texts, _ = sentiment.load_polarity()
    assert sorted(a["train"][0] + a["val"][0] + a["test"][0]) == sorted(texts)
    # Disjoint as sentences too (except for verbatim duplicates inside the corpus itself).
    dupes = len(texts) - len(set(texts))
    assert len(set(a["train"][0]) & set(a["test"][0])) <= dupes


def test_parse_polarity_and_sign_labels(tmp_path):
    p = tmp_path / "gt.txt"
    p.write_text("1\t2.5\tgood film\r\n2\t-0.4\tdull\r\n3\t0.0\tneutral\r\n", encoding="utf-8")
    texts, labels = sentiment.load_polarity(p)
    assert texts == ["good film", "dull"]
    np.testing.assert_array_equal(labels, [1, 0])


def test_corrupt_polarity_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("1\tnot-a-number\tx\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.txt: line 1"):
        sentiment.load_polarity(bad)
    truncated = tmp_path / "t.txt.gz"
    truncated.write_bytes(gzip.compress(b"1\t1.0\tok\n")[:12])
    with pytest.raises(ValueError, match="t.txt.gz"):
        sentiment.load_polarity(truncated)
    with pytest.raises(FileNotFoundError, match="vaderSentiment"):
        sentiment.load_polarity(tmp_path / "missing.txt.gz")


def _tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_extract_from_a_vader_sdist_shaped_archive(tmp_path):
    rows = b"1\t1.5\tfine\n2\t-2\tbad\n"
    inner = _tar_bytes({"hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt": rows})
    outer = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    member = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
    outer.write_bytes(_tar_bytes({member: inner}))
    dest = sentiment.extract_from_vader_sdist(outer, tmp_path / "out" / "gt.txt.gz")
    texts, labels = sentiment.load_polarity(dest)
    assert texts == ["fine", "bad"] and labels.tolist() == [1, 0]


def _imdb_tarball(path: pathlib.Path):
    files = {}
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            for i in range(2):
                files[f"aclImdb/{split}/{label}/{i}_{7 if label == 'pos' else 2}.txt"] = (
                    f"{split} {label} review {i}<br />line two".encode())
    files["aclImdb/README"] = b"tiny"
    path.write_bytes(_tar_bytes(files))


def test_imdb_download_and_load_from_a_tiny_tarball(tmp_path):
    archive = tmp_path / "src" / "aclImdb_v1.tar.gz"
    archive.parent.mkdir()
    _imdb_tarball(archive)
    root = sentiment.download_imdb(tmp_path / "data", url=archive.as_uri())
    assert root.name == "aclImdb" and (root / "train" / "pos").is_dir()
    texts, labels = sentiment.load_imdb(tmp_path / "data", "test")
    assert labels.tolist() == [0, 0, 1, 1]
    assert texts[0] == "test neg review 0 line two"  # <br /> replaced
    texts_b, _ = sentiment.load_imdb(root, "train", max_per_class=1)
    assert texts_b == ["train neg review 0 line two", "train pos review 0 line two"]


def test_imdb_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="download_imdb"):
        sentiment.load_imdb(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        sentiment.load_imdb(tmp_path, "dev")
    bad = tmp_path / "broken.tar.gz"
    bad.write_bytes(b"not a tarball")
    with pytest.raises(ValueError, match="broken.tar.gz"):
        sentiment.extract_imdb(bad, tmp_path / "x")
