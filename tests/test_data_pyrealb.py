"""The pyrealb EN/FR corpus: realisation, alignments by construction, held-out adjective-noun pairs."""
import pytest

pytest.importorskip("pyrealb")
from seqjax.data import pyrealb_corpus as pc  # noqa: E402


def _spec(**kw):
    base = dict(det=0, pre=0, post=0, noun=0, plural=False, verb=(False, 0), tense="present", obj=None)
    return pc._Spec(**{**base, **kw})  # the big red dog barks


def test_the_big_red_dog():
    p = pc.realise(_spec())
    assert pc.detokenize(p.en) == "The big red dog barks."
    assert pc.detokenize(p.fr) == "Le gros chien rouge aboie."
    links = {(p.en[i], p.fr[j]) for i, j in p.align}
    assert links == {("the", "le"), ("big", "gros"), ("red", "rouge"), ("dog", "chien"), ("barks", "aboie"),
                     (".", ".")}
    assert p.possible == ()
    assert pc.tokenize("The big red dog barks.") == list(p.en)


def test_plural_future_past_and_object():
    p = pc.realise(_spec(plural=True, tense="future"))
    assert pc.detokenize(p.fr) == "Les gros chiens rouges dormiront." or p.fr[-2] == "aboieront"
    # "will bark" -> "aboieront": both English verb tokens link to the one French verb.
    assert {(p.en[i], p.fr[j]) for i, j in p.align if p.en[i] in ("will", "bark")} == \
        {("will", "aboieront"), ("bark", "aboieront")}
    p = pc.realise(_spec(det=1, plural=True, tense="past", verb=(True, 0), obj=(0, None, None, 2, False)))
    assert pc.detokenize(p.en) == "Big red dogs saw the bird."
    assert pc.detokenize(p.fr) == "Des gros chiens rouges ont vu l'oiseau."
    assert {(p.en[i], p.fr[j]) for i, j in p.align} == {
        ("big", "gros"), ("red", "rouges"), ("dogs", "chiens"), ("saw", "ont"), ("saw", "vu"), ("the", "l'"),
        ("bird", "oiseau"), (".", ".")}
    assert {(p.en[i], p.fr[j]) for i, j in p.possible} == {("dogs", "des")}


def test_held_out_pairs_and_determinism():
    c = pc.generate(seed=1, num_train=300, num_val=20, num_test=20, num_held_out=5)
    held = set(c.held_out_pairs)
    assert len(held) == 5 and len(c.train) == 300 and len(c.val) == len(c.test) == 20
    assert not any(held.intersection(p.pairs) for p in c.train)
    assert all(held.intersection(p.pairs) for p in c.val + c.test)
    assert len({p.en for p in c.train + c.val + c.test}) == 340
    for p in c.train[:50]:
        assert all(0 <= i < len(p.en) and 0 <= j < len(p.fr) for i, j in p.align + p.possible)
    again = pc.generate(seed=1, num_train=300, num_val=20, num_test=20, num_held_out=5)
    assert again == c
    with pytest.raises(ValueError, match="num_held_out"):
        pc.generate(num_held_out=1000)
