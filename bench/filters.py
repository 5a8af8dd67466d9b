"""The router's payload filters, measured in-process where a shared machine's noise does not
drown microseconds: each rule's cost per message on the corpus orders, and what filters add to
matching a message against the bench's subscriptions (before and after, same run)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import orjson
import yaml

from bench.corpus import STORE, SUBSCRIPTIONS, bodies
from integrator.filters import compile_rule
from integrator.subscriptions import Subscriptions

ROUNDS = 5
CALLS = 20_000
RULES: list[dict[str, Any]] = [
    {"path": "order.status", "operator": "eq", "value": "complete"},
    {"path": "order.totals.order", "operator": "gte", "value": 100},
    {"path": "order.line_items.0.price", "operator": "lt", "value": "20"},
    {"path": "order.number", "operator": "present"},
    {"path": "order.currency", "operator": "in", "value": ["USD", "EUR", "GBP"]},
    {"path": "order.email", "operator": "match", "value": "@example\\.com$"},
    {"path": "order.line_items.*.sku", "operator": "begin", "value": "SPREE-M"},
]


def _us_per_call(work: Any, payloads: list[Any]) -> float:
    """Median over ROUNDS of CPU microseconds per call of `work(payload)`."""
    runs = []
    count = len(payloads)
    for _ in range(ROUNDS):
        started = time.process_time()
        for i in range(CALLS):
            work(payloads[i % count])
        runs.append((time.process_time() - started) * 1e6 / CALLS)
    return statistics.median(runs)


def filter_section() -> str:
    payloads = [orjson.loads(b)["payload"] for b in bodies(100, invalid_every=0)]
    rows = []
    for spec in RULES:
        rule = compile_rule(spec)
        rows.append(f"| `{rule.text}` | {_us_per_call(rule.holds, payloads):.2f} |")
    plain = Subscriptions.parse(yaml.safe_load(SUBSCRIPTIONS))
    filtered_doc = yaml.safe_load(SUBSCRIPTIONS)
    for spec in filtered_doc["subscribers"].values():
        spec["filters"] = RULES[:3]
    filtered = Subscriptions.parse(filtered_doc)
    before = _us_per_call(lambda p: plain.route("order:new", STORE, p), payloads)
    after = _us_per_call(lambda p: filtered.route("order:new", STORE, p), payloads)
    return f"""
### Payload filters (in-process, median of {ROUNDS} x {CALLS} calls on the corpus orders)

| rule | CPU per message, us |
|---|---|
{chr(10).join(rows)}

Matching an `order:new` against the bench's three subscribers, every subscriber's outcome
included: {before:.2f} us without filters, {after:.2f} us with the first three rules above on
each subscriber ({(after - before) / 9:.2f} us per filter per message).
"""
