"""One writer flush as one Redis script call: every symbol's XADD, bar upserts and PUBLISHes.

Why: through a redis-py pipeline each command costs ~10 µs of Python (packing, the reply's
parsing and callbacks); a flush of an interleaved feed holds one or two ticks per symbol, so a
symbol's six commands cost more than its ticks. Here Python only lines the arguments up and the
script issues the commands inside Redis. Like the MULTI/EXEC it replaces, the script runs as one
unit (no other client sees half of a flush), and a PUBLISH inside it is delivered when it ends.

Entries hold the same bytes as ``BarStore.append_ticks`` / ``upsert_interval_bars`` write
(little-endian int64 times, float64 prices, volumes and bars), so readers are unchanged.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import redis

from utils.data import keys
from utils.redis_client import is_cluster

BAR = struct.Struct("<5d")  # open, high, low, close, volume: what as_array().astype("<f8").tobytes() gives

# KEYS per symbol: its tick stream, then one bar hash per interval.
# ARGV: maxlen, number of intervals, then per symbol: time_ns, price, volume (packed bytes), the
# live channel, how many payloads follow, the payloads, then per interval: bar count and
# (start, packed bar) pairs.
FLUSH_LUA = """
local maxlen, intervals = ARGV[1], tonumber(ARGV[2])
local a, k = 3, 1
while k <= #KEYS do
  redis.call('XADD', KEYS[k], 'MAXLEN', '~', maxlen, '*', 'time_ns', ARGV[a], 'price', ARGV[a + 1],
             'volume', ARGV[a + 2])
  local channel, payloads = ARGV[a + 3], tonumber(ARGV[a + 4])
  a = a + 5
  for p = 1, payloads do
    redis.call('PUBLISH', channel, ARGV[a])
    a = a + 1
  end
  k = k + 1
  for i = 1, intervals do
    local bars = tonumber(ARGV[a])
    a = a + 1
    if bars > 0 then
      redis.call('HSET', KEYS[k], unpack(ARGV, a, a + 2 * bars - 1))
      a = a + 2 * bars
    end
    k = k + 1
  end
end
return k
"""


@dataclass
class FlushCall:
    """The KEYS and ARGV of one flush, built symbol by symbol."""

    maxlen: int
    intervals: tuple[str, ...]
    keys: list[str] = field(default_factory=list)
    args: list[bytes | str | int] = field(default_factory=list)
    starts: list[tuple[int, int]] = field(default_factory=list)  # per symbol: its first key and arg

    def __post_init__(self) -> None:
        self.args += [self.maxlen, len(self.intervals)]

    def add(self, symbol: str, time_ns: np.ndarray, price: np.ndarray, volume: np.ndarray, payloads: list[str],
            bars: dict[str, list[tuple[int, float, float, float, float, float]]]) -> None:
        """``bars``: interval -> the touched bars as (start ns, open, high, low, close, volume)."""
        self.starts.append((len(self.keys), len(self.args)))
        self.keys.append(keys.ticks(symbol))
        self.args += [time_ns.astype("<i8").tobytes(), price.astype("<f8").tobytes(),
                      volume.astype("<f8").tobytes(), keys.live_channel(symbol), len(payloads), *payloads]
        for interval in self.intervals:
            touched = bars.get(interval, ())
            self.keys.append(keys.interval_bars(symbol, interval))
            self.args.append(len(touched))
            for start, *values in touched:
                self.args += [str(start), BAR.pack(*values)]

    @property
    def empty(self) -> bool:
        return not self.keys

    def per_symbol(self) -> list[tuple[list[str], list[bytes | str | int]]]:
        """The same flush as one (keys, args) call per symbol: a symbol's keys share its hash tag,
        different symbols' keys lie in different Redis Cluster slots."""
        ends = self.starts[1:] + [(len(self.keys), len(self.args))]
        return [(self.keys[k0:k1], self.args[:2] + self.args[a0:a1])
                for (k0, a0), (k1, a1) in zip(self.starts, ends)]


class FlushScript:
    def __init__(self, client: redis.Redis) -> None:
        self.script = client.register_script(FLUSH_LUA)  # EVALSHA, loaded again after a Redis restart
        self.clustered = is_cluster(client)

    def run(self, call: FlushCall) -> None:
        if call.empty:
            return
        if not self.clustered:
            self.script(keys=call.keys, args=call.args)
            return
        for symbol_keys, symbol_args in call.per_symbol():  # on a cluster: one call per symbol's slot
            self.script(keys=symbol_keys, args=symbol_args)
