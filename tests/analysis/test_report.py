"""The offline HTML report and the PNG plots."""

from __future__ import annotations

import base64
import re
import struct
from datetime import UTC, datetime
from html import escape

import numpy as np
import pytest

from analysis.plots import latency_cdf_png, throughput_bar_png
from analysis.report import render_report, result_row
from analysis.summary import summarize_point
from analysis.verdict import judge_point

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    return struct.unpack(">II", data[16:24])  # IHDR width, height


def _summary():
    n = 300
    sched = np.arange(n, dtype=np.int64) * 10_000_000
    done = sched + np.arange(1, n + 1, dtype=np.int64) * 100_000  # 0.1 .. 30 ms
    return summarize_point(
        sched, sched, done, np.full(n, 200), started_ns=0, ended_ns=3 * 10**9, open_loop=True
    )


def test_cdf_png_is_small_and_handles_empty_series(tmp_path):
    rng = np.random.default_rng(1)
    out = latency_cdf_png(
        {"a": rng.lognormal(1, 0.5, 500), "empty": np.array([])},
        tmp_path / "sub" / "cdf.png",
        title="CDF",
        slo_ms=5.0,
    )
    assert out == tmp_path / "sub" / "cdf.png"
    assert _png_size(out.read_bytes()) == (1000, 400)  # 10 x 4 in at 100 dpi
    assert out.stat().st_size < 200_000
    bar = throughput_bar_png([("a", 10.0), ("b", 20.0)], tmp_path / "bar.png")
    assert _png_size(bar.read_bytes())[0] == 800


@pytest.fixture(scope="module")
def summary_and_png(tmp_path_factory):
    # Drawn once for the module: plotting dominates the run time of these tests.
    s = _summary()
    png = latency_cdf_png(
        {"onnx/b1": s.latencies_ms},
        tmp_path_factory.mktemp("png") / "cdf.png",
        title="CDF",
        slo_ms=25,
    )
    return s, png


@pytest.fixture
def report(summary_and_png):
    s, png = summary_and_png
    verdict, reasons, meets = judge_point(
        s,
        complete=True,
        stop_reason="max_duration_s",
        min_duration_s=10.0,
        min_requests=200,
        slo_percentile=99.0,
        slo_latency_ms=25.0,
        open_loop=True,
    )
    return {
        "run": {
            "run_id": 7,
            "name": "smoke <b>run</b>",
            "status": "success",
            "verdict": "INVALID",
            "verdict_reasons": ["point onnx/b1 is INVALID"],
            "created_at": "2025-01-01T00:00:00Z",
            "spec": {"model": "resnet", "note": "<script>alert(1)</script>"},
        },
        "results": [
            result_row(
                s,
                platform="onnxruntime",
                batch_size=1,
                arrival="poisson",
                target_rate_rps=100.0,
                verdict=verdict,
                verdict_reasons=reasons,
                meets_slo=meets,
                label="onnx/b1",
            )
        ],
        "conversions": [
            {"format": "onnx", "max_abs_diff": 1.2e-6, "tolerance": 1e-4, "passed": True}
        ],
        "deployments": [
            {
                "platform": "onnxruntime",
                "version": "1.18",
                "cold_start_s": 2.5,
                "status": "ready",
                "error": None,
            }
        ],
        "provenance": {"git_commit": "abc123", "gpus": ["H100"]},
        "images": [("Latency CDF", png)],
    }


def test_report_is_self_contained_and_ordered(tmp_path, report):
    out = render_report(report, tmp_path / "out")
    assert out == tmp_path / "out" / "report.html"
    html = out.read_text(encoding="utf-8")

    # Verdict first, then the tables in the documented order.
    marks = [
        'class="verdict INVALID"',
        'id="results"',
        'id="conversions"',
        'id="deployments"',
        'id="plots"',
        'id="provenance"',
        'id="spec"',
    ]
    positions = [html.index(m) for m in marks]
    assert positions == sorted(positions)
    assert html.index("point onnx/b1 is INVALID") < html.index("<table")

    # The plot is embedded and decodes to the PNG that was written.
    m = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert m and base64.b64decode(m.group(1)) == report["images"][0][1].read_bytes()

    # Offline: no external reference of any kind.
    assert "http://" not in html and "https://" not in html
    assert not re.search(r'(src|href)="(?!data:)', html)

    # Escaped, not injected.
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "smoke &lt;b&gt;run&lt;/b&gt;" in html


def test_report_shows_the_numbers(tmp_path, report):
    html = render_report(report, tmp_path).read_text(encoding="utf-8")
    row = html[html.index('id="results"') : html.index('id="conversions"')]
    # 300 ok requests of 0.1..30 ms over 3 s: p50 = 15.0, p99 = 29.7, p99.9 = 30.0 ms.
    for cell in (
        "onnxruntime",
        "100 rps",
        ">300 / 0<",
        ">100.0<",
        ">15.00<",
        ">29.70<",
        ">30.00<",
        ">no<",
        ">INVALID<",
        "ran 3.0 s &lt; min_duration_s 10.0",
    ):
        assert cell in row, cell
    assert ">1.2e-06<" in html and ">2.50<" in html and "abc123" in html
    assert "&#34;model&#34;: &#34;resnet&#34;" in html  # pretty JSON spec, escaped


def test_valid_run_is_green_and_missing_image_fails(tmp_path, report):
    report["run"]["verdict"] = "VALID"
    html = render_report(report, tmp_path).read_text(encoding="utf-8")
    assert 'class="verdict VALID"' in html and ".verdict.VALID { background: #1a7f37; }" in html
    report["images"] = [("gone", tmp_path / "missing.png")]
    with pytest.raises(FileNotFoundError):
        render_report(report, tmp_path)


