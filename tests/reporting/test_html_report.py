"""`icgd report`: the HTML page of a tiny real one-step-gd run (every claim row, metrics, figures,
config, provenance), of a seed ensemble (pass rates), of several runs and of a sweep (comparison
table, overlays); bad paths; the atomic write; and the page in a real headless Chromium (every
figure displayed, one verdict row per claim, no console error; a screenshot kept as an artefact).
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from icgd.cli import main
from icgd.core.results import read_result, write_result
from icgd.reporting.html import write_report
from icgd.runs.figures import draw_figures
from icgd.runs.runner import prepare_run_dir, resolve_config, run_experiment

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"  # git-ignored; kept after the run for a person to look at
TINY = [
    "train.steps=20",
    "train.batch_size=256",
    "train.eval_batch_size=256",
    "train.eval_every=10",
    "train.checkpoint_every=10",
    "test_batch_size=1024",
]


def quiet_main(argv: list) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A real tiny one-step-gd run folder with its figures drawn (PNG and SVG)."""
    config = resolve_config("one-step-gd", overrides=TINY)
    run_dir = prepare_run_dir("one-step-gd", config, tmp_path_factory.mktemp("tiny") / "run")
    run_experiment("one-step-gd", config, run_dir)
    assert draw_figures(run_dir)
    return run_dir


@pytest.fixture(scope="module")
def ensemble(tiny_run, tmp_path_factory) -> Path:
    """A seed-ensemble folder built from two copies of the tiny run (seed1 fails one more claim),
    aggregated by the ensemble code itself."""
    from icgd.experiments.one_step_gd import OneStepGDConfig
    from icgd.runs.seeds import aggregate

    root = tmp_path_factory.mktemp("ensemble") / "ens"
    results = []
    for seed in (0, 1):
        shutil.copytree(tiny_run, root / f"seed{seed}")
        result = read_result(root / f"seed{seed}" / "result.json")
        if seed == 1:  # make the seeds differ: the first claim passes in seed 0 only
            claims = [c.model_copy(update={"passed": False}) for c in result.claims]
            result = result.model_copy(update={"claims": claims, "status": "failed"})
        else:
            claims = [c.model_copy(update={"passed": i == 0}) for i, c in enumerate(result.claims)]
            result = result.model_copy(update={"claims": claims})
        write_result(root / f"seed{seed}" / "result.json", result)
        results.append(result)
    config = OneStepGDConfig.model_validate(results[0].config)
    agg = aggregate("one-step-gd", config, [0, 1], results, wall_seconds=1.0, batched=True)
    write_result(root / "result.json", agg)
    return root


@pytest.fixture(scope="module")
def sweep_dir(tiny_run, tmp_path_factory) -> Path:
    """A sweep folder in the layout of `icgd.runs.sweep`: two finished points (copies of
    the tiny run) and one pending point, with its sweep.json."""
    root = tmp_path_factory.mktemp("sweep") / "sw"
    folders = ["000-n=10", "001-n=20", "002-n=30"]
    rows = []
    for i, (folder, n) in enumerate(zip(folders, (10, 20, 30), strict=True)):
        row = {"point": i, "folder": folder, "n": n, "status": "pending", "message": ""}
        if i < 2:
            shutil.copytree(tiny_run, root / folder)
            row["status"] = read_result(root / folder / "result.json").status
        rows.append(row)
    table = {
        "experiment": "one-step-gd",
        "grid": [{"key": "n", "values": [10, 20, 30]}],
        "seeds": None,
        "columns": ["point", "folder", "n", "status", "message"],
        "rows": rows,
    }
    (root / "sweep.json").write_text(json.dumps(table))
    (root / "sweep.yaml").write_text("experiment: one-step-gd\n")
    return root


def body_rows(page: str, table_class: str) -> list[list[str]]:
    """The body rows of every `<table class=table_class>` as lists of cell texts."""
    rows = []
    for table in re.findall(rf'<table class="{table_class}">(.*?)</table>', page, re.S):
        body = re.search(r"<tbody>(.*?)</tbody>", table, re.S).group(1)
        for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S):
            cells = re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)
            rows.append([html.unescape(re.sub(r"<[^>]+>", "", c)) for c in cells])
    return rows


# --- the page, read as text ----------------------------------------------------------------------


