"""What the demo shop sells: a few products with prices in minor units of the program's currency."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Product:
    slug: str
    name: str
    blurb: str
    price_cents: int


PRODUCTS = (
    Product("kettle", "Gooseneck kettle", "Pours slowly and exactly; keeps its heat for the second cup.", 4999),
    Product("knife", "Chef's knife", "One knife for nearly everything, sharp out of the box.", 8900),
    Product("cookbook", "Weeknight cookbook", "Seventy dinners that take thirty minutes or less.", 2999),
)


def find_product(slug: str | None) -> Product | None:
    """The product with this slug, or None for anything else."""
    return next((product for product in PRODUCTS if product.slug == slug), None)
