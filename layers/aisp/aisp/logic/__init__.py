"""Use cases. They take plain values and ports, never Lambda events or HTTP objects."""
