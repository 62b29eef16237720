"""`GpuSlots`: which of this machine's GPUs each local replica may use.

A replica asking for a fraction (`gpu: 0.5`) shares one device with others; one asking for
whole GPUs gets that many devices of its own. The replica learns its devices through
`CUDA_VISIBLE_DEVICES`, as Ray tells its actors on a cluster. Shares are counted in
ten-thousandths, so fractions add up exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_UNIT = 10_000


def _units(amount: float) -> int:
    return round(amount * _UNIT)


@dataclass
class GpuSlots:
    count: int
    _used: list[int] = field(init=False)
    _held: dict[str, tuple[tuple[int, int], ...]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._used = [0] * self.count

    def take(self, owner: str, amount: float) -> tuple[int, ...] | None:
        """Devices for `owner`, or None while they are not free. A fraction goes to the
        fullest device it still fits on, keeping whole devices free for whole requests."""
        if owner in self._held:
            raise ValueError(f"{owner} holds GPUs already")
        want = _units(amount)
        if want <= 0:
            return ()
        if want < _UNIT:
            fitting = [i for i, used in enumerate(self._used) if used + want <= _UNIT]
            if not fitting:
                return None
            index = max(fitting, key=lambda i: (self._used[i], -i))
            grants: tuple[tuple[int, int], ...] = ((index, want),)
        else:
            free = [i for i, used in enumerate(self._used) if used == 0]
            whole = want // _UNIT
            if len(free) < whole:
                return None
            grants = tuple((i, _UNIT) for i in free[:whole])
        for index, units in grants:
            self._used[index] += units
        self._held[owner] = grants
        return tuple(index for index, _ in grants)

    def release(self, owner: str) -> None:
        for index, units in self._held.pop(owner, ()):
            self._used[index] -= units

    def free(self) -> list[float]:
        """What is left of each device, 0 to 1."""
        return [(_UNIT - used) / _UNIT for used in self._used]

    def shortage(self, amount: float) -> str:
        """Why `amount` does not fit now, in words."""
        free = ", ".join(f"GPU {i}: {share:g}" for i, share in enumerate(self.free()))
        if self.count == 0:
            return "this machine has no GPU"
        return f"{amount:g} GPU wanted, free now: {free}"