def test_report_of_one_run_has_every_claim_metric_figure_config_and_provenance(tiny_run, tmp_path):
    out = tmp_path / "r.html"
    code, stdout, err = quiet_main(["report", tiny_run, "--out", out])
    assert code == 0, err
    assert f"report: {out}" in stdout
    page = out.read_text()
    result = read_result(tiny_run / "result.json")

    rows = body_rows(page, "verdict")
    assert len(rows) == len(result.claims) >= 3
    for row, claim in zip(rows, result.claims, strict=True):
        assert row[0] == claim.name and row[1] == claim.statement
        assert row[-1] == ("pass" if claim.passed else "FAIL")
    metrics = dict((r[0], r[1]) for r in body_rows(page, "metrics"))
    for key, value in result.metrics.items():
        if not isinstance(value, list):
            assert key in metrics, key
    assert float(metrics["loss"]) == pytest.approx(result.metrics["loss"], rel=1e-3)
    # every figure of the folder, embedded (SVG preferred), nothing fetched from anywhere
    names = {p.stem for p in (tiny_run / "figures").glob("*.png")}
    embedded = re.findall(
        r'<img src="data:image/(svg\+xml|png);base64,([^"]+)" alt="([^"]+)"', page
    )
    assert {alt for _, _, alt in embedded} == names
    for mime, data, alt in embedded:
        blob = base64.b64decode(data)
        assert blob == (tiny_run / "figures" / f"{alt}.svg").read_bytes(), alt
        assert mime == "svg+xml" and b"<svg" in blob
    assert not re.search(r'(src|href)="(https?:)?//', page)
    # resolved config and provenance
    assert "setting: isotropic_noisy" in page and "batch_size: 256" in page
    provenance = dict((r[0], r[1]) for r in body_rows(page, "provenance"))
    assert provenance["torch"] == result.provenance.torch
    assert provenance["seed"] == str(result.provenance.seed)
    assert provenance["folder"] == str(tiny_run.resolve())
    # no comparison for one run
    assert 'class="comparison"' not in page


def test_every_figure_is_written_as_png_and_svg(tiny_run):
    pngs = sorted(p.stem for p in (tiny_run / "figures").glob("*.png"))
    svgs = sorted(p.stem for p in (tiny_run / "figures").glob("*.svg"))
    assert pngs and pngs == svgs


def test_default_out_is_inside_the_folder_and_rerendering_reads_files_only(tiny_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    path, warnings = write_report([run])
    assert path == run / "report.html" and not warnings
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p != path}
    assert after == before  # nothing in the run folder changed
    again, _ = write_report([run])
    assert again.read_text() == path.read_text()  # deterministic: same folders, same page


def test_seed_ensemble_shows_pass_rates(ensemble, tmp_path):
    path, _ = write_report([ensemble], tmp_path / "e.html")
    page = path.read_text()
    result = read_result(ensemble / "result.json")
    rows = body_rows(page, "verdict")
    assert len(rows) == len(result.claims)
    assert rows[0][-2] == "50%" and rows[1][-2] == "0%"  # the pass-rate column
    seeds = body_rows(page, "seeds")
    assert [r[0] for r in seeds] == ["seed0", "seed1", "pass rate"]
    assert seeds[0][2] == "pass" and seeds[1][2] == "FAIL"
    assert "figures of seed0" in page and "<img" in page


def test_two_runs_and_a_sweep_give_comparison_tables_and_overlays(
    tiny_run, ensemble, sweep_dir, tmp_path
):
    path, _ = write_report([tiny_run, ensemble], tmp_path / "two.html")
    page = path.read_text()
    comparison = body_rows(page, "comparison")
    assert [r[0] for r in comparison] == ["run", "ens"]
    result = read_result(tiny_run / "result.json")
    first = result.claims[0]
    assert any(first.name in h for h in re.findall(r"<th>(.*?)</th>", page))
    assert "(50%)" in comparison[1][3 + 0]  # the ensemble's pass rate next to its measured value
    assert 'alt="overlay_claims"' in page and 'alt="overlay_curves"' in page

    path, _ = write_report([sweep_dir], tmp_path / "sweep.html")
    page = path.read_text()
    points = body_rows(page, "comparison")
    assert [r[0] for r in points] == ["sw/000-n=10", "sw/001-n=20", "sw/002-n=30"]
    assert [r[1] for r in points] == ["10", "20", ""] and points[2][2] == "pending"
    assert 'alt="overlay_claims"' in page
    assert len(body_rows(page, "verdict")) == 2 * len(result.claims)  # one section per point


@pytest.mark.parametrize("case", ["missing", "file", "empty_dir", "bad_result"])
def test_bad_paths_are_one_line_errors(case, tmp_path):
    target = tmp_path / "x"
    if case == "file":
        target.write_text("hi")
    elif case == "empty_dir":
        target.mkdir()
    elif case == "bad_result":
        target.mkdir()
        (target / "result.json").write_text("{not json")
    code, _, err = quiet_main(["report", target, "--out", tmp_path / "r.html"])
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert str(target) in lines[0] and "Traceback" not in err
    assert not (tmp_path / "r.html").exists()


