"""``autoroi serve`` (a model server for one version, in the foreground; or
stop the local deployment) and ``autoroi predict`` (a small REST client)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from autoroi.cli.common import config_option, lake_option, load


@click.command()
@click.option("--version", default=None, help="Registry version to serve.")
@click.option("--deployed", is_flag=True, help="Serve the version the registry marks as deployed.")
@click.option("--port", type=int, default=None, help="HTTP port (default: serving.port + 1).")
@click.option("--stop", is_flag=True, help="Stop the local endpoint and every local model server.")
@config_option
@lake_option
def serve(
    version: str | None,
    deployed: bool,
    port: int | None,
    stop: bool,
    config_path: Path | None,
    lake_uri: str | None,
) -> None:
    """Run the KServe model server for one version in the foreground, or --stop
    what the local deploy started."""
    from autoroi.cli.render import console
    from autoroi.errors import AutoroiError

    cfg = load(config_path, None, lake_uri)
    if stop:
        from autoroi.deploy.local import LocalTarget, stop_endpoint

        stopped = LocalTarget(cfg.serving.state_dir, cfg.lake.uri).stop_all()
        router = stop_endpoint(cfg.serving.state_dir)
        endpoint = "stopped" if router else "not running"
        console.print(f"stopped model servers: {', '.join(stopped) or 'none'}; local endpoint: {endpoint}")
        return
    if bool(version) == deployed:
        raise AutoroiError("give either --version V or --deployed")
    if deployed:
        from autoroi.lake.storage import open_lake
        from autoroi.registry import production_version

        prod = production_version(open_lake(cfg.lake.uri, cfg.lake))
        if prod is None:
            raise AutoroiError(f"no version is deployed in {cfg.lake.uri}; use --version V")
        version = prod.version
    assert version is not None
    http_port = port or cfg.serving.port + 1
    console.print(f"serving {version} on http://{cfg.serving.host}:{http_port} (Ctrl-C stops)")
    args = [
        sys.executable,
        "-m",
        "serving.roi_server",
        "--lake",
        cfg.lake.uri,
        "--version",
        version,
        "--http_port",
        str(http_port),
        "--max-batch",
        str(cfg.serving.max_batch),
        "--access-log",
        str(cfg.serving.access_log).lower(),
        "--enable_grpc",
        "false",
    ]
    sys.stdout.flush()
    os.execv(sys.executable, args)  # the server replaces this process


def read_scenarios(path: Path) -> list[dict[str, Any]]:
    """CSV (header row) or JSON (a list of objects, or {"instances": [...]})."""
    from autoroi.errors import AutoroiError

    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        import csv
        import io

        rows: list[dict[str, Any]] = list(csv.DictReader(io.StringIO(text)))
        for r in rows:
            amount = r.get("incentive_amount")
            if isinstance(amount, str) and amount:
                try:
                    r["incentive_amount"] = float(amount)
                except ValueError:
                    continue  # sent as it is: the server names the field
        return rows
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise AutoroiError(f"{path}: not CSV (by its suffix) and not valid JSON: {e}") from e
    items = doc.get("instances") if isinstance(doc, dict) else doc
    if not isinstance(items, list) or not all(isinstance(r, dict) for r in items):
        raise AutoroiError(f'{path}: expected a list of scenario objects or {{"instances": [...]}}')
    return items


@click.command()
@click.option("--url", required=True, help="Endpoint base URL, e.g. http://127.0.0.1:8080")
@click.option(
    "--input", "input_path", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True
)
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON answer.")
@click.option(
    "--amounts",
    "amounts",
    is_flag=False,
    flag_value="auto",
    default=None,
    metavar="[LO:HI:STEP|A,B,...]",
    help="Also search each scenario's amount: break-even, most profitable, and the largest with"
    " P(ROI > 0) >= --min-prob-pays-back. Without a grid: the dashboard's what-if range.",
)
@click.option(
    "--min-prob-pays-back",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.8,
    show_default=True,
    help="With --amounts: the chance of paying back the 'safe' amount needs.",
)
def predict(
    url: str, input_path: Path, as_json: bool, amounts: str | None, min_prob_pays_back: float
) -> None:
    """Send scenarios (CSV or JSON) to the v1 endpoint and print the ROI table."""
    from autoroi.cli.render import amounts_table, console, roi_table

    instances = read_scenarios(input_path)
    body = _post_v1(url, instances)
    decisions = None
    if amounts is not None:
        from autoroi.decisions import amount_decisions, default_amounts, parse_amount_grid

        grid = None if amounts == "auto" else parse_amount_grid(amounts)
        decisions = []
        for scenario, answer in zip(instances, body["predictions"], strict=True):
            points = grid or default_amounts(_number(scenario.get("incentive_amount")))
            curve = _post_v1(url, [{**scenario, "incentive_amount": a} for a in points])["predictions"]
            decisions.append(
                {
                    "scenario": scenario,
                    "answer": answer,
                    **amount_decisions(points, curve, min_prob_pays_back),
                }
            )
    if as_json:
        doc = (
            body
            if decisions is None
            else {"model_version": body.get("model_version"), "decisions": decisions}
        )
        click.echo(json.dumps(doc, indent=2))
        return
    console.print(roi_table(body["predictions"], f"ROI predictions ({body.get('model_version', '?')})"))
    if decisions is not None:
        console.print(amounts_table(decisions, f"Amounts (P(ROI > 0) >= {min_prob_pays_back:g} for 'safe')"))


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _post_v1(url: str, instances: list[dict[str, Any]]) -> dict[str, Any]:
    """The v1 answer for ``instances``; a batch the server finds too large
    (HTTP 413, its --max-batch) goes again in halves, as the dashboard does."""
    import httpx

    from autoroi.errors import AutoroiError

    try:
        r = httpx.post(f"{url.rstrip('/')}/v1/models/roi:predict", json={"instances": instances}, timeout=60)
    except httpx.HTTPError as e:
        raise AutoroiError(f"cannot reach {url}: {e}") from e
    if r.status_code == 413 and len(instances) > 1:
        half = len(instances) // 2
        first, second = _post_v1(url, instances[:half]), _post_v1(url, instances[half:])
        return {**second, "predictions": first["predictions"] + second["predictions"]}
    try:
        body: dict[str, Any] = r.json()
    except ValueError:
        body = {"error": r.text[:300]}
    if r.status_code != 200:
        where = f" (field {body.get('field')}: {body.get('reason')})" if body.get("field") else ""
        raise AutoroiError(f"{url} answered {r.status_code}: {body.get('error')}{where}")
    return body
