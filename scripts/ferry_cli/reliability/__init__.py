"""Issue 8's reliability and security suite: one module per property, one table of figures.

Each property module registers a check with `@prop(number, title)`. A check takes a `Mode`
(fast for the README test command, long for `ferry bench reliability`), runs the property,
and returns a `PropertyResult`: its figures (counts, rates, latencies) and every violation it
saw. Tests call the same checks in fast mode and assert `result.violations == []`; the bench
command runs them all in long mode and prints/writes the table. A check never decides "pass"
by itself from a figure it was told to expect: a violation is an observed broken promise
(a 5xx, a lost row, a second production version, …) named in one line.
"""

from ferry_cli.reliability.core import (
    PROPERTIES,
    Mode,
    PropertyResult,
    prop,
    run_properties,
)

__all__ = ["PROPERTIES", "Mode", "PropertyResult", "prop", "run_properties"]
