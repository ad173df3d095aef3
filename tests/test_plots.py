"""Offline `dvc plots` (rsis/plots.py) and the browser check's no-browser path (bench/browser_check.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dvc_render.html import HTML

from rsis.plots import main, template_path

ROOT = Path(__file__).resolve().parent.parent


def test_the_template_inlines_vega_and_loads_nothing(tmp_path):
    path = template_path(tmp_path)
    assert path == tmp_path / ".dvc" / "tmp" / "plots_offline.html"
    text = path.read_text(encoding="utf-8")
    for needed in ("window.vegaEmbed=", "window.vega=", "window.vegaLite=", "{plot_divs}"):
        assert needed in text, needed
    assert "<script src" not in text and "https://" not in text.split("<script", 1)[0]
    # DVC's renderer fills it: the charts' own script follows the inlined libraries, no CDN script is added
    page = HTML(text).with_scripts('<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>').with_element(
        "<div id='loss'></div><script>vegaEmbed('#loss', {});</script>").embed()
    assert "cdn.jsdelivr" not in page and page.index("window.vegaEmbed=") < page.index("vegaEmbed('#loss'")


def test_the_template_is_made_once(tmp_path):
    path = template_path(tmp_path)
    path.write_text(path.read_text(encoding="utf-8") + "<!-- kept -->", encoding="utf-8")
    assert template_path(tmp_path).read_text(encoding="utf-8").endswith("<!-- kept -->")


def test_another_template_is_refused_by_name():
    with pytest.raises(SystemExit, match="--html-template is this command's own"):
        main(["show", "--html-template", "x.html"])


def test_the_browser_check_skips_in_one_line_without_a_browser(tmp_path):
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # no chromium there
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "browser_check.py")], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "browser check skipped: no Chromium on PATH (apt-get install chromium)\n"
