"""What the dashboard's pickers offer for a served version: the regions,
vehicle models, segments, servable pairs, incentive types and weeks of its
artifact's context table, by the same rules as the server's request checks
(``Vocabulary``), so every pair the dashboard offers is one the server accepts.
The local router (``GET /options``) and the model server (``GET
/v2/models/roi/options``, which the dashboard image proxies as ``/options``)
both answer with it; the document is described in ``serving/router/options.py``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from autoroi.serving.validation import Vocabulary

CONTEXT_COLUMNS = ["region", "vehicle_model", "cell_level", "segment", "super_region", "msrp", "week_start"]
_FINE_REGION = ("region_model", "region_segment")
_FINE_MODEL = ("region_model", "super_region_model")


def options_document(context: pd.DataFrame, incentive_types_seen: Any, version: str | None) -> dict[str, Any]:
    """The options of an artifact's context table (``CONTEXT_COLUMNS``)."""
    context = context[CONTEXT_COLUMNS]
    vocab = Vocabulary.from_context(context, incentive_types_seen)

    keys = context.drop_duplicates(["region", "vehicle_model"])
    fine_regions = sorted(set(keys.loc[keys["cell_level"].isin(_FINE_REGION), "region"].astype(str)))
    fine = context[context["cell_level"].isin(_FINE_MODEL)]
    models = []
    for name, rows in fine.groupby("vehicle_model", sort=True):
        msrp = float(rows["msrp"].median()) if rows["msrp"].notna().any() else None
        models.append({"name": str(name), "segment": str(rows["segment"].iloc[0]), "msrp": msrp})
    # the server also accepts super-region and segment names (the coarser cells
    # the master merged small cells into): the pickers list real regions and
    # vehicle models only, and the pairs among them that the server accepts
    regions = fine_regions or sorted(vocab.regions)
    region_set, names = set(regions), {m["name"] for m in models}
    pairs = sorted((r, m) for r, m in vocab.pairs if r in region_set and m in names)
    weeks = context["week_start"]
    return {
        "version": version,
        "regions": regions,
        "segments": sorted({str(m["segment"]) for m in models}),
        "vehicle_models": models,
        "pairs": [list(p) for p in pairs],
        "incentive_types": [t for t in vocab.incentive_types if t != "none"],
        "weeks": {
            "first": str(weeks.min())[:10] if len(weeks) else None,
            "last": str(weeks.max())[:10] if len(weeks) else None,
        },
    }
