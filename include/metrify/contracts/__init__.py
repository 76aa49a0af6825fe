"""Data contracts: the schemas of every dataset, the reference geography and the physical limits."""
