"""Which of a function's built images to remove once a new one serves (pure).

Each new source of a `build:` function is a new tag in its repository
(`localhost/nuvem/NAME:DIGEST12`). Once replicas of one tag serve, the images worth keeping
are that one and the one the function ran before it: its old replicas may still be draining
on it, and a rollback to it then starts without a build. Anything built after the serving
tag is kept as well: it is a newer deploy whose replicas are on their way (its build done,
its containers not yet created, so the engine would not refuse its removal).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nuvem.runtime.container_engine import StoredImage, repository_of


@dataclass(frozen=True, slots=True)
class Retention:
    """What `retention` decided for one repository."""

    remove: tuple[str, ...]  # oldest first
    previous: str | None  # the tag kept as the one before the serving one


def retention(stored: Iterable[StoredImage], serving: str, previous: str | None) -> Retention:
    """The tags of `serving`'s repository to remove: those built before `serving`, except
    the one before it. That is `previous` (the tag its replicas ran before) when it is still
    stored, else the newest built before `serving`: a restarted gateway no longer knows what
    ran before. Nothing when `serving` is not among `stored`: the listing is not of what
    runs, and guessing would remove the wrong images."""
    repository = repository_of(serving)
    ours = {image.ref: image for image in stored if image.repository == repository}
    current = ours.get(serving)
    if current is None:
        return Retention((), None)
    older = sorted(
        (image for image in ours.values() if image.created < current.created),
        key=lambda image: (image.created, image.ref),
    )
    kept = previous if previous in ours and previous != serving else None
    if kept is None and older:
        kept = older[-1].ref
    return Retention(tuple(image.ref for image in older if image.ref != kept), kept)
