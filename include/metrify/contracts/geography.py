"""German cities, their federal states and the transmission system operator (TSO) of each area.

The TSO follows the control area the state (or most of it) lies in: 50Hertz in the east and
Hamburg, TenneT in Bavaria, Lower Saxony, Schleswig-Holstein, Bremen and most of Hesse, Amprion
in North Rhine-Westphalia, Rhineland-Palatinate and Saarland, TransnetBW in Baden-Württemberg.
"""

from __future__ import annotations

from dataclasses import dataclass

TSO_50HERTZ = "50Hertz"
TSO_TENNET = "TenneT"
TSO_AMPRION = "Amprion"
TSO_TRANSNETBW = "TransnetBW"
TSOS = (TSO_TENNET, TSO_50HERTZ, TSO_AMPRION, TSO_TRANSNETBW)


@dataclass(frozen=True)
class City:
    name: str
    postal_code: str
    region: str  # federal state
    tso: str
    lat: float
    lon: float
    population: int


CITIES: tuple[City, ...] = (
    City("Berlin", "10115", "Berlin", TSO_50HERTZ, 52.520, 13.405, 3_755_000),
    City("Hamburg", "20095", "Hamburg", TSO_50HERTZ, 53.551, 9.994, 1_892_000),
    City("München", "80331", "Bayern", TSO_TENNET, 48.137, 11.576, 1_512_000),
    City("Köln", "50667", "Nordrhein-Westfalen", TSO_AMPRION, 50.938, 6.960, 1_084_000),
    City("Frankfurt am Main", "60311", "Hessen", TSO_TENNET, 50.110, 8.682, 773_000),
    City("Stuttgart", "70173", "Baden-Württemberg", TSO_TRANSNETBW, 48.776, 9.183, 633_000),
    City("Düsseldorf", "40213", "Nordrhein-Westfalen", TSO_AMPRION, 51.227, 6.774, 631_000),
    City("Leipzig", "04109", "Sachsen", TSO_50HERTZ, 51.340, 12.375, 616_000),
    City("Dortmund", "44135", "Nordrhein-Westfalen", TSO_AMPRION, 51.514, 7.466, 595_000),
    City("Essen", "45127", "Nordrhein-Westfalen", TSO_AMPRION, 51.456, 7.012, 584_000),
    City("Bremen", "28195", "Bremen", TSO_TENNET, 53.079, 8.802, 577_000),
    City("Dresden", "01067", "Sachsen", TSO_50HERTZ, 51.050, 13.737, 566_000),
    City("Hannover", "30159", "Niedersachsen", TSO_TENNET, 52.375, 9.732, 548_000),
    City("Nürnberg", "90402", "Bayern", TSO_TENNET, 49.452, 11.077, 526_000),
    City("Karlsruhe", "76133", "Baden-Württemberg", TSO_TRANSNETBW, 49.007, 8.404, 308_000),
    City("Mannheim", "68159", "Baden-Württemberg", TSO_TRANSNETBW, 49.488, 8.466, 315_000),
    City("Freiburg im Breisgau", "79098", "Baden-Württemberg", TSO_TRANSNETBW, 47.999, 7.842, 237_000),
    City("Mainz", "55116", "Rheinland-Pfalz", TSO_AMPRION, 49.993, 8.247, 220_000),
    City("Saarbrücken", "66111", "Saarland", TSO_AMPRION, 49.240, 6.997, 181_000),
    City("Kiel", "24103", "Schleswig-Holstein", TSO_TENNET, 54.323, 10.123, 247_000),
    City("Rostock", "18055", "Mecklenburg-Vorpommern", TSO_50HERTZ, 54.092, 12.099, 209_000),
    City("Magdeburg", "39104", "Sachsen-Anhalt", TSO_50HERTZ, 52.131, 11.640, 240_000),
    City("Erfurt", "99084", "Thüringen", TSO_50HERTZ, 50.978, 11.029, 214_000),
    City("Potsdam", "14467", "Brandenburg", TSO_50HERTZ, 52.391, 13.064, 183_000),
)

CITY_BY_NAME = {city.name: city for city in CITIES}


def largest_cities(count: int = 10) -> list[City]:
    return sorted(CITIES, key=lambda c: c.population, reverse=True)[:count]
