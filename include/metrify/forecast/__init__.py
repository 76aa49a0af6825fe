"""Day-ahead load forecast per region and control area."""
