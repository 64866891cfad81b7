"""The vocabulary's prefix tree that narrows a full grammar pass (lokal.engine.llamacpp.sampling): it must find
exactly the tokens a check allows, whenever the check behaves as llama.cpp's grammar does (a token whose text
starts with a rejected token's text is rejected too), while asking about fewer tokens."""

from __future__ import annotations

import random

import numpy as np

from lokal.engine.llamacpp.sampling import TokenPrefixTree

PIECES = [b"a", b"ab", b"abc", b"b", b"", b"<eos>", b"\xc3", b"\xc3\xa9", b"abd", b"c", b"ca"]
EOS = 5


def prefix_of(target: bytes, asked: list[int]):
    """A check that allows the tokens whose text is a prefix of `target` (what a grammar expecting `target`
    does), recording every token it is asked about."""

    def check(ids: np.ndarray) -> np.ndarray:
        asked.extend(ids.tolist())
        return np.array([bool(PIECES[i]) and target.startswith(PIECES[i]) for i in ids], dtype=bool)

    return check


def test_parents_are_the_longest_token_prefix_of_whole_characters():
    tree = TokenPrefixTree(PIECES, {EOS})
    # roots: a, b, the empty token, the end token, the lone UTF-8 lead byte, é (its prefix \xc3 is no whole
    # character, so no parent), c
    assert tree.roots.tolist() == [0, 3, 4, 5, 6, 7, 9]
    children = {t: tree.children[tree.child_start[t] : tree.child_start[t + 1]].tolist() for t in range(len(PIECES))}
    assert children[0] == [1] and children[1] == [2, 8] and children[9] == [10]
    assert children[5] == [] and children[3] == []


def test_a_rejected_token_prunes_its_subtree():
    asked: list[int] = []
    allowed = TokenPrefixTree(PIECES, {EOS}).allowed(prefix_of(b"abc", asked))
    assert allowed is not None and allowed.tolist() == [0, 1, 2]  # a, ab, abc
    assert sorted(asked) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]  # "ca" (under the rejected "c") never asked about


def test_most_roots_allowed_means_one_pass_over_everything():
    assert TokenPrefixTree(PIECES, {EOS}).allowed(lambda ids: np.ones(len(ids), dtype=bool)) is None


def test_random_vocabularies_and_prefix_closed_checks_agree_with_checking_every_token():
    rng = random.Random(7)
    compared = 0
    for _ in range(200):
        pieces = sorted(
            {bytes(rng.choice(b"abc") for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(3, 40))}
        )
        # A "grammar": the prefixes of a few strings (prefix-closed, as llama.cpp's grammar acceptance is).
        targets = [bytes(rng.choice(b"abc") for _ in range(rng.randint(0, 5))) for _ in range(rng.randint(1, 2))]

        def check(ids: np.ndarray, pieces=pieces, targets=targets) -> np.ndarray:
            return np.array([any(t.startswith(pieces[i]) for t in targets) for i in ids], dtype=bool)

        tree = TokenPrefixTree(pieces, set())
        everything = np.flatnonzero(check(np.arange(len(pieces))))
        found = tree.allowed(check)
        if found is not None:
            assert found.tolist() == everything.tolist(), (pieces, targets)
            compared += 1
    assert compared > 150  # not mostly the "check everything" answer
