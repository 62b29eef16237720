"""Local GPU assignment: by device index, fractions shared, never over a device's capacity."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nuvem.runtime.gpu_slots import GpuSlots


def test_fractions_share_a_device_and_whole_gpus_get_their_own() -> None:
    slots = GpuSlots(2)
    assert slots.take("a", 0.5) == (0,)
    assert slots.take("b", 0.5) == (0,)  # packed beside a, keeping GPU 1 whole
    assert slots.take("c", 1) == (1,)
    assert slots.take("d", 0.5) is None
    assert "GPU 0: 0, GPU 1: 0" in slots.shortage(0.5)
    slots.release("c")
    assert slots.take("d", 2) is None  # GPU 0 is shared, so only one device is whole
    assert slots.take("e", 0.25) == (1,)
    slots.release("a")
    slots.release("b")
    assert slots.free() == [1.0, 0.75]


def test_no_gpu_asked_none_given() -> None:
    slots = GpuSlots(0)
    assert slots.take("cpu-only", 0) == ()
    assert slots.take("wants-one", 1) is None
    assert slots.shortage(1) == "this machine has no GPU"


requests = st.lists(
    st.tuples(st.sampled_from([0.1, 0.25, 1 / 3, 0.5, 1.0, 2.0]), st.booleans()), max_size=40
)


@given(st.integers(min_value=0, max_value=4), requests)
def test_devices_are_never_overcommitted(count: int, steps: list[tuple[float, bool]]) -> None:
    slots = GpuSlots(count)
    held: dict[str, tuple[float, tuple[int, ...]]] = {}
    for n, (amount, release_one) in enumerate(steps):
        if release_one and held:
            owner = sorted(held)[0]
            slots.release(owner)
            del held[owner]
        granted = slots.take(f"r{n}", amount)
        if granted is not None:
            held[f"r{n}"] = (amount, granted)
            assert len(set(granted)) == len(granted)
            assert len(granted) == (1 if amount < 1 else int(amount))
        load = [0.0] * count
        for share, devices in held.values():
            for device in devices:
                load[device] += min(share, 1.0)
        assert all(used <= 1.0 + 1e-9 for used in load)
        # Shares are kept in ten-thousandths: a third is 0.3333 of a device.
        assert all(
            abs((1 - used) - free) < 1e-3 for used, free in zip(load, slots.free(), strict=True)
        )
    for owner in held:
        slots.release(owner)
    assert slots.free() == [1.0] * count