def test_out_that_is_a_folder_is_an_error(tiny_run, tmp_path):
    code, _, err = quiet_main(["report", tiny_run, "--out", tmp_path])
    assert code == 2 and err.startswith("error: --out:") and "folder" in err


def test_report_is_written_atomically(tiny_run, tmp_path, monkeypatch):
    out = tmp_path / "r.html"
    out.write_text("old report")

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    code, _, err = quiet_main(["report", tiny_run, "--out", out])
    assert code == 2 and "--out" in err and "No space left" in err
    assert out.read_text() == "old report"  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temp file left


# --- the page in a real browser ------------------------------------------------------------------


class Chromium:
    """Headless Chromium driven over its DevTools protocol (a WebSocket; no chromedriver)."""

    def __init__(self, binary: str, profile: Path):
        import websocket

        self.log = profile.parent / "chromium.log"
        profile.mkdir(parents=True, exist_ok=True)
        args = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
            f"--user-data-dir={profile}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--window-size=1280,1024",
            "about:blank",
        ]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.is_file() and len(port_file.read_text().split()) >= 2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                tail = self.log.read_text(errors="replace")[-500:]
                raise RuntimeError(f"Chromium did not start: {tail}")
            time.sleep(0.05)
        port, path = port_file.read_text().split()[:2]
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{port}{path}", timeout=30, suppress_origin=True
        )
        self.next_id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]

    def call(self, method: str, session: str | None = None, **params) -> dict:
        """Send one command and wait for its answer (events meanwhile are kept in `events`)."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def page(self, method: str, **params) -> dict:
        return self.call(method, self.session, **params)

    def wait_for(self, event: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            found = next((e for e in self.events if e.get("method") == event), None)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(event)
            self.events.append(json.loads(self.ws.recv()))

    def evaluate(self, expression: str):
        reply = self.page(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in reply:
            raise RuntimeError(reply["exceptionDetails"])
        return reply["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log entries of level error."""
        found = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {params.get('exceptionDetails')}")
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url')}")
        return found

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("Browser.close")
        with contextlib.suppress(Exception):
            self.ws.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def browser(tmp_path):
    pytest.importorskip("websocket", reason="websocket-client missing: pip install -e '.[dev]'")
    binary = next(
        (
            shutil.which(b)
            for b in ("chromium", "chromium-browser", "google-chrome")
            if shutil.which(b)
        ),
        None,
    )
    if binary is None:
        pytest.skip(
            "no Chromium on PATH: `make test` installs Debian's chromium with apt-get, "
            "which was unavailable or failed here"
        )
    try:
        chromium = Chromium(binary, tmp_path / "profile")
    except RuntimeError as exc:
        pytest.skip(f"Chromium is installed but cannot start here: {exc}")
    yield chromium
    chromium.close()


def test_report_in_headless_chromium(tiny_run, ensemble, browser, tmp_path):
    out, _ = write_report([tiny_run, ensemble], tmp_path / "report.html")
    claims = read_result(tiny_run / "result.json").claims
    for domain in ("Runtime", "Log", "Page"):
        browser.page(f"{domain}.enable")
    browser.page("Page.navigate", url=out.resolve().as_uri())
    browser.wait_for("Page.loadEventFired")
    images = browser.evaluate(
        """Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)))
        .then(() => Array.from(document.images).map(i => {
            const r = i.getBoundingClientRect();
            return {alt: i.alt, complete: i.complete, nw: i.naturalWidth, nh: i.naturalHeight,
                    w: r.width, h: r.height};
        }))"""
    )
    figures = {p.stem for p in (tiny_run / "figures").glob("*.png")}
    assert {i["alt"] for i in images} >= figures | {"overlay_claims", "overlay_curves"}
    for image in images:
        assert image["complete"] and image["nw"] > 0 and image["nh"] > 0, image
        assert image["w"] > 0 and image["h"] > 0, image  # displayed, not hidden
    verdict_rows = browser.evaluate(
        "Array.from(document.querySelectorAll('section.run')).map("
        "s => s.querySelectorAll('table.verdict tbody tr').length)"
    )
    assert verdict_rows == [len(claims), len(claims)]  # the run, then the ensemble
    assert browser.evaluate("document.title").startswith("icgd report")

    size = browser.page("Page.getLayoutMetrics")["cssContentSize"]
    shot = browser.page(
        "Page.captureScreenshot",
        format="png",
        captureBeyondViewport=True,
        clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
    )
    png = base64.b64decode(shot["data"])
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    (tmp_path / "report.png").write_bytes(png)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report.png").write_bytes(png)  # the screenshot, kept as a test artefact
    shutil.copy(out, ARTIFACTS / "report.html")

    assert browser.errors() == []
