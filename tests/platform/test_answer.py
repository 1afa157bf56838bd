"""The answer meter (answer.py): the relayed answer cleaned, counted by the platform and cut at its limit."""

from __future__ import annotations

import pytest

import arenahub.platform.answer as answer
from arenahub.platform.answer import AnswerMeter, clean_delta
from arenahub.tokens import count_tokens


def delta(**fields: object) -> list[dict[str, object]]:
    return [{"index": 0, "delta": fields, "finish_reason": None}]


def relay(meter: AnswerMeter, pieces: list[str]) -> tuple[str, str | None]:
    """Feed content deltas until the meter cuts; the text relayed and the last finish_reason."""
    said, finish = [], None
    for piece in pieces:
        choices, texts = meter.take(delta(content=piece))
        said += texts
        if choices:
            finish = choices[-1]["finish_reason"]
        if meter.cut:
            break
    return "".join(said), finish


@pytest.mark.parametrize("word", ["word ", "日本語の文 ", "🎉🎉 ", "naïve café "])
@pytest.mark.parametrize("limit", [1, 7, 100, 1000])
def test_an_answer_is_cut_at_its_limit_and_never_billed_past_it(word: str, limit: int) -> None:
    meter = AnswerMeter(limit)
    text, finish = relay(meter, [word] * 3000)
    assert meter.cut and finish == "length"
    assert count_tokens(text) <= limit
    assert count_tokens(text) >= limit - 2  # cut where the limit is (a character split between tokens is left out)


def test_an_answer_within_its_limit_is_relayed_whole() -> None:
    meter = AnswerMeter(10_000)
    text, finish = relay(meter, ["w "] * 500)
    assert not meter.cut and finish is None and text == "w " * 500


def test_far_from_the_limit_nothing_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(answer, "count_tokens", lambda text: calls.append(text) or count_tokens(text))
    meter = AnswerMeter(262_144)
    relay(meter, ["some words "] * 200)
    assert calls == []  # 2,200 bytes can never be 262,144 tokens
    near = AnswerMeter(2_300)
    relay(near, ["some words "] * 210)  # 2,310 bytes: the collected text is counted once, then each delta
    assert calls and not near.cut and len(calls) < 20


def test_tool_call_arguments_count_and_are_cut() -> None:
    meter = AnswerMeter(5)
    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1, ' * 20}}
    choices, texts = meter.take(delta(tool_calls=[call]))
    assert meter.cut and choices[0]["finish_reason"] == "length"
    args = choices[0]["delta"]["tool_calls"][0]["function"]["arguments"]
    assert 0 < count_tokens(args) <= 5 - count_tokens("f") + 1 and args in texts


def test_without_a_limit_nothing_is_cut() -> None:
    meter = AnswerMeter(None)
    text, finish = relay(meter, ["word "] * 1000)
    assert not meter.cut and finish is None and len(text) == 5000


def test_an_answer_cut_here_is_billed_at_most_its_limit() -> None:
    meter = AnswerMeter(10)
    relay(meter, ["aaaaaaaaaaaaaaaaaaaaaaaa"] * 50)  # a run with no space: the count of the tail can be off
    assert meter.cut and meter.billable(12) == 10 and meter.billable(9) == 9
    assert AnswerMeter(10).billable(12) == 12  # not cut: billed what was counted


@pytest.mark.parametrize(("pieces", "limit", "relayed"), [
    (["Echo w0 w1"], 1, "Echo"),  # never inside a token ("Ec")
    (["w0 ", "w1 ", "w2 ", "w3 ", "w4 ", "w5 "], 5, None),
    (["日本語の文"], 2, "日本語"),
])
def test_the_cut_falls_between_tokens(pieces: list[str], limit: int, relayed: str | None) -> None:
    meter = AnswerMeter(limit)
    text, finish = relay(meter, pieces)
    assert finish == "length" and count_tokens(text) == limit
    if relayed is not None:
        assert text == relayed


class _Mapping(dict):  # type: ignore[type-arg]
    """A dict that clean_delta's shortcut for plain dicts does not take: the general case runs."""


@pytest.mark.parametrize("delta", [
    {"content": "hi"}, {"role": "assistant", "content": "hi"}, {"content": "hi", "role": "assistant"},
    {"role": "user", "content": "hi"}, {"content": 5}, {"content": "hi", "refusal": "no"},
    {"content": "hi", "evil": {"x": 1}}, {"role": "assistant", "content": "", "tool_calls": "x"}, {"content": None},
])
def test_the_shortcut_for_plain_deltas_gives_what_the_general_case_gives(delta: dict[str, object]) -> None:
    fast, general = clean_delta(dict(delta)), clean_delta(_Mapping(delta))
    assert list(fast.items()) == list(general.items())
