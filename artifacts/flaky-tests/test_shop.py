"""Protected: the shop's test suite. run_suite.py runs it in a new random order every time.

Each test is right about what shop.py promises; none of them may change.
"""

import shop


def test_new_cart_is_empty() -> None:
    count = shop.Cart().count()
    assert count == 0, f"a new cart holds {count} items"


def test_cart_counts_quantities() -> None:
    cart = shop.Cart()
    cart.add("earl-grey", 2)
    cart.add("sencha")
    assert cart.count() == 3, f"2 + 1 items counted as {cart.count()}"


def test_cart_total() -> None:
    total = shop.Cart(("earl-grey", 2), ("sencha", 1)).total()
    assert total == 3490, f"total {total}"


def test_catalogue_has_three_teas() -> None:
    shop.load_catalogue()
    assert sorted(shop.CATALOGUE) == ["earl-grey", "rooibos", "sencha"]


def test_price_of_a_known_tea() -> None:
    assert shop.price("sencha") == 990


def test_in_stock() -> None:
    assert shop.in_stock("earl-grey") and not shop.in_stock("rooibos")


def test_restock_arrives() -> None:
    shop.restock("matcha", 6)
    shop.wait_for_deliveries()
    assert shop.STOCK.get("matcha") == 6, f"matcha stock {shop.STOCK.get('matcha')} after restock"
