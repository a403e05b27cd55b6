"""Where the time went, and the tempest run worker by worker, from a real stored run.

tests/data/smoke-image-sid is a run of the smoke-image-sid job (TCG, 2 workers,
4 failures): its summary.json as `run` wrote it, its stream re-encoded with the
attachments cut short, and the guest's logs around the failures.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import shutil
from pathlib import Path

from tempest_live_ci.results import actions
from tempest_live_ci.results.html import render_html
from tempest_live_ci.results.lanes import NO_WORKER, lanes, worker_of
from tempest_live_ci.results.run import load_run
from tempest_live_ci.results.summary import build_summary, merge_summary
from tempest_live_ci.results.timing import format_timeline, timeline

DATA = Path(__file__).resolve().parents[2] / "data" / "smoke-image-sid"


def _summary() -> dict[str, object]:
    data = json.loads((DATA / "summary.json").read_text())
    assert isinstance(data, dict)
    return data


def test_stages_and_their_steps_on_one_time_line() -> None:
    line = timeline(_summary())
    names = [(s.depth, s.name) for s in line.spans]
    # The stages in the order they ran, each guest step under the stage that ran it.
    assert names[:9] == [(0, "archive"), (0, "image"), (0, "testbed"), (0, "vm"),
                         (0, "prepare"), (1, "check"), (1, "prepare"), (0, "install"),
                         (1, "install")]
    assert names[-3:] == [(0, "results"), (0, "logs"), (1, "collect")]
    spans = {(s.depth, s.name): s for s in line.spans}
    configure, conf = spans[(1, "configure")], spans[(1, "tempest-conf")]
    assert configure.start == spans[(0, "configure")].start
    assert conf.start == configure.end
    assert (configure.seconds, configure.memory_peak_mib) == (441.8, 1598)
    assert ("discover-tempest-config", 82.9) in conf.parts
    stages = [s for s in line.spans if s.depth == 0]
    for before, after in itertools.pairwise(stages):
        assert after.start == before.end
    assert line.total == 3650.7
    assert line.memory_peak_mib == 1997


def test_results_show_prints_the_time_line_as_a_table(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(DATA, run)
    out = io.StringIO()
    actions.show(run, out=out, err=io.StringIO())
    text = out.getvalue()
    table = text.split("where the time went:\n", 1)[1].split("74 tests", 1)[0].splitlines()
    assert table[0].split() == ["stage", "/", "step", "start", "time", "memory"]
    row = {line.split()[0]: line for line in table if line.startswith("  tempest-conf")
           or line.startswith("total")}
    assert row["tempest-conf"].split()[1:] == ["10m59s", "1m27s", "1705", "MiB"]
    assert row["total"].split()[1:] == ["60m50s", "1997", "MiB"]
    # Aligned: every duration ends in the same column.
    ends = {re.search(r"(\S+)\s*(?:\d+ MiB)?$", line.rstrip()).end(1)  # type: ignore[union-attr]
            for line in table[1:] if "MiB" not in line}
    assert len(ends) == 1
    assert format_timeline(timeline({})) == ""


def test_report_draws_stages_and_worker_lanes() -> None:
    run = load_run(DATA)
    summary = merge_summary(_summary(), build_summary(run, _summary()["metadata"]))  # type: ignore[arg-type]
    html = render_html(run, summary)
    section = html.split('id="timeline"', 1)[1].split("</div>", 1)[0]
    assert "tempest-conf" in section and "1705 MiB" in section and "peak 1997 MiB" in section
    assert "discover-tempest-config" in section
    # The Run table no longer prints the steps as a nested dump.
    run_table = html.split('id="metadata"', 1)[1].split("</dl>", 1)[0]
    assert "seconds" not in run_table and "memory_peak_mib" not in run_table

    found = lanes(run.records)
    assert [lane.name for lane in found.lanes] == ["0", "1"]
    assert [len(lane.bars) for lane in found.lanes] == [38, 36]
    assert all(worker_of(r) != NO_WORKER for r in run.records)
    svg = html.split('<svg class="lanes"', 1)[1].split("</svg>", 1)[0]
    assert svg.count("<rect class=\"s-") == len(run.records)
    assert svg.count('class="s-failed"') == 4
    failed = next(r for r in run.records if r.status == "failed")
    assert f"<title>{failed.id} · failed ·" in svg
    # The idle time between tests is there: worker 0 waited more than 20 minutes in all.
    assert found.lanes[0].idle > 20 * 60
    assert found.seconds == max(b.start + b.seconds for lane in found.lanes for b in lane.bars)
