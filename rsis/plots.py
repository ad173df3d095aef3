"""`dvc plots` that draw offline: DVC's page with Vega, Vega-Lite and Vega-Embed inlined.

DVC's default page loads those three scripts from a CDN, so without network its charts stay
blank. vl-convert-python ships them bundled; this writes an HTML template holding that bundle
(``.dvc/tmp/plots_offline.html``, made once per vl-convert version) and runs ``dvc plots`` with it:

    python -m rsis.plots show                 # = dvc plots show --html-template <template>
    python -m rsis.plots diff HEAD~1          # any `dvc plots` verb and its arguments
    make plots                                # show, then prints the page's path

The page (dvc_plots/index.html) is one self-contained file plus DVC's static/ images; open it in
any browser. Without vl-convert-python installed the command says so and stops.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rsis.runtime import project_root

TEMPLATE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot (offline)</title>
    <!-- Vega, Vega-Lite and Vega-Embed from vl-convert-python VERSION, inlined: no network needed -->
    <script type="text/javascript">BUNDLE</script>
    <style>
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def template_path(root: Path | None = None) -> Path:
    """The offline template, written when missing or made by another vl-convert version."""
    try:
        import vl_convert
    except ImportError:
        sys.exit("rsis.plots: vl-convert-python is not installed (make venv installs it): "
                 "it provides the Vega scripts the offline page inlines")
    version = getattr(vl_convert, "__version__", "unknown")
    path = (root or project_root()) / ".dvc" / "tmp" / "plots_offline.html"
    stamp = f"vl-convert-python {version}, inlined"
    if not path.is_file() or stamp not in path.read_text(encoding="utf-8"):
        bundle = vl_convert.javascript_bundle()
        if "</script" in bundle:  # would end the inline <script> early
            bundle = bundle.replace("</script", "<\\/script")
        page = TEMPLATE.replace("BUNDLE", bundle).replace("VERSION, inlined", f"{version}, inlined")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv) or ["show"]
    if "--html-template" in args:
        sys.exit("rsis.plots: --html-template is this command's own (the offline template); run dvc plots directly "
                 "for another")
    root = project_root()
    command = [sys.executable, "-m", "dvc", "plots", *args[:1], "--html-template", str(template_path(root)), *args[1:]]
    return subprocess.run(command, cwd=root).returncode


if __name__ == "__main__":
    sys.exit(main())
