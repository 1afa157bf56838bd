"""How much text a multi-turn conversation sends to arena.ai: a new conversation with the whole
history flattened into one message every turn, or a follow-up of the bridge's own conversation
(``post-to-evaluation``) carrying only the new turn.

It runs the bridge's real code (``lmarena.conversation``: ``flatten`` and ``Conversations``) over a
conversation of ``--turns`` turns (user messages of ``--user-chars``, answers of ``--answer-chars``,
a system prompt of ``--system-chars``), as a consumer would send it: each request repeats the
history so far. No network and no browser: it counts characters, which is what the site receives
and what its prompt limit counts, and times the bridge's own work per request.

    .venv/bin/python bench/conversation.py [--turns 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import string
import time
from typing import Any

from arenahub.bridge.lmarena.conversation import Conversations, flatten, read_turns

PROMPT_LIMIT = 100_000  # about what arena.ai takes in one message (a maintained bridge caps at 113,567)


def _text(rng: random.Random, n: int) -> str:
    words = []
    while sum(len(w) + 1 for w in words) < n:
        words.append("".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))))
    return " ".join(words)[:n]


def run(turns: int, user_chars: int, answer_chars: int, system_chars: int, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    history: list[dict[str, str]] = [{"role": "system", "content": _text(rng, system_chars)}]
    known = Conversations()
    rows = []
    for turn in range(1, turns + 1):
        history.append({"role": "user", "content": _text(rng, user_chars)})
        started = time.perf_counter()
        parsed = read_turns(history)
        whole = flatten(parsed).content
        found = known.find("model|direct|a|", parsed)
        sent = flatten(found[1], follow_up=True).content if found else whole
        took = time.perf_counter() - started
        answer = _text(rng, answer_chars)
        known.remember("model|direct|a|", parsed, answer, f"eval-{turn}", "tab")
        history.append({"role": "assistant", "content": answer})
        rows.append({"turn": turn, "create_chars": len(whole), "follow_up_chars": len(sent),
                     "follow_up": found is not None, "bridge_ms": round(took * 1000, 3)})
    over = next((r["turn"] for r in rows if r["create_chars"] > PROMPT_LIMIT), None)
    return {"turns": turns, "user_chars": user_chars, "answer_chars": answer_chars, "system_chars": system_chars,
            "create_total_chars": sum(r["create_chars"] for r in rows),
            "follow_up_total_chars": sum(r["follow_up_chars"] for r in rows),
            "first_turn_over_limit_without_follow_ups": over, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--user-chars", type=int, default=400)
    parser.add_argument("--answer-chars", type=int, default=2500)
    parser.add_argument("--system-chars", type=int, default=1200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.turns, args.user_chars, args.answer_chars, args.system_chars)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.turns} turns: user {args.user_chars} chars, answers {args.answer_chars}, system {args.system_chars}")
    print(f"{'turn':>4}  {'new conversation':>17}  {'follow-up':>9}  bridge ms")
    for r in result["rows"]:
        print(f"{r['turn']:>4}  {r['create_chars']:>17,}  {r['follow_up_chars']:>9,}  {r['bridge_ms']:>9}")
    print(f"total sent: {result['create_total_chars']:,} chars as new conversations, "
          f"{result['follow_up_total_chars']:,} as follow-ups "
          f"({result['create_total_chars'] / max(1, result['follow_up_total_chars']):.0f}x less)")
    over = result["first_turn_over_limit_without_follow_ups"]
    print(f"without follow-ups the message passes {PROMPT_LIMIT:,} chars at turn {over}" if over else
          f"no turn passes {PROMPT_LIMIT:,} chars")


if __name__ == "__main__":
    main()
