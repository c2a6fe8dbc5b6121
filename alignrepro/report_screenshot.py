"""Headless-Chromium screenshots of the Snakemake report: the README's images and the report's browser test.

`snakemake --report report.html` writes one self-contained page (React, Tailwind and every item embedded as a data
URI). The page has no address for a view, so to show one item this writes a copy of it whose last script opens the
item as a click would (the item in the viewer, its caption in the side panel), then runs Chromium's own headless
`--screenshot` (or `--dump-dom`) on that copy:

    python -m alignrepro.report_screenshot --report report.html --item results/evals/ci/leaderboard.html \\
        --out docs/img/report.png
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from alignrepro.errors import UserError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Runs after the report's own scripts: `results` (path -> item) and `app` (the React app) are their globals.
OPEN_ITEM = """<script>
function alignreproOpenItem() {
  if (typeof app === "undefined" || !app) { setTimeout(alignreproOpenItem, 50); return; }  // React renders async
  var path = %s;
  if (!(path in results)) { document.body.setAttribute("data-missing-item", path); return; }
  var entry = results[path];
  var mime = entry.mime_type;
  var content = mime === "text/html" ? "html" : (mime.indexOf("image/") === 0 ? "img" : "text");
  // one state change: two calls in a row would each start from the old state (React batches them)
  app.setView({navbarMode: "resultinfo", content: content, contentPath: entry.data_uri, resultPath: path});
}
window.addEventListener("load", alignreproOpenItem);
</script>
"""


def find_chromium() -> str | None:
    """A Chromium binary: $CHROMIUM if set, else the first of CHROMIUM_NAMES on PATH."""
    if os.environ.get("CHROMIUM"):
        return shutil.which(os.environ["CHROMIUM"]) or None
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def page_showing(report: Path, item: str | None) -> str:
    """The report's HTML, opening `item` (a result path as the report lists it) once loaded; unchanged for None."""
    try:
        text = report.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"report {report}: cannot be read ({e.strerror}); make it with `snakemake --report`") from e
    if item is None:
        return text
    script = OPEN_ITEM % json.dumps(item)
    head, sep, tail = text.rpartition("</body>")
    return head + script + sep + tail if sep else text + script


def _chromium(args: list[str], page: str, chromium: str | None, timeout: float) -> subprocess.CompletedProcess:
    binary = chromium or find_chromium()
    if binary is None:
        raise UserError(f"no Chromium found ({', '.join(CHROMIUM_NAMES)} or $CHROMIUM): apt-get install chromium")
    with tempfile.TemporaryDirectory(prefix="alignrepro-report-") as tmp:
        copy = Path(tmp) / "report.html"
        copy.write_text(page, encoding="utf-8")
        cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--hide-scrollbars", f"--user-data-dir={tmp}/profile", "--virtual-time-budget=10000",
               *args, copy.as_uri()]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp)


def screenshot(
    report: Path,
    out: Path,
    item: str | None = None,
    size: tuple[int, int] = (1400, 900),
    chromium: str | None = None,
    timeout: float = 180,
) -> Path:
    """A PNG of the report page (with `item` opened) at `size` (width, height) pixels."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = _chromium([f"--window-size={size[0]},{size[1]}", f"--screenshot={out}"], page_showing(report, item),
                     chromium, timeout)  # fmt: skip
    if proc.returncode != 0 or not out.is_file():
        raise UserError(f"Chromium made no screenshot of {report} (exit {proc.returncode}): {proc.stderr[-1500:]}")
    return out


def rendered_dom(report: Path, item: str | None = None, chromium: str | None = None, timeout: float = 180) -> str:
    """The report's DOM after its scripts ran (with `item` opened): what the browser shows, as HTML."""
    proc = _chromium(["--dump-dom"], page_showing(report, item), chromium, timeout)
    if proc.returncode != 0:
        raise UserError(f"Chromium could not render {report} (exit {proc.returncode}): {proc.stderr[-1500:]}")
    return proc.stdout


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m alignrepro.report_screenshot", description=__doc__.split("\n")[0])
    ap.add_argument("--report", type=Path, required=True, help="the page `snakemake --report report.html` wrote")
    ap.add_argument("--item", help="a result to open, as the report lists it (e.g. results/evals/ci/leaderboard.html)")
    ap.add_argument("--out", type=Path, required=True, help="the PNG to write")
    ap.add_argument("--size", default="1400,900", help="window width,height in pixels")
    args = ap.parse_args(argv)
    width, height = (int(v) for v in args.size.split(","))
    print(screenshot(args.report, args.out, args.item, (width, height)))


if __name__ == "__main__":
    main()
