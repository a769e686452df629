"""Pending records are typed: each file one Record with its Stage; a broken file is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.pending import Pending, PendingError, Record, Stage
from steps.trial import Trial


def test_a_record_round_trips_and_keeps_what_a_newer_version_wrote(tmp_path: Path) -> None:
    pending = Pending(tmp_path)
    written = pending.write(Record(7, Stage.LAUNCHED, slot=2, due="now", flow_run="abc"))
    raw = json.loads(pending.path(7).read_text())
    assert raw["stage"] == "launched" and raw["experiment"] == 7
    pending.path(7).write_text(json.dumps(raw | {"colour": "blue"}))
    read = pending.read(7)
    assert read is not None and read.extra == {"colour": "blue"}
    assert read.but(extra={}) == written
    assert [r.experiment for r in pending.at(Stage.LAUNCHED)] == [7]
    assert pending.at(Stage.HOLDOUT) == [] and pending.read(8) is None


def test_a_trial_resumes_from_its_record() -> None:
    trial = Trial(3, slot=2, description="try X", built_on="c" * 40)
    record = trial.record()
    assert record.stage == Stage.RESERVED and record.slot == 2
    again = Trial.resume(record)
    assert (again.experiment, again.slot, again.built_on) == (3, 2, "c" * 40)


@pytest.mark.parametrize(
    "text, why",
    [
        ("{not json", "not a valid record"),
        ('["a list"]', "not a valid record"),
        ('{"stage": "flying"}', "'flying' is not a valid Stage"),
        ('{"slot": 1, "proposal": null, "stage": "measuring", "since": 5, "nope": {}}', ""),
    ],
)
def test_a_broken_record_is_named_with_its_file(tmp_path: Path, text: str, why: str) -> None:
    pending = Pending(tmp_path)
    pending.folder.mkdir()
    pending.path(4).write_text(text)
    if not why:  # unknown keys are kept aside, not refused
        record = pending.read(4)
        assert record is not None and record.extra == {"nope": {}}
        return
    with pytest.raises(PendingError, match=why) as exc:
        pending.read(4)
    assert str(pending.path(4)) in str(exc.value) and "remove it" in str(exc.value)
