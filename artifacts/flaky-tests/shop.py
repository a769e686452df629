"""Editable: a tiny tea shop: a catalogue, carts, stock, and a supplier who restocks.

Its test suite (test_shop.py, protected) passes on some runs and fails on others: run the
tests in another order, or on a busier machine, and a different one fails. Make it pass on
every run without changing a test.
"""

from __future__ import annotations

import random
import threading
import time

CATALOGUE: dict[str, int] = {}  # sku -> price in cents, filled by load_catalogue()
STOCK: dict[str, int] = {"earl-grey": 10, "sencha": 4, "rooibos": 0}
SUPPLIER_DELAY_S = 0.004  # the supplier answers within this many seconds


def load_catalogue() -> None:
    """Fill the catalogue (a stand-in for reading it from a file or a service)."""
    CATALOGUE.update({"earl-grey": 1250, "sencha": 990, "rooibos": 750})


def price(sku: str) -> int:
    """The price of one item, in cents."""
    return CATALOGUE[sku]


def in_stock(sku: str) -> bool:
    return STOCK.get(sku, 0) > 0


class Cart:
    """Lines of (sku, quantity)."""

    lines: list[tuple[str, int]] = []

    def __init__(self, *lines: tuple[str, int]) -> None:
        if lines:
            self.lines = list(lines)

    def add(self, sku: str, quantity: int = 1) -> None:
        self.lines.append((sku, quantity))

    def count(self) -> int:
        return sum(quantity for _, quantity in self.lines)

    def total(self) -> int:
        """The cart's value in cents."""
        load_catalogue()
        return sum(price(sku) * quantity for sku, quantity in self.lines)


def restock(sku: str, quantity: int) -> None:
    """Order more from the supplier, who delivers a moment later, on a thread of its own."""

    def deliver() -> None:
        time.sleep(random.uniform(0, SUPPLIER_DELAY_S))
        STOCK[sku] = STOCK.get(sku, 0) + quantity

    threading.Thread(target=deliver).start()


def wait_for_deliveries() -> None:
    """Return when every delivery ordered so far has arrived."""
    time.sleep(0.9 * SUPPLIER_DELAY_S)
