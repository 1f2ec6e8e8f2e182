"""The catalogue: datasets, their versions, and how to find them."""
