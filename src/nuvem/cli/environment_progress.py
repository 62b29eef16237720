"""Show environment builds on a terminal: a line when a phase starts, a spinner with the
installer's latest output while it runs, and a closing line with the outcome."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.markup import escape
from rich.status import Status
from rich.text import Text

from nuvem.runtime.environment import Phase, ProgressEvent

_OUTCOMES = {
    Phase.READY: "[green]✓[/green] {label}: {message}",
    Phase.CACHED: "[dim]✓ {label}: {message}[/dim]",
    Phase.FAILED: "[red]✗[/red] {label}: {message}",
}


def rich_progress(console: Console | None = None) -> Callable[[ProgressEvent], None]:
    """An `on_progress` callback for EnvironmentBuilder that prints to `console` (stderr
    by default, so that a command's own output stays clean)."""
    out = console if console is not None else Console(stderr=True)
    status: Status | None = None
    # Several functions may build at once: the spinner shows the latest line of each.
    building: dict[str, tuple[Phase, str]] = {}

    def on_progress(event: ProgressEvent) -> None:
        nonlocal status
        label = f"{event.function} ({event.key})"
        if event.phase in _OUTCOMES:
            building.pop(label, None)
            line = _OUTCOMES[event.phase].format(label=escape(label), message=escape(event.message))
            out.print(f"{line} [dim]in {event.elapsed:.1f}s[/dim]", highlight=False)
            if not building and status is not None:
                status.stop()
                status = None
            return
        previous = building.get(label)
        if previous is None or previous[0] is not event.phase:
            # The first message of a phase says what starts: it stays in the scrollback.
            out.print(f"[cyan]•[/cyan] {escape(label)}: {escape(event.message)}", highlight=False)
        building[label] = (event.phase, event.message)
        # Installer lines can be long; one screen line each keeps the spinner from jumping.
        text = Text(
            "\n".join(f"{name}: {latest}" for name, (_, latest) in building.items()),
            no_wrap=True,
            overflow="ellipsis",
        )
        if status is None:
            status = out.status(text)
            status.start()
        else:
            status.update(text)

    return on_progress
