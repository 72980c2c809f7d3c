"""The collector's settings for a serving process. With thousands of connections a request's
objects live for as long as it waits, so they outlive the young generations and each full
collection walks the whole heap: at 5,000 connections the API spent a quarter of its time in
full collections. The objects made at start-up (modules, the app, its schemas) are moved out
of the collector's reach, and collections run less often."""

from __future__ import annotations

import gc

# allocations between young collections (CPython's default is 700), then young collections per
# middle one and middle ones per full one (defaults 10 and 10)
THRESHOLDS = (50_000, 20, 100)


def settle_heap() -> None:
    """After start-up: collect once, freeze what survived (never scanned again), and collect
    less often from now on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
