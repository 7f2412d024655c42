"""The trial's picture (runners/trial_image.py): one small PNG from any record, fast."""

from __future__ import annotations

import math
import struct
import time

import pytest

from gradatlas.record import PROBE, RecordedOutcome, TrialRecord
from gradatlas.runners.trial_image import ARTIFACT, trial_png

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk (the first, right after the signature)."""
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def record(**over) -> TrialRecord:
    """A trained 4-layer trial: 50 training steps, 5 evaluations, an init profile."""
    steps = list(range(0, 50))
    fields = {
        "trial_id": "0123456789abcdef",
        "cell": "d3-relu-kaiming_normal",
        "seed": 1,
        "outcome": RecordedOutcome(label="converged", reason="val accuracy >= 0.5 at step 40"),
        "summary": {"final_val_acc": 0.6},
        "curves": {
            "train": {
                "step": steps,
                "loss": [2.3 * 0.97**s for s in steps],
                "grad_norm": [1.0] * 50,
                "lr": [0.1] * 50,
            },
            "eval": {
                "step": [0, 10, 20, 30, 40],
                "val_loss": [2.3, 1.9, 1.5, 1.3, 1.2],
                "val_acc": [0.1, 0.3, 0.4, 0.5, 0.6],
            },
            "layers": {"step": [0], "grad_norm": [[0.6, 1.2, 1.4, 1.6]]},
        },
        "profiles": {
            "layers": ["00 linear 40->64", "01 linear", "02 linear", "03 head"],
            "loss": 2.3,
            "init": {"grad_norm": [0.6, 1.2, 1.4, 1.6]},
        },
    }
    return TrialRecord(**(fields | over))


def exploded() -> TrialRecord:
    """A d20 trial that exploded at step 0: inf/NaN (and ``null``, as trial.json writes them)."""
    return record(
        cell="d20-relu-normal(std=1)",
        outcome=RecordedOutcome(label="exploded"),
        summary={"explode_step": 0.0},
        curves={
            "train": {"step": [0, 1, 2], "loss": [1.1e16, math.inf, None], "lr": [0.1] * 3},
            "eval": {"step": [0], "val_loss": [math.nan]},
        },
        profiles={"init": {"grad_norm": [1e15, 3e15, math.inf, None, math.nan, 0.0] + [5e15] * 15}},
    )


def check(data: bytes) -> None:
    width, height = png_size(data)
    assert (width, height) == (800, 320)
    assert 2_000 < len(data) < 200_000  # small enough to log with every trial


def test_trained_trial_draws_a_small_png() -> None:
    assert ARTIFACT == "trial.png"
    check(trial_png(record()))


def test_exploded_trial_with_non_finite_values() -> None:
    check(trial_png(exploded()))


@pytest.mark.parametrize(
    "rec",
    [
        # probe-only: steps 0, init profile, no curves
        record(outcome=RecordedOutcome(label=PROBE), curves={}, summary={}),
        # an old record rebuilt from tags (schema 0): no curves, no profiles, no seed
        TrialRecord(schema=0, trial_id="abc", outcome=RecordedOutcome(label="vanished")),
        # everything non-finite
        record(
            curves={"train": {"step": [0, 1], "loss": [None, math.nan]}},
            profiles={"init": {"grad_norm": [None, math.inf]}},
        ),
        # junk where lists belong (a hand-made dict read by from_json)
        TrialRecord.from_json({"curves": {"train": "x", "eval": {"step": 3}}, "profiles": [1]}),
        # a single evaluation point and a flat profile (under one decade)
        record(
            curves={"eval": {"step": [0], "val_loss": [2.3]}},
            profiles={"init": {"grad_norm": [1.0, 1.0]}},
        ),
    ],
    ids=["probe-only", "schema-0", "all-non-finite", "junk", "single-points"],
)
def test_degenerate_records_still_draw(rec: TrialRecord) -> None:
    check(trial_png(rec))


def test_round_trip_through_trial_json() -> None:
    """What the recorder has in hand is the record read back from its JSON (nulls for inf)."""
    check(trial_png(TrialRecord.from_json(exploded().to_json())))


def test_fast_enough_to_draw_for_every_trial() -> None:
    """Tens of milliseconds a picture (import and the first draw's font cache excluded); the
    bound is loose because this 2-core machine is shared while tests run."""
    trial_png(record())
    start = time.process_time()
    for rec in (record(), exploded(), record()):
        trial_png(rec)
    assert (time.process_time() - start) / 3 < 0.5
