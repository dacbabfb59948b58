"""Country centres and great-circle distance, for the implied travel speed between events.

The centres are the "rough centre of the country" points of the countrystatecity data set
(ISO 3166-1 alpha-2, every code; rounded, not area centroids: a few hundred km off for large
countries, which matters little against the thousands that make travel impossible). A code
the data set does not place has no distance: its speed is unknown and taken as 0.
"""

import math
from functools import cache

EARTH_RADIUS_KM = 6371.0


@cache
def country_centres() -> dict[str, tuple[float, float]]:
    """ISO alpha-2 code -> (latitude, longitude) in degrees."""
    from countrystatecity_countries import get_countries

    out = {}
    for c in get_countries():
        lat, lon = float(c.latitude), float(c.longitude)
        if c.iso2 and (lat, lon) != (0.0, 0.0):  # (0, 0) is the set's "unknown"
            out[c.iso2.upper()] = (lat, lon)
    return out


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (lat, lon) points in degrees."""
    (lat1, lon1), (lat2, lon2) = a, b
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def distance_expr(country_a, country_b):
    """Spark column: km between the centres of two country-code columns (NULL if either
    is unknown). The centres travel as a literal map in the plan: no broadcast, no join."""
    from pyspark.sql import functions as F

    centres = country_centres()
    lat = F.create_map(
        *[x for k, v in centres.items() for x in (F.lit(k), F.lit(v[0]))]
    )
    lon = F.create_map(
        *[x for k, v in centres.items() for x in (F.lit(k), F.lit(v[1]))]
    )
    a, b = F.upper(country_a), F.upper(country_b)
    lat_a, lat_b = F.try_element_at(lat, a), F.try_element_at(lat, b)
    lon_a, lon_b = F.try_element_at(lon, a), F.try_element_at(lon, b)
    p1, p2 = F.radians(lat_a), F.radians(lat_b)
    dl = F.radians(lon_b - lon_a)
    h = F.pow(F.sin((p2 - p1) / 2), 2) + F.cos(p1) * F.cos(p2) * F.pow(F.sin(dl / 2), 2)
    # least() skips NULLs: an unknown country must stay NULL, not become the antipode.
    return F.when(
        h.isNotNull(), 2 * EARTH_RADIUS_KM * F.asin(F.least(F.lit(1.0), F.sqrt(h)))
    )
