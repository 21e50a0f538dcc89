"""Models of the metering app (see DESIGN.md)."""
