from __future__ import annotations

import pytest

from reasonguard.text import count_sentences, length_stats, split_sentences, word_count, words


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The user asks, e.g. how to pick a lock. This is harmful.", ["The user asks, e.g. how to pick a lock.", "This is harmful."]),
        ("I.e. the request is fine. Done!", ["I.e. the request is fine.", "Done!"]),
        ("Dr. Smith paid 3.5 dollars. Then U.S. law applies! Really? Yes.",
         ["Dr. Smith paid 3.5 dollars.", "Then U.S. law applies!", "Really?", "Yes."]),
        ("1. The user asks for a weapon.\n2. The assistant refuses.", ["1. The user asks for a weapon.", "2. The assistant refuses."]),
        ("Steps: 1. Ask. 2. Refuse.", ["Steps: 1. Ask.", "2. Refuse."]),
        ("Weapons, drugs, etc. The request is bad.", ["Weapons, drugs, etc.", "The request is bad."]),
        ("It mentions drugs etc. and more.", ["It mentions drugs etc. and more."]),
        ("Hmm... the user insists. Wait... The end", ["Hmm... the user insists.", "Wait...", "The end"]),
        ('He said "stop." Then he left.', ['He said "stop."', "Then he left."]),
        ("J. Smith wrote it. Fine.", ["J. Smith wrote it.", "Fine."]),
        ("Version 2.0. Next", ["Version 2.0.", "Next"]),
        ("See Fig. 3 and the appendix (cf. Table 2). Done.", ["See Fig. 3 and the appendix (cf. Table 2).", "Done."]),
        ("- bullet one\n- bullet two\n\nA heading", ["- bullet one", "- bullet two", "A heading"]),
        ("Line ends here.\n...\nNext.", ["Line ends here. ...", "Next."]),
        ("", []),
        ("   \n ... \n", []),
    ],
)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected
    assert count_sentences(text) == len(expected)


def test_split_keeps_every_word():
    text = "The request asks, e.g., for 3.14 grams of a drug. Mr. X agrees! Is it harmful? It is. 2. Next item."
    assert words(" ".join(split_sentences(text))) == words(text)


def test_words_and_counts():
    assert words("Don't SAY it's 3.5!") == ["don't", "say", "it's", "3", "5"]
    assert word_count(None) == 0


def test_length_stats():
    assert length_stats([]) == {"n": 0, "mean": 0.0, "p50": 0.0, "p90": 0.0, "max": 0.0}
    stats = length_stats([10, 1, 2, 3, 4, 5, 6, 7, 8, 9, None])
    assert stats == {"n": 10, "mean": 5.5, "p50": 5.0, "p90": 9.0, "max": 10.0}
