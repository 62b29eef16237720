"""The `jobs:` block of a function and the `stores:` block of a stack file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from nuvem.config import Settings
from nuvem.errors import SpecError
from nuvem.stack.loader import load_stack_text
from nuvem.stack.store_urls import Stores, apply_stores


def load(text: str, tmp_path: Path) -> object:
    return load_stack_text(text, "nuvem.yaml", tmp_path)


def test_jobs_defaults_and_units(tmp_path: Path) -> None:
    stack = load_stack_text(
        "functions:\n  f:\n    handler: m:f\n    jobs: {timeout: 2h, backoff: 500ms, retries: 0}\n",
        "nuvem.yaml",
        tmp_path,
    )
    jobs = stack.functions["f"].jobs
    assert jobs.timeout == 7200
    assert jobs.backoff == 0.5
    assert jobs.retries == 0
    assert jobs.retry_on == (429, 502, 503, 504)


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        ("{retries: -1}", "retries"),
        ("{retry_on: [200, 700]}", "700"),
        ("{backoff: 10m, max_backoff: 1m}", "backoff"),
        ("{concurrency: 0}", "concurrency"),
        ("{colour: red}", "colour"),
    ],
)
def test_bad_jobs_blocks_name_the_problem(tmp_path: Path, block: str, problem: str) -> None:
    with pytest.raises(SpecError, match=problem):
        load(f"functions:\n  f:\n    handler: m:f\n    jobs: {block}\n", tmp_path)


def test_changing_jobs_settings_keeps_replicas(tmp_path: Path) -> None:
    one = load_stack_text("functions: {f: {handler: 'm:f'}}", "nuvem.yaml", tmp_path)
    two = load_stack_text(
        "functions: {f: {handler: 'm:f', jobs: {concurrency: 2}}}", "nuvem.yaml", tmp_path
    )
    assert one.functions["f"].fingerprint() == two.functions["f"].fingerprint()


def test_stores_block_is_validated(tmp_path: Path) -> None:
    stack = load_stack_text(
        "stores: {queue: 'redis://r:6379/0', records: 'postgresql://u@db/nuvem'}\n",
        "nuvem.yaml",
        tmp_path,
    )
    assert stack.stores.queue == "redis://r:6379/0"
    with pytest.raises(SpecError, match="not a Redis URL"):
        load("stores: {queue: 'amqp://x'}\n", tmp_path)
    with pytest.raises(SpecError, match="not a postgresql:// URL"):
        load("stores: {records: 'mysql://x'}\n", tmp_path)


def test_environment_wins_over_the_stack_file() -> None:
    stores = Stores(queue="redis://stack/0", records="postgresql://stack/db")
    settings = apply_stores(Settings(), stores)
    assert settings.queue_url == "redis://stack/0"
    mine = dataclasses.replace(Settings(), queue_url="redis://env/0")
    assert apply_stores(mine, stores).queue_url == "redis://env/0"
    assert apply_stores(mine, stores).records_url == "postgresql://stack/db"
