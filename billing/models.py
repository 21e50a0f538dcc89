"""Models of the billing app (see DESIGN.md)."""
