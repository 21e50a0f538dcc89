"""Models of the green app (see DESIGN.md)."""
