"""The media tests, run once per store: the local directory and an S3 bucket.

The parametrised fixture is the one that builds the app's settings, so the
tests themselves neither know nor care which store they exercise.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from api.runtime.settings import Settings
from tests.support.media import MediaPlace, media_place

STORES = ["local", "s3"]


@pytest.fixture(scope="module", params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def media(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> MediaPlace:
    return media_place(store_kind, tmp_path / "data", request)


@pytest.fixture
def settings(settings: Settings, media: MediaPlace) -> Settings:
    return media.applied_to(settings)
