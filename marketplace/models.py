"""Models of the marketplace app (see DESIGN.md)."""
