"""Command-line tools (absl apps) and the helpers they share."""
