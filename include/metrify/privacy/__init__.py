"""Personal data: erasure of one meter (`erasure`) and retention of the lake's layers (`retention`)."""
