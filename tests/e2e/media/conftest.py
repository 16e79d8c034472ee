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


@pytest.fixture(scope="module")
def module_media(
    store_kind: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> MediaPlace:
    """The store of the module's shared app (module_client), one per store kind.
    In test_media_hostile.py nothing its tests send is kept, and they count
    on it staying empty."""
    return media_place(store_kind, tmp_path_factory.mktemp("media") / "data", request)


@pytest.fixture(scope="module")
def module_settings(module_settings: Settings, module_media: MediaPlace) -> Settings:
    return module_media.applied_to(module_settings)
