"""A result's usage and cost, kept as columns of its request, agree with what it says.

Money and progress sum the columns; a store made before them gains them, filled from
the results it holds, and one opened read-only keeps reading the JSON.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from overnight._serialization import dumps
from overnight.models import Result, ResultStatus, Usage
from overnight.policy import Retries
from overnight.sqlite_store import SCHEMA, SqliteStore as Store
from overnight.store import DONE
from storekeys import request_ids


def _old_store(path: Path) -> None:
    """A store as overnight wrote it before the figure columns: two collected requests."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    db.execute("INSERT INTO plans (plan_id, provider, step, size, complete, created_at) VALUES ('p', 'openai', 's', 2, 1, 0)")
    for i, cost in enumerate((0.25, None)):
        result = Result(f"k{i}", ResultStatus.SUCCEEDED, "t", usage=Usage(10 + i, 5), cost_usd=cost,
                        online_cost_usd=None if cost is None else 2 * cost)
        db.execute("INSERT INTO plan_items VALUES ('p', ?, ?, 0, ?)", (i, i, f"k{i}"))
        db.execute("INSERT INTO requests (key, provider, model, line, bytes, state, result, tokens) "
                   "VALUES (?, 'openai', 'm', '{}', 2, ?, ?, 7)", (f"k{i}", DONE, dumps(result)))
    db.commit()
    db.close()


EXPECTED_TOTALS = {"requests": 2, "cost_usd": 0.25, "online_cost_usd": 0.5, "saved_usd": 0.25, "unpriced": 1}


def test_an_old_store_read_only_sums_the_json(tmp_path: Path) -> None:
    _old_store(tmp_path / "overnight.sqlite")
    store = Store(tmp_path / "overnight.sqlite", readonly=True)
    assert store.money_totals() == EXPECTED_TOTALS
    money = store.plan_money("p")[DONE]
    assert (money["used_in"], money["used_out"], money["cost"]) == (21, 10, 0.25)


def test_an_old_store_gains_the_columns_filled_from_its_results(tmp_path: Path) -> None:
    _old_store(tmp_path / "overnight.sqlite")
    store = Store(tmp_path / "overnight.sqlite")
    rows = store._query("SELECT key, used_in, used_out, cost_usd, online_cost_usd FROM requests ORDER BY key")
    assert [tuple(r) for r in rows] == [("k0", 10, 5, 0.25, 0.5), ("k1", 11, 5, None, None)]
    assert store.money_totals() == EXPECTED_TOTALS
    money = store.plan_money("p")[DONE]
    assert (money["n"], money["used_in"], money["used_out"], money["cost"], money["online"]) == (2, 21, 10, 0.25, 0.5)
    Store(tmp_path / "overnight.sqlite")  # opening it again changes nothing
    assert store.money_totals() == EXPECTED_TOTALS


def test_recorded_results_write_their_figures(tmp_path: Path) -> None:
    store = Store(tmp_path / "overnight.sqlite")
    store.write_plan("p", "openai", "s", [(0, 0, "a", "m", "{}", 2), (1, 0, "b", "m", "{}", 2)])
    job = store.create_intent(tag="t", provider="openai", model="m", step="s", plan_id="p",
                              request_ids=request_ids(store, ["a", "b"]), nbytes=4)
    store.record_results(job, [Result("a", ResultStatus.SUCCEEDED, "x", usage=Usage(3, 4), cost_usd=1.0,
                                      online_cost_usd=2.0),
                               Result("b", ResultStatus.ERRORED, error="bad", usage=Usage(1, 0))],
                         Retries(max_attempts=1, max_unfinished=3))
    rows = store._query("SELECT key, state, used_in, used_out, cost_usd, online_cost_usd FROM requests ORDER BY key")
    assert [tuple(r) for r in rows] == [("a", "done", 3, 4, 1.0, 2.0), ("b", "failed", 1, 0, None, None)]
    assert store.money_totals()["cost_usd"] == 1.0


def test_a_success_the_provider_did_not_price_is_billed_as_it_is_stored(tmp_path: Path) -> None:
    store = Store(tmp_path / "overnight.sqlite")
    keys = ["priced", "unpriced", "no-usage", "failed"]
    store.write_plan("p", "openai", "s", [(i, 0, k, "m", "{}", 2) for i, k in enumerate(keys)])
    job = store.create_intent(tag="t", provider="openai", model="m", step="s", plan_id="p",
                              request_ids=request_ids(store, keys), nbytes=8)
    store.record_results(job, [
        Result("priced", ResultStatus.SUCCEEDED, "x", usage=Usage(3, 4), cost_usd=1.0, online_cost_usd=2.0),
        Result("unpriced", ResultStatus.SUCCEEDED, "y", usage=Usage(3, 4)),
        Result("no-usage", ResultStatus.SUCCEEDED, "z"),
        Result("failed", ResultStatus.ERRORED, error="bad", usage=Usage(1, 0)),
    ], Retries(max_attempts=1, max_unfinished=3), bill=lambda usage: (usage.output_tokens / 100, usage.output_tokens / 50))
    expected = {"priced": (1.0, 2.0),  # the provider's own price is kept
                "unpriced": (0.04, 0.08), "no-usage": (None, None), "failed": (None, None)}
    columns = {r["key"]: (r["cost_usd"], r["online_cost_usd"])
               for r in store._query("SELECT key, cost_usd, online_cost_usd FROM requests")}
    assert columns == expected
    # A result read back carries its price.
    read_back = {keys[row]: result for row, _sample, _state, result in store.plan_results("p")}
    assert {k: (r.cost_usd, r.online_cost_usd) for k, r in read_back.items()} == expected
