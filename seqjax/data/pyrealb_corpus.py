"""A controlled English/French parallel corpus realised by pyrealb, word alignments known by construction.

The course's example, "The big red dog barks." / "Le gros chien rouge aboie.", at scale: one sentence
specification (subject noun phrase, verb, optional object noun phrase, number, tense) realised in both
languages by the pyrealb text realiser (`pip install pyrealb==3.3.1`: MIT code, CC-BY lexicons), which does
the agreement, conjugation, elision ("l'école") and French adjective placement (gros before the noun, rouge
after it) from its lexicons.

    corpus = generate(seed=0)                     # -> Corpus(train, val, test, held_out_pairs)
    corpus.train[0].en, corpus.train[0].fr        # ['the', 'big', 'red', 'dog', 'barks', '.'], [...]
    corpus.train[0].align                         # ((0, 0), (1, 1), (2, 3), (3, 2), (4, 4), (5, 5))

Tokens are the realised words, lower-cased, one per pyrealb terminal ("l'" is one token), plus the final
".". `tokenize(text)` splits raw text the same way (the CLI's input); `detokenize(tokens)` writes the sentence
back (capital first letter, no space before "." or after "l'").

Alignment by construction: every token belongs to one role of the specification: the subject's determiner,
each adjective (by lemma), the noun, the verb group, the object's determiner/adjective/noun, and the full
stop. An English token is aligned to every French token of the same role, and only to those (sure links). The
one role realised on one side only is the plural indefinite determiner ("dogs" / "des chiens"): it gets
possible links to its noun phrase's noun (AER's possible set is the sure links plus these). The verb group
is the one role with more than one word on a side: English "will sleep" (future) and French "ont dormi"
(passé composé, the French past used for the English simple past) are aligned all-to-all with their
counterpart ("dormiront"; "slept"), so the auxiliaries "will"/"ont" align with the whole verb.

Held-out combinations: `num_held_out` adjective-noun pairs (drawn with the seed) never modify each other in
the training split; every val and test sentence contains at least one of them (in either noun phrase), so
val/test measure generalisation to unseen adjective-noun combinations. Deterministic for a given seed.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

# (English lemma, French lemma). Nouns are animals and people, so that every verb fits every subject.
NOUNS = (("dog", "chien"), ("cat", "chat"), ("bird", "oiseau"), ("horse", "cheval"), ("mouse", "souris"),
         ("cow", "vache"), ("fox", "renard"), ("wolf", "loup"), ("rabbit", "lapin"), ("bear", "ours"),
         ("girl", "fille"), ("boy", "garçon"), ("woman", "femme"), ("king", "roi"), ("queen", "reine"),
         ("farmer", "fermier"))
# Size/age adjectives come first in English and before the noun in French (pyrealb's lexicon says so).
PRE_ADJECTIVES = (("big", "gros"), ("small", "petit"), ("old", "vieux"), ("young", "jeune"),
                  ("pretty", "joli"))
# Colour/state adjectives come second in English and after the noun in French.
POST_ADJECTIVES = (("red", "rouge"), ("black", "noir"), ("white", "blanc"), ("green", "vert"),
                   ("grey", "gris"), ("happy", "heureux"))
INTRANSITIVE = (("bark", "aboyer"), ("sleep", "dormir"), ("sing", "chanter"), ("run", "courir"),
                ("eat", "manger"), ("dance", "danser"), ("swim", "nager"), ("jump", "sauter"))
TRANSITIVE = (("see", "voir"), ("like", "aimer"), ("follow", "suivre"), ("watch", "regarder"),
              ("chase", "chasser"), ("find", "trouver"))
DETERMINERS = (("the", "le"), ("a", "un"))
# pyrealb tense codes: English simple past "ps" is rendered by the French passé composé "pc".
TENSES = {"present": ("p", "p"), "past": ("ps", "pc"), "future": ("f", "f")}

_TOKEN_RE = re.compile(r"[^\W\d_]+'|[^\W\d_]+|[.]")


class Pair(NamedTuple):
    """One sentence in both languages: token lists and the sure alignment links (en index, fr index)."""
    en: tuple[str, ...]
    fr: tuple[str, ...]
    align: tuple[tuple[int, int], ...]
    possible: tuple[tuple[int, int], ...]  # possible links beyond `align` (see the module docstring)
    pairs: tuple[tuple[str, str], ...]  # the (English adjective, English noun) combinations it contains


class Corpus(NamedTuple):
    train: list[Pair]
    val: list[Pair]
    test: list[Pair]
    held_out_pairs: tuple[tuple[str, str], ...]


def tokenize(text: str) -> list[str]:
    """Lower-case `text` and split it into words (an elided "l'" is one token) and full stops."""
    return _TOKEN_RE.findall(text.lower())


def detokenize(tokens: Sequence[str]) -> str:
    """Tokens -> a sentence: words joined by spaces, none before "." or after an elided "l'", capitalised."""
    out = ""
    for tok in tokens:
        if out and tok != "." and not out.endswith("'"):
            out += " "
        out += tok
    return out[:1].upper() + out[1:]


def _pyrealb():
    try:
        import pyrealb
    except ImportError:
        raise ImportError("the pyrealb corpus needs the pyrealb package: pip install pyrealb==3.3.1 "
                          "(or pip install 'seqjax[data]')") from None
    return pyrealb


class _Spec(NamedTuple):
    det: int
    pre: int | None  # index into PRE_ADJECTIVES, or None
    post: int | None
    noun: int
    plural: bool
    verb: tuple[bool, int]  # (transitive, index)
    tense: str
    obj: tuple[int, int | None, int | None, int, bool] | None  # det, pre, post, noun, plural


def _noun_phrase(p, lang: int, det, pre, post, noun, plural, roles: dict, prefix: str):
    """A pyrealb NP for language 0 (English) or 1 (French); `roles` maps each terminal's id to its role."""
    parts = [(p.D(DETERMINERS[det][lang]), prefix + "det")]
    if pre is not None:
        parts.append((p.A(PRE_ADJECTIVES[pre][lang]), prefix + "pre"))
    if post is not None:
        parts.append((p.A(POST_ADJECTIVES[post][lang]), prefix + "post"))
    parts.append((p.N(NOUNS[noun][lang]), prefix + "noun"))
    for t, role in parts:
        roles[id(t)] = role
    np_ = p.NP(*[t for t, _ in parts])
    return np_.n("p") if plural else np_


