"""Sentiment data: the movie-review sentence-polarity corpus (shipped) and the IMDB reviews (downloaded).

Sentence polarity. `resources/movieReviewSnippets_GroundTruth.txt.gz` is, byte for byte (gzip-compressed), the
file of that name in `additional_resources/hutto_ICWSM_2014.tar.gz` inside the vaderSentiment 3.3.2 source
archive (MIT licence; see resources/PROVENANCE.md). Each line is `id <TAB> mean human score <TAB> sentence`:
10,605 snippets of Rotten Tomatoes reviews (essentially Pang & Lee's sentence-polarity set) scored by 20
raters on [-4, 4]. The label is the sign of the mean score (1 = positive, 0 = negative); the 37 snippets whose
mean is exactly 0 have no polarity and are dropped, leaving 10,568 (5,242 positive, 5,326 negative).

`load_polarity_splits(seed)` is THE split every sentiment experiment uses (recurrent and transformer alike): a
seeded permutation cut 80/10/10 into train/val/test, so test sentences are never seen in training.

IMDB. `load_imdb(root)` reads the canonical aclImdb_v1 layout (aclImdb/{train,test}/{pos,neg}/*.txt), and
`download_imdb(dest)` fetches and extracts the tarball from Stanford (needs a network; nothing here calls it).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pathlib
import tarfile
import urllib.request

import numpy as np

RESOURCES = pathlib.Path(__file__).parent / "resources"
POLARITY_FILE = RESOURCES / "movieReviewSnippets_GroundTruth.txt.gz"
# sha256 of the uncompressed file, as extracted from the vaderSentiment 3.3.2 sdist.
POLARITY_SHA256 = "c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350"
_VADER_MEMBER = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"


def parse_polarity(text: str, source: str = "<text>") -> tuple[list[str], np.ndarray]:
    """Parse `id <TAB> score <TAB> sentence` lines into (sentences, scores float64[N]).

    A malformed line raises a ValueError naming `source` and the line number.
    """
    sentences, scores = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise ValueError(f"{source}: line {lineno}: expected 3 tab-separated fields, got {len(parts)}")
        try:
            score = float(parts[1])
        except ValueError:
            raise ValueError(f"{source}: line {lineno}: score {parts[1]!r} is not a number") from None
        sentences.append(parts[2].strip())
        scores.append(score)
    return sentences, np.asarray(scores, dtype=np.float64)


def load_polarity(path: str | os.PathLike | None = None, *,
                  verify: bool = True) -> tuple[list[str], np.ndarray]:
    """All polarity sentences with a non-zero mean score: (texts, labels int32[N]) with 1 = positive."""
    path = pathlib.Path(path) if path is not None else POLARITY_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: reinstall seqjax (it ships this file) or rebuild it from the vaderSentiment "
            "source archive: `pip download --no-deps --no-binary :all: vaderSentiment==3.3.2` then "
            "seqjax.data.sentiment.extract_from_vader_sdist(<the .tar.gz>, <path>)")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: corrupt or truncated file ({e})") from None
    if verify and path == POLARITY_FILE and hashlib.sha256(raw).hexdigest() != POLARITY_SHA256:
        raise ValueError(f"{path}: checksum mismatch, the file is corrupt "
                         f"(expected sha256 {POLARITY_SHA256})")
    sentences, scores = parse_polarity(raw.decode("utf-8"), str(path))
    keep = scores != 0.0  # a zero mean score carries no polarity
    texts = [s for s, k in zip(sentences, keep, strict=True) if k]
    return texts, (scores[keep] > 0).astype(np.int32)


def load_polarity_splits(seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                         path: str | os.PathLike | None = None) -> dict[str, tuple[list[str], np.ndarray]]:
    """{'train'|'val'|'test': (texts, labels int32[N])}: a seeded permutation cut by `fractions`.

    The same seed gives the same split on every machine (NumPy's PCG64 default_rng), so experiments that share
    a seed share their test sentences.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions: expected three non-negative numbers summing to 1, got {fractions}")
    texts, labels = load_polarity(path)
    order = np.random.default_rng(seed).permutation(len(texts))
    n_train = int(round(fractions[0] * len(texts)))
    n_val = int(round(fractions[1] * len(texts)))
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    return {name: ([texts[i] for i in idx], labels[idx]) for name, idx in parts.items()}


def extract_from_vader_sdist(archive: str | os.PathLike, dest: str | os.PathLike) -> pathlib.Path:
    """Rebuild the shipped polarity file from a vaderSentiment source archive (.tar.gz); returns `dest`.

    The archive holds additional_resources/hutto_ICWSM_2014.tar.gz, which holds the ground-truth file; it is
    written gzip-compressed to `dest`.
    """
    with tarfile.open(archive, "r:gz") as outer:
        inner_member = next((m for m in outer.getmembers()
                             if m.name.endswith("additional_resources/hutto_ICWSM_2014.tar.gz")), None)
        if inner_member is None:
            raise ValueError(f"{archive}: no additional_resources/hutto_ICWSM_2014.tar.gz inside")
        inner_bytes = outer.extractfile(inner_member).read()
    import io

    with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
        try:
            data = inner.extractfile(_VADER_MEMBER).read()
        except KeyError:
            raise ValueError(f"{archive}: hutto_ICWSM_2014.tar.gz has no {_VADER_MEMBER}") from None
    dest = pathlib.Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(gzip.compress(data, mtime=0))
    return dest


# ---------------------------------------------------------------------------------------------------- IMDB


def load_imdb(root: str | os.PathLike, split: str = "train",
              max_per_class: int | None = None) -> tuple[list[str], np.ndarray]:
    """(texts, labels int32[N]) from aclImdb/<split>/{neg,pos}/*.txt under `root` (label 1 = pos).

    `root` may be the directory holding `aclImdb/` or `aclImdb/` itself. Files are read in sorted order (neg
    first) so the result is deterministic; `<br />` tags are replaced by spaces.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    root = pathlib.Path(root)
    base = root / "aclImdb" if (root / "aclImdb").is_dir() else root
    texts, labels = [], []
    for label, name in ((0, "neg"), (1, "pos")):
        folder = base / split / name
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is missing: expected the aclImdb_v1 layout "
                                    f"aclImdb/{{train,test}}/{{pos,neg}}/*.txt; get it with "
                                    f"seqjax.data.sentiment.download_imdb({str(root)!r}) ({IMDB_URL})")
        files = sorted(folder.glob("*.txt"))[:max_per_class]
        for f in files:
            try:
                text = f.read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{f}: not valid UTF-8 ({e})") from None
            texts.append(text.replace("<br />", " ").strip())
            labels.append(label)
    return texts, np.asarray(labels, dtype=np.int32)


def extract_imdb(archive: str | os.PathLike, dest: str | os.PathLike) -> pathlib.Path:
    """Extract an aclImdb tarball into `dest` (members outside `dest` are refused); returns dest/aclImdb."""
    dest = pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f"{archive}: corrupt or unreadable tarball ({e})") from None
    if not (dest / "aclImdb").is_dir():
        raise ValueError(f"{archive}: no aclImdb/ folder inside")
    return dest / "aclImdb"


def download_imdb(dest: str | os.PathLike, url: str = IMDB_URL, force: bool = False) -> pathlib.Path:
    """Download (about 84 MB) and extract the IMDB tarball into `dest`; returns dest/aclImdb.

    `url` may be any URL urllib opens, including file:// (the tests use one). Skips work already done.
    """
    dest = pathlib.Path(dest)
    if (dest / "aclImdb").is_dir() and not force:
        return dest / "aclImdb"
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "aclImdb_v1.tar.gz"
    if force or not archive.exists():
        tmp = archive.with_suffix(".part")
        with urllib.request.urlopen(url) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        tmp.replace(archive)  # only a complete download gets the final name
    return extract_imdb(archive, dest)
