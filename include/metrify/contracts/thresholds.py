"""Physical and EN 50160 limits, defined once for the gate, the anomaly tasks and dbt.

The dbt project reads the same EN 50160 bands as vars (`voltage_min`, `voltage_max`,
`frequency_min`, `frequency_max` in `dbt/dbt_project.yml`); a test keeps the two equal.
"""

from __future__ import annotations

# Supply voltage, EN 50160: 230 V +-10 %; below -15 % is never acceptable.
VOLTAGE_NOMINAL_V = 230.0
VOLTAGE_BAND_V = (207.0, 253.0)
VOLTAGE_CRITICAL_LOW_V = 195.5
# Outside 230 V +-30 % a reading is a device fault, not a grid event.
VOLTAGE_PHYSICAL_V = (161.0, 299.0)

# Continental Europe: 50 Hz, normal band +-0.2 Hz; below 49.0 Hz load shedding starts.
FREQUENCY_NOMINAL_HZ = 50.0
FREQUENCY_BAND_HZ = 0.2
FREQUENCY_NORMAL_HZ = (FREQUENCY_NOMINAL_HZ - FREQUENCY_BAND_HZ, FREQUENCY_NOMINAL_HZ + FREQUENCY_BAND_HZ)
FREQUENCY_CRITICAL_DEVIATION_HZ = 1.0
# Outside 47.5..51.5 Hz generators disconnect: a value there is a broken feed.
FREQUENCY_PHYSICAL_HZ = (47.5, 51.5)

# The German extra-high-voltage transmission grid: 380 kV nominal, +-10 %.
TRANSMISSION_VOLTAGE_KV = 380.0
TRANSMISSION_VOLTAGE_BAND_KV = (342.0, 418.0)
