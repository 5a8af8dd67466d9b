"""The benchmark's messages: mostly valid ~1 KB `order:new` bodies, some invalid ones."""

from __future__ import annotations

import orjson

STORE = "5279008084a81693d5000001"
SUBSCRIPTIONS = """
subscribers:
  store:
    messages: ["#"]
  erp:
    messages: ["order:*"]
  mailer:
    messages: ["order:new"]
"""
SUBSCRIBERS = ("store", "erp", "mailer")
INVALID_EVERY = 10  # one message in ten fails its schema


def order(i: int, valid: bool = True) -> dict:
    address = {
        "firstname": "Joe",
        "lastname": "Smith",
        "address1": "1234 Awesome Street",
        "address2": None,
        "zipcode": "90210",
        "city": "Hollywood",
        "state": "California",
        "country": "US",
        "phone": "0000000000",
    }
    return {
        "message": "order:new",
        "store_id": STORE,
        "payload": {
            "order": {
                "number": f"R{100000000 + i}",
                "channel": "spree",
                "email": "spree@example.com",
                "currency": "USD",
                "placed_on": "2014-02-03T17:29:15.219Z",
                "updated_at": "2014-02-03T17:29:15.219Z",
                "status": "complete",
                "totals": {"item": 99.95, "adjustment": 15, "tax": 5, "shipping": 0, "payment": 114.95, "order": 114.95},
                "line_items": [
                    {"name": "Spree T-Shirt", "sku": "SPREE-T-SHIRT", "quantity": 1 if valid else "two", "price": "19.99", "variant_id": 1},
                    {"name": "Spree Mug", "sku": "SPREE-MUG", "quantity": 2, "price": "9.99", "variant_id": 2},
                ],
                "adjustments": [{"name": "Tax", "value": "5.0"}, {"name": "Shipping", "value": 10}],
                "shipping_address": address,
                "billing_address": address,
                "payments": [{"number": 63, "status": "completed", "amount": 114.95, "payment_method": "Credit Card"}],
            }
        },
    }  # fmt: skip


def bodies(count: int = 100, invalid_every: int = INVALID_EVERY) -> list[bytes]:
    """The corpus; `invalid_every=0` makes every message valid."""
    return [orjson.dumps(order(i, valid=not invalid_every or i % invalid_every != 0)) for i in range(count)]


STATUS_TALLY = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
accepted, refused, limited, other = 0, 0, 0, 0
function response(status, headers, body)
  if status == 202 then accepted = accepted + 1
  elseif status == 503 then refused = refused + 1
  elseif status == 429 then limited = limited + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local a, r, l, o = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted"); r = r + t:get("refused"); l = l + t:get("limited"); o = o + t:get("other")
  end
  io.write(string.format("STATUS %d %d %d %d\\n", a, r, l, o))
  io.write(string.format("ANSWER_MS %.1f %.1f\\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""
"""wrk Lua that tallies answers (202, 503, 429, other) and prints them with the p50 and p99 time
to an answer when the run ends: `STATUS a r l o` and `ANSWER_MS p50 p99`."""


def wrk_script(
    count: int = 100,
    *,
    count_statuses: bool = False,
    rate: float = 0,
    invalid_every: int = INVALID_EVERY,
    token: str = "",
) -> str:
    """A wrk Lua script that POSTs the corpus (`bodies(count, invalid_every)`) round-robin.

    `count_statuses`: tally answers and print `STATUS accepted refused limited other`, and
    `ANSWER_MS p50 p99` of the time to an answer, at the end (it costs wrk some CPU). `rate`: start requests on a fixed
    schedule, this many per second across all connections (an open loop, as long as a connection
    is free), rather than as fast as the answers come. `token`: sent as a Bearer token.
    """
    quoted = ",\n".join("[==[" + b.decode() + "]==]" for b in bodies(count, invalid_every))
    script = f"""
local bodies = {{ {quoted} }}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, "/messages", nil, bodies[i])
end
"""
    if token:
        script += f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    if rate:
        # wrk asks delay() before each request; it waits for the next free slot on the schedule
        # (LuaJIT's ffi reads the clock).
        script += f"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct {{ long tv_sec; long tv_nsec; }} bench_timespec;
int clock_gettime(int clock, bench_timespec *now);
]]
local clock = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end
local interval_ms = {1000 / rate}
local next_slot = nil
function delay()
  local now = now_ms()
  if next_slot == nil or next_slot < now - 1000 then next_slot = now end  -- catch up at most 1 s
  local wait = next_slot - now
  next_slot = next_slot + interval_ms
  return wait > 0 and wait or 0
end
"""
    if count_statuses:
        script += STATUS_TALLY
    return script


def costly_dry_run_script() -> str:
    """A wrk Lua script that sends a ~1 MB `order:updated` of large arrays, every item wrong, to
    the dry run without a token: what three anonymous clients used to saturate the gateway with."""
    items = [{"sku": "S" * 16, "quantity": "two", "name": "x" * 1000} for _ in range(900)]
    doc = {"message": "order:updated", "store_id": STORE,
           "payload": {"order": {"number": "R1", "email": "a@b.cc", "line_items": items}}}  # fmt: skip
    return (
        f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{orjson.dumps(doc).decode()}]==]
"""
        + STATUS_TALLY
    )
