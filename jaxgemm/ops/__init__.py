"""One module per op family; each defines its primitives and public functions."""
