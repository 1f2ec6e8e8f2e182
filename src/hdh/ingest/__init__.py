"""Bringing data into the hub: reading sources, rules at the door, immutable versions."""
