"""Submit-time checks that the data a job will read is stored: NOT_FOUND naming the symbol."""
from __future__ import annotations

from services.errors import not_found
from utils.data.store import BarStore
from utils.data.timeutil import format_time


def require_bars_in_range(store: BarStore, symbols: list[str], start_ns: int, end_ns: int, start: str,
                          end: str) -> dict[str, int]:
    """Every symbol has stored bars between ``start`` and ``end``; returns their data versions."""
    infos = store.info_many(symbols)
    for symbol in symbols:
        info = infos[symbol]
        if info is None:
            stored = ", ".join(i.symbol for i in store.list_symbols()[:10]) or "none"
            raise not_found(f"symbol {symbol!r} has no bars in the market-data store (stored: {stored}); "
                            f"import them with MarketDataService.ImportBars")
        if info.first_time is None or info.last_time < start_ns or info.first_time > end_ns:
            raise not_found(f"symbol {symbol!r} has no bars between {start} and {end} (stored from "
                            f"{format_time(info.first_time)} to {format_time(info.last_time)})")
    return {symbol: infos[symbol].version for symbol in symbols}
