"""Kubernetes resource quantities (`128Mi`, `1G`, `500m`, `1e3`) as numbers. Pure.

The grammar of `k8s.io/apimachinery/pkg/api/resource`: a signed decimal number, then a binary
suffix (Ki … Ei), a decimal suffix (n u m k M G T P E) or a decimal exponent (`e3`, `E-2`).
"""

from __future__ import annotations

import re
from typing import Any

_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:([KMGTPE]i|[numkMGTPE])|[eE]([+-]?[0-9]+))?$")
_FACTORS = {
    None: 1.0, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
}


def parse_quantity(value: Any) -> float:
    """The quantity in base units (bytes, cores); ValueError if it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a quantity")
    if isinstance(value, (int, float)):
        return float(value)
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise ValueError(f"{value!r} is not a quantity (e.g. 64Mi, 1G, 500m)")
    number, suffix, exponent = match.groups()
    if exponent is not None:
        return float(number) * 10.0 ** int(exponent)
    return float(number) * _FACTORS[suffix]
