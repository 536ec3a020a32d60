"""Does a report read on one screen as a user sees it? Headless Chromium lays the report out
at a laptop's window size; a script measures what it drew; this fails on what can be
detected, and keeps a screenshot to look at.

    .venv/bin/python benchmarks/report/layout_check.py PATH/report.html [--out DIR]

Checks (the window is 1280 x 900 CSS px):
- nothing wider than the window (no horizontal scrolling);
- the results table takes at most one screen height per dozen rows;
- no two figures overlap, and no figure is wider than the window;
- every figure's image is at most 2.5 times as tall as it is wide (a legend grown past its
  plot shows here).
Needs `chromium-headless-shell` (Debian: apt install chromium-headless-shell).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WIDTH, HEIGHT = 1280, 900
BROWSER = "chromium-headless-shell"
# Runs in the page once it is laid out: what it measures goes into <pre id="layout">,
# which --dump-dom prints.
MEASURE = """
<script>
window.addEventListener("load", () => {
  const rect = e => { const r = e.getBoundingClientRect();
    return {x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height}; };
  const rows = [...document.querySelectorAll("#results tbody tr")];
  const out = {
    window_w: innerWidth, page_w: document.documentElement.scrollWidth,
    result_rows: rows.length,
    result_columns: [...document.querySelectorAll("#results thead th")].map(
      th => [th.textContent, Math.round(th.getBoundingClientRect().width)]),
    // The outermost elements past the window's right edge (their children follow them).
    wide: [...document.querySelectorAll("body *")]
      .filter(e => e.getBoundingClientRect().right > innerWidth + 1
              && !(e.parentElement.getBoundingClientRect().right > innerWidth + 1)
              || e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === "visible"
              && e.tagName !== "HTML" && e.tagName !== "BODY")
      .map(e => ({tag: e.tagName.toLowerCase(), section: e.closest("section")?.id || "",
                  w: Math.round(e.getBoundingClientRect().width)})),
    results_h: rows.reduce((s, r) => s + r.getBoundingClientRect().height, 0),
    images: [...document.querySelectorAll("img")].map(i => ({...rect(i),
      natural_w: i.naturalWidth, natural_h: i.naturalHeight,
      alt: i.alt || (i.closest("figure")?.querySelector("figcaption")?.textContent || "")}))
  };
  const pre = document.createElement("pre"); pre.id = "layout";
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
</script>
"""


def measure(report: Path, out: Path) -> dict:
    browser = shutil.which(BROWSER)
    if browser is None:
        sys.exit(f"{BROWSER} is not installed; fix: apt install {BROWSER}")
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(report.read_text(encoding="utf-8").replace("</body>", MEASURE
                                                                  + "</body>"))
        common = [browser, "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                  f"--window-size={WIDTH},{HEIGHT}", "--virtual-time-budget=5000"]
        dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True,
                             text=True, timeout=120, check=True).stdout
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run([*common, f"--screenshot={out / 'first_screen.png'}", report.as_uri()],
                       capture_output=True, timeout=120, check=True)
    found = re.search(r'<pre id="layout">(.*?)</pre>', dom, re.S)
    if not found:
        sys.exit("the measuring script did not run (no layout in the dumped page)")
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def problems(layout: dict) -> list[str]:
    found = []
    if layout["page_w"] > layout["window_w"] + 1:
        wide = ", ".join(f"{w['tag']} in #{w['section']} ({w['w']} px)"
                         for w in layout["wide"][:6])
        if any(w["section"] == "results" for w in layout["wide"]):
            wide += "; its columns: " + ", ".join(f"{name} {w}" for name, w in
                                                  layout["result_columns"])
        found.append(f"the page is {layout['page_w']} px wide in a {layout['window_w']} px "
                     f"window (horizontal scrolling): {wide}")
    rows = layout["result_rows"]
    if rows and layout["results_h"] > HEIGHT * max(1.0, rows / 12):
        found.append(f"the results table's {rows} rows take {layout['results_h']:.0f} px, over "
                     f"one {HEIGHT} px screen per dozen rows")
    images = layout["images"]
    for i, a in enumerate(images):
        if a["w"] > layout["window_w"]:
            found.append(f"figure {a['alt'][:60]!r} is {a['w']:.0f} px wide")
        if a["natural_w"] and a["natural_h"] > 2.5 * a["natural_w"]:
            found.append(f"figure {a['alt'][:60]!r} is {a['natural_w']} x {a['natural_h']} px "
                         "(taller than 2.5 x its width)")
        for b in images[i + 1:]:
            if (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
                    and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]):
                found.append(f"figures {a['alt'][:40]!r} and {b['alt'][:40]!r} overlap")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--out", type=Path, default=Path("report-layout"))
    args = parser.parse_args()
    layout = measure(args.report, args.out)
    print(f"window {layout['window_w']} px, page {layout['page_w']} px wide; results table "
          f"{layout['result_rows']} rows in {layout['results_h']:.0f} px; "
          f"{len(layout['images'])} figures; screenshot {args.out / 'first_screen.png'}")
    found = problems(layout)
    for p in found:
        print(f"FAIL: {p}")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
