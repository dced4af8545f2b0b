"""Mermaid diagrams of the state machines, rendered into docs/lifecycle.md between markers."""

from __future__ import annotations

from pathlib import Path

from pdp.lifecycle.states import MACHINES

BEGIN = "<!-- BEGIN GENERATED STATE DIAGRAMS (scripts/gen-state-diagrams) -->"
END = "<!-- END GENERATED STATE DIAGRAMS -->"


def render() -> str:
    parts = [BEGIN]
    for machine in MACHINES:
        parts += [f"### {machine.name.capitalize()} states", "", "```mermaid", machine.mermaid(), "```", ""]
    parts.append(END)
    return "\n".join(parts)


def updated(doc: str) -> str:
    """`doc` with the generated block replaced (or appended when missing)."""
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        return head + render() + tail
    return doc.rstrip("\n") + "\n\n" + render() + "\n"


def write(path: Path) -> bool:
    """Regenerate the diagrams in `path`; True when the file changed."""
    old = path.read_text() if path.exists() else ""
    new = updated(old)
    if new != old:
        path.write_text(new)
    return new != old