def test_database_shaped_rows_are_accepted(tmp_path, report):
    # Rows as the analyze stage reads them from the results database: aliases
    # target_rate_rps / reasons / latency_ms["p99_ci"], atol/rtol, platform_version.
    row = report["results"][0]
    db_row = {k: v for k, v in row.items() if k not in ("p99_ci_ms", "reasons")}
    db_row["latency_ms"] = {**row["latency_ms"], "p99_ci": [28.1, None]}
    db_row["reasons"] = ["closed & <fine>"]
    report["results"] = [db_row]
    report["conversions"] = [
        {"format": "onnx", "max_abs_diff": 3e-7, "atol": 1e-5, "rtol": 1e-3, "passed": False}
    ]
    report["deployments"] = [
        {"platform": "triton", "platform_version": "2.51", "status": "failed", "error": "boom"}
    ]
    report["run"]["created_at"] = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    html = render_report(report, tmp_path).read_text(encoding="utf-8")
    assert ">[28.1, needs 368]<" in html
    assert "closed &amp; &lt;fine&gt;" in html
    assert "atol 1e-05, rtol 0.001" in html and ">2.51<" in html and ">boom<" in html
    assert "created 2025-03-04 05:06:07+00:00" in html


def test_the_answer_is_a_banner_above_the_verdict_and_rungs_show_beside_it(tmp_path, report):
    banner = ("Best within p99 <= 25 ms: onnxruntime b1 [db=off,inst=1] - >= 100 req/s "
              "(>= 100 items/s, search cap reached), no price known")
    report["answer"] = banner
    report["results"][0]["rung"] = "fails: INVALID: ran 3.0 s < min_duration_s 10.0"
    html = render_report(report, tmp_path).read_text(encoding="utf-8")
    assert html.index('id="answer"') < html.index('id="verdict"') < html.index('id="results"')
    assert f'<p class="answer">{escape(banner)}</p>' in html
    # Validity and the SLO stay apart: the verdict, the SLO flag and the rung all show.
    row = html[html.index('id="results"'): html.index('id="conversions"')]
    assert ">INVALID<" in row and ">no<" in row
    assert "<summary>fails</summary>INVALID: ran 3.0 s" in row
    report["answer"] = "no configuration meets p99 <= 25 ms; the lowest load tried ..."
    assert '<p class="answer none">' in render_report(report, tmp_path).read_text()


def test_capacity_plot_marks_rungs_slo_and_capacity(tmp_path):
    from analysis.capacity import capacities
    from analysis.plots import capacity_png

    def point(i, rate, p99, tp=None, verdict="VALID", platform="onnxruntime"):
        return {"run_id": "r", "platform": platform, "batch_size": 1, "point": i,
                "target_rate_rps": rate, "throughput_rps": tp or rate, "n_failed": 0,
                "latency_ms": {"p99": p99}, "verdict": verdict, "reasons": []}

    families = capacities([point(0, 10, 5), point(1, 20, 9), point(2, 40, 70),
                           point(3, 30, 20, verdict="INVALID"),
                           point(0, 10, 90, platform="triton")],
                          slo_percentile=99, slo_ms=50)
    out = capacity_png([(f.platform, f) for f in families], tmp_path / "cap.png",
                       percentile=99, slo_ms=50)
    # 11 x (4 + 0.22 x 2 legend rows) inches at 100 dpi.
    assert _png_size(out.read_bytes()) == (1100, 444)
    empty = capacity_png([], tmp_path / "empty.png", percentile=99, slo_ms=50)
    assert empty.read_bytes()[:8] == PNG_MAGIC


def test_prediction_plot_and_a_sections_parts(tmp_path, report):
    """The predicted-vs-measured plot (measured markers, predicted lines, capacity and
    SLO), and a section's parts: each under its own escaped heading, its plot embedded."""
    from analysis.plots import prediction_png

    out = prediction_png([(100.0, 5.0, 9.0), (200.0, 6.0, None)],
                         [(50.0, 5.0, 6.0), (150.0, 5.5, 7.5), (290.0, None, None)],
                         tmp_path / "pred.png", title="predicted vs measured",
                         capacity_rps=300.0, slo_ms=50.0, percentile=99.0)
    assert _png_size(out.read_bytes()) == (800, 450)
    empty = prediction_png([], [], tmp_path / "empty.png", title="none")
    assert empty.read_bytes()[:8] == PNG_MAGIC
    report["sections"] = [{
        "id": "prediction", "title": "Predicted vs measured", "notes": ["about"],
        "tables": [], "images": [],
        "parts": [{"id": "prediction-0", "title": "onnx <b1>", "notes": ["Model: M/D/1"],
                   "tables": [{"columns": ["offered (req/s)", "mean error"],
                               "rows": [["100.000", "+3.0 %"]]}],
                   "images": [("curve", out)]},
                  {"id": "prediction-1", "title": "onnx b2", "notes": ["Not modelled"]}]}]
    html = render_report(report, tmp_path).read_text(encoding="utf-8")
    section = html[html.index('<section id="prediction">'):]
    section = section[:section.index("</section>")]
    assert "<h2>Predicted vs measured</h2>" in section and "<h3>onnx &lt;b1&gt;</h3>" in section
    assert section.index("Model: M/D/1") < section.index("<h3>onnx b2</h3>")
    assert "<td>100.000</td><td>+3.0 %</td>" in section
    encoded = base64.b64encode(out.read_bytes()).decode("ascii")
    assert f'src="data:image/png;base64,{encoded}"' in section
