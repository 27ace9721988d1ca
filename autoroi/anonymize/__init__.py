"""Anonymization: the raw zone, which still holds personal data, into
``curated/``, which must not.

Why this way:

- **Allow-list, fail closed.** Only columns someone has decided about reach
  ``curated/``; a column the source adds tomorrow stays out (and is reported)
  until it is allowed. A deny-list would let it through silently.
- **Keyed pseudonyms, not hashes.** Customer and dealer ids become
  HMAC-SHA256 pseudonyms under a secret key: joins and repeat-purchase
  features still work, but nobody without the key can recompute them from a
  customer number (an unkeyed hash of a small id space is reversed by brute
  force).
- **Generalized quasi-identifiers.** Birth date, ZIP and a purchase can
  single a person out together; curated keeps an age band (90+ collapsed) and
  a ZIP3 area (small areas "000") instead.
- **A gate that does not trust the above** (:mod:`autoroi.anonymize.scan`):
  every output is searched for e-mail, phone and VIN patterns and for every
  direct-identifier value of the raw zone before anything is published.
"""

from autoroi.anonymize.core import (
    AnonymizeReport,
    TableReport,
    Zip3Report,
    age_band_labels,
    age_bands,
    anonymize_tables,
    default_as_of,
    pseudonymize_columns,
    zip3,
)
from autoroi.anonymize.pseudonym import MIN_KEY_BYTES, Pseudonymizer, load_hmac_key
from autoroi.anonymize.scan import (
    Finding,
    IdentifierSet,
    ScanReport,
    collect_identifiers,
    scan_for_pii,
)

__all__ = [
    "MIN_KEY_BYTES",
    "AnonymizeReport",
    "Finding",
    "IdentifierSet",
    "Pseudonymizer",
    "ScanReport",
    "TableReport",
    "Zip3Report",
    "age_band_labels",
    "age_bands",
    "anonymize_tables",
    "collect_identifiers",
    "default_as_of",
    "load_hmac_key",
    "pseudonymize_columns",
    "scan_for_pii",
    "zip3",
]
