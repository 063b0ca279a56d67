"""Pricing: the OCPI tariff engine (engine.py, pure) and where it is used (shared/services/pricing.py)."""

from shared.pricing.engine import (
    MONEY_PLACES,
    TOTALS,
    CompiledTariff,
    Line,
    Price,
    PriceResult,
    PricingError,
    compile_tariff,
    price_cdr,
    price_periods,
    price_session,
)

__all__ = [
    "MONEY_PLACES",
    "TOTALS",
    "CompiledTariff",
    "Line",
    "Price",
    "PriceResult",
    "PricingError",
    "compile_tariff",
    "price_cdr",
    "price_periods",
    "price_session",
]