def _realise(p, spec: _Spec, lang: int) -> tuple[list[str], list[str]]:
    """(tokens, role of each token) of `spec` in language 0 (English) or 1 (French)."""
    (p.loadEn if lang == 0 else p.loadFr)()
    roles: dict[int, str] = {}
    subject = _noun_phrase(p, lang, spec.det, spec.pre, spec.post, spec.noun, spec.plural, roles, "s_")
    transitive, v = spec.verb
    verb = p.V((TRANSITIVE if transitive else INTRANSITIVE)[v][lang])
    roles[id(verb)] = "verb"
    vp = p.VP(verb, _noun_phrase(p, lang, *spec.obj, roles, "o_")) if transitive else p.VP(verb)
    s = p.S(subject, vp.t(TENSES[spec.tense][lang]))
    terminals = s.real()
    text = s.detokenize(terminals)
    tokens, token_roles = [], []
    for t in terminals:
        # Terminals the realiser adds (auxiliaries "will", "avoir") are verbs: the only ones it adds here.
        role = roles.get(id(t), "verb" if t.constType == "V" else None)
        if role is None or " " in t.realization.strip():
            raise RuntimeError(f"pyrealb: unexpected terminal {t.constType}({t.lemma!r}) -> "
                               f"{t.realization!r} in {text!r}")
        tokens.append(t.realization.strip().lower())
        token_roles.append(role)
    tokens.append(".")
    token_roles.append("stop")
    if tokenize(text) != tokens:  # the CLI tokenises raw text: it must give the training tokens
        raise RuntimeError(f"pyrealb: tokenize({text!r}) = {tokenize(text)} != terminals {tokens}")
    return tokens, token_roles


