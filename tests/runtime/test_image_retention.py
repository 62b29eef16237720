"""Which built images go once a new one serves: the pure policy, by example and by its
invariants over any store (Hypothesis)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nuvem.runtime.container_engine import StoredImage, repository_of
from nuvem.runtime.image_retention import retention

REPO = "localhost/nuvem/echo"


def stored(*tags: str, repository: str = REPO) -> list[StoredImage]:
    """One image per tag, built in the order given (a second apart)."""
    return [
        StoredImage(f"{repository}:{tag}", f"id-{tag}", 1000.0 + i) for i, tag in enumerate(tags)
    ]


def test_three_sources_in_turn_leave_the_last_two() -> None:
    decided = retention(stored("a", "b", "c"), f"{REPO}:c", f"{REPO}:b")
    assert decided.remove == (f"{REPO}:a",)
    assert decided.previous == f"{REPO}:b"


def test_a_restarted_gateway_keeps_the_newest_before_the_serving_one() -> None:
    decided = retention(stored("a", "b", "c", "d"), f"{REPO}:d", None)
    assert decided.remove == (f"{REPO}:a", f"{REPO}:b")
    assert decided.previous == f"{REPO}:c"


def test_after_a_rollback_the_version_rolled_back_from_stays() -> None:
    # c served, then the stack went back to b: b serves, c is the one before it.
    decided = retention(stored("a", "b", "c"), f"{REPO}:b", f"{REPO}:c")
    assert decided.remove == (f"{REPO}:a",)
    assert decided.previous == f"{REPO}:c"


def test_an_older_previous_is_kept_and_what_came_between_goes() -> None:
    # a served, b was deployed but never got ready, then c: c replaced a.
    decided = retention(stored("a", "b", "c"), f"{REPO}:c", f"{REPO}:a")
    assert decided.remove == (f"{REPO}:b",)


def test_a_build_newer_than_the_serving_one_is_on_its_way_and_stays() -> None:
    decided = retention(stored("a", "b", "c", "d"), f"{REPO}:b", f"{REPO}:a")
    assert decided.remove == ()


def test_nothing_goes_when_the_serving_tag_is_not_listed() -> None:
    assert retention(stored("a", "b", "c"), f"{REPO}:z", None).remove == ()


def test_other_repositories_are_never_touched() -> None:
    images = stored("a", "b", "c") + stored("a", repository=f"{REPO}-2")
    images += stored("old", repository="localhost/user-image")
    decided = retention(images, f"{REPO}:c", f"{REPO}:b")
    assert decided.remove == (f"{REPO}:a",)


def test_a_registry_port_is_not_a_tag() -> None:
    assert repository_of("127.0.0.1:5000/nuvem/echo:ab12") == "127.0.0.1:5000/nuvem/echo"
    assert repository_of("127.0.0.1:5000/nuvem/echo") == "127.0.0.1:5000/nuvem/echo"
    assert repository_of("localhost/nuvem/echo:1.0-ab12") == REPO
    assert repository_of("localhost/x@sha256:00ff") == "localhost/x"


TAGS = st.text("abcdef0123", min_size=1, max_size=3)
REPOS = st.sampled_from([REPO, f"{REPO}-2", "localhost/user-image", "127.0.0.1:5000/nuvem/echo"])
IMAGES = st.lists(
    st.builds(
        lambda repository, tag, created: StoredImage(f"{repository}:{tag}", tag, created),
        REPOS,
        TAGS,
        st.integers(0, 20).map(float),  # coarse: ties happen, as with seconds
    ),
    max_size=12,
    unique_by=lambda image: image.ref,
)


@given(IMAGES, st.data())
def test_invariants(images: list[StoredImage], data: st.DataObject) -> None:
    refs = [image.ref for image in images]
    serving = data.draw(st.sampled_from([*refs, f"{REPO}:zz"]), label="serving")
    previous = data.draw(st.sampled_from([None, *refs, f"{REPO}:yy"]), label="previous")
    decided = retention(images, serving, previous)
    removed = set(decided.remove)
    by_ref = {image.ref: image for image in images}
    assert len(removed) == len(decided.remove)
    assert removed <= set(refs)
    assert serving not in removed
    assert previous not in removed
    if serving not in by_ref:
        assert not removed
        return
    current = by_ref[serving]
    for ref in removed:
        # Only the function's own, and only what was built before the serving one.
        assert by_ref[ref].repository == current.repository
        assert by_ref[ref].created < current.created
    older = {
        i.ref for i in images if i.repository == current.repository and i.created < current.created
    }
    ours = previous in by_ref and by_ref[previous].repository == current.repository
    if ours and previous != serving:
        # The one it ran before stays, whenever it was built (a rollback's is newer).
        assert decided.previous == previous
        assert removed == older - {previous}
    elif older:
        # Nobody remembers what ran before: the newest built before the serving one stays.
        newest = max((by_ref[ref] for ref in older), key=lambda i: (i.created, i.ref))
        assert decided.previous == newest.ref
        assert removed == older - {newest.ref}
    else:
        assert not removed
    # So at most one image built before the serving one is left of its repository.
    assert len(older - removed) <= 1
