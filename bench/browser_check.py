"""The two pages a user looks at, checked in a real browser (headless Chromium), offline:

1. `make plots` (python -m rsis.plots show): dvc_plots/index.html must draw every Vega chart
   without network; counted in the rendered page (one ``marks`` canvas per chart).
2. `make ui`: the MLflow UI on this project's mlflow.db (written by `make repro`) must open on the
   rsis experiment's runs, and an evaluate run's page must list its params and metrics.

    make browser-check                 # after make repro; screenshots -> bench/browser/*.png

Screenshots and a summary (bench/browser/check.json) are written for a person to look at. Without
Chromium on PATH (`apt-get install chromium`) it prints one line and exits 0: CI has no browser.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "browser"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# as root, offline: no sandbox, and nothing that phones home (refused connections otherwise)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(url: str, *args: str, budget_ms: int = 20000) -> str:
    """Load ``url`` in a fresh headless profile, let its scripts run ``budget_ms`` of virtual time, return stdout."""
    browser = next(b for b in map(shutil.which, BROWSERS) if b)
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                              *args, url], capture_output=True, text=True, timeout=180)
    if out.returncode != 0:
        raise RuntimeError(f"chromium failed on {url} ({out.returncode}): {out.stderr[-2000:]}")
    return out.stdout


def look(url: str, name: str, size: str) -> tuple[str, Path]:
    """The page's DOM after its scripts ran, and a screenshot of it at ``size`` (WxH)."""
    shot = OUT / f"{name}.png"
    chromium(url, f"--window-size={size}", f"--screenshot={shot}")
    return chromium(url, "--dump-dom"), shot


def check_plots() -> dict:
    done = subprocess.run([sys.executable, "-m", "rsis.plots", "show"], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"python -m rsis.plots show failed:\n{done.stdout}\n{done.stderr}")
    page = ROOT / "dvc_plots" / "index.html"
    charts = page.read_text(encoding="utf-8").count("vegaEmbed('#")
    dom, shot = look(page.as_uri(), "plots", "1300x1500")
    drawn = dom.count('class="marks"')
    images = dom.count("<img")
    print(f"plots: {drawn} of {charts} Vega charts drawn offline, {images} PNG figures; screenshot {shot.relative_to(ROOT)}")
    if drawn < charts or charts == 0:
        raise SystemExit(f"browser check: only {drawn} of {charts} Vega charts drew in {page}")
    return {"vega_charts": charts, "drawn": drawn, "png_figures": images, "screenshot": str(shot.relative_to(ROOT))}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


def check_mlflow() -> dict:
    db = ROOT / "mlflow.db"
    if not db.is_file():
        print("mlflow: skipped, no mlflow.db (make repro writes it)")
        return {"skipped": "no mlflow.db"}
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    from rsis.tracking import EXPERIMENT, tracking_uri, ui_url

    client = MlflowClient(tracking_uri(ROOT))
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], "tags.stage = 'evaluate' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise SystemExit(f"browser check: no finished evaluate run in {db}: run make repro first")
    run = runs[0]
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri(ROOT),
                               "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(f"http://127.0.0.1:{port}/health", 120)
        table_dom, table_shot = look(ui_url(ROOT, port), "mlflow_runs", "1500x900")
        run_dom, run_shot = look(ui_url(ROOT, port, run.info.run_id), "mlflow_evaluate_run", "1500x2600")
    finally:
        server.terminate()
        server.wait(timeout=30)
    stages = sorted({s for s in ("download", "convert", "train", "evaluate", "analyze") if f">{s}" in table_dom})
    metric, param = "segm.AP50", "evaluate.bootstrap_resamples"
    found = {"runs_table_stages": stages, "metric_shown": metric in run_dom, "param_shown": param in run_dom}
    print(f"mlflow: runs table lists stages {stages}; the evaluate run's page shows {metric}: {found['metric_shown']},"
          f" {param}: {found['param_shown']}; screenshots {table_shot.relative_to(ROOT)}, {run_shot.relative_to(ROOT)}")
    if "evaluate" not in stages or not found["metric_shown"] or not found["param_shown"]:
        raise SystemExit("browser check: the MLflow UI did not show the runs, or the evaluate run's params and metrics")
    return {**found, "run_id": run.info.run_id, "screenshots": [str(table_shot.relative_to(ROOT)),
                                                                 str(run_shot.relative_to(ROOT))]}


def main() -> None:
    browser = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if browser is None:
        print("browser check skipped: no Chromium on PATH (apt-get install chromium)")
        return
    OUT.mkdir(parents=True, exist_ok=True)
    version = subprocess.run([browser, "--version"], capture_output=True, text=True).stdout.strip()
    report = {"browser": version, "plots": check_plots(), "mlflow": check_mlflow()}
    (OUT / "check.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}/check.json")


if __name__ == "__main__":
    main()