def realise(spec: _Spec) -> Pair:
    """Both realisations of `spec` and their alignment (every pair of tokens that share a role)."""
    p = _pyrealb()
    en, en_roles = _realise(p, spec, 0)
    fr, fr_roles = _realise(p, spec, 1)
    align = tuple((i, j) for i, a in enumerate(en_roles) for j, b in enumerate(fr_roles) if a == b)
    # A determiner realised on one side only (plural indefinite: "dogs" / "des chiens") may align with its
    # noun phrase's noun: a possible link, so that neither linking nor leaving it unlinked is an error.
    possible = tuple((i, j) for i, a in enumerate(en_roles) for j, b in enumerate(fr_roles)
                     if (a.endswith("det") and a not in fr_roles and b == a[:2] + "noun")
                     or (b.endswith("det") and b not in en_roles and a == b[:2] + "noun"))
    pairs = []
    for pre, post, noun in ((spec.pre, spec.post, spec.noun),) + ((spec.obj[1:4],) if spec.obj else ()):
        pairs += [(PRE_ADJECTIVES[pre][0], NOUNS[noun][0])] if pre is not None else []
        pairs += [(POST_ADJECTIVES[post][0], NOUNS[noun][0])] if post is not None else []
    return Pair(tuple(en), tuple(fr), align, possible, tuple(pairs))


def _draw_np(rng: np.random.Generator) -> tuple[int, int | None, int | None, int, bool]:
    k = rng.integers(4)  # no adjective, a pre-nominal one, a post-nominal one, or both
    pre = int(rng.integers(len(PRE_ADJECTIVES))) if k in (1, 3) else None
    post = int(rng.integers(len(POST_ADJECTIVES))) if k in (2, 3) else None
    det, noun = int(rng.integers(len(DETERMINERS))), int(rng.integers(len(NOUNS)))
    return det, pre, post, noun, bool(rng.integers(2))


def _draw(rng: np.random.Generator) -> _Spec:
    det, pre, post, noun, plural = _draw_np(rng)
    transitive = bool(rng.random() < 0.4)
    v = int(rng.integers(len(TRANSITIVE if transitive else INTRANSITIVE)))
    tense = ("present", "past", "future")[int(rng.integers(3))]
    return _Spec(det, pre, post, noun, plural, (transitive, v), tense, _draw_np(rng) if transitive else None)


def generate(*, seed: int = 0, num_train: int = 8000, num_val: int = 500, num_test: int = 500,
             num_held_out: int = 12) -> Corpus:
    """Distinct sentences drawn with `seed`: training ones without any held-out adjective-noun pair, val and
    test ones with at least one. Deterministic for given arguments."""
    if min(num_train, num_val, num_test, num_held_out) < 1:
        raise ValueError(f"generate: expected positive sizes, got num_train={num_train}, num_val={num_val}, "
                         f"num_test={num_test}, num_held_out={num_held_out}")
    rng = np.random.default_rng(seed)
    every = [(a[0], n[0]) for a in PRE_ADJECTIVES + POST_ADJECTIVES for n in NOUNS]
    if num_held_out > len(every) // 4:
        raise ValueError(f"num_held_out: at most {len(every) // 4} of the {len(every)} adjective-noun pairs, "
                         f"got {num_held_out}")
    held_out = tuple(sorted(every[i] for i in rng.choice(len(every), num_held_out, replace=False)))
    held = set(held_out)
    train: list[Pair] = []
    evals: list[Pair] = []
    seen: set[tuple[str, ...]] = set()
    for _ in range(50 * (num_train + num_val + num_test)):
        if len(train) >= num_train and len(evals) >= num_val + num_test:
            break
        spec = _draw(rng)
        if len(evals) < num_val + num_test and rng.random() < 0.5:
            # Half of the draws, while val/test still need sentences, are steered to a held-out pair.
            a, n = held_out[int(rng.integers(len(held_out)))]
            pre = next((i for i, x in enumerate(PRE_ADJECTIVES) if x[0] == a), None)
            post = next((i for i, x in enumerate(POST_ADJECTIVES) if x[0] == a), None)
            noun = next(i for i, x in enumerate(NOUNS) if x[0] == n)
            spec = spec._replace(pre=pre if pre is not None else spec.pre,
                                 post=post if post is not None else spec.post, noun=noun)
        pair = realise(spec)
        if pair.en in seen:
            continue
        if held.intersection(pair.pairs):
            if len(evals) < num_val + num_test:
                seen.add(pair.en)
                evals.append(pair)
        elif len(train) < num_train:
            seen.add(pair.en)
            train.append(pair)
    else:
        raise ValueError(f"generate: could not draw {num_train} + {num_val} + {num_test} distinct sentences")
    return Corpus(train, evals[:num_val], evals[num_val:], held_out)
