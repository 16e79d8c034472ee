"""Every projector this service runs, and the read models replay can rebuild."""

from __future__ import annotations

from projections import counters, media, messages
from projections.processing import ProcessingStage
from projections.replay import Rebuildable
from projections.runner import Projector


def read_models() -> dict[str, Rebuildable]:
    models: list[Rebuildable] = [messages.FOLD, media.FOLD, counters.FOLD]
    return {m.name: m for m in models}


def projectors() -> list[Projector]:
    return [*read_models().values(), ProcessingStage()]
