"""Item value preprocessing, as Zabbix 6.0 does it: pure code, no I/O, no globals holding item state.

API
---
    from vigil.server.preprocessing import ItemState, Step, run

    steps = [Step(12, "$.stats.rx"), Step(10, "")]          # JSONPath, then change per second
    state = ItemState()                                     # the caller keeps one per item
    r = run(steps, '{"stats": {"rx": 100}}', clock=1700000000.0, state=state)
    state = r.state                                         # always keep the returned state
    if r.error is not None: ...                             # the item becomes not supported (r.error)
    elif r.discarded: ...                                   # nothing is stored
    else: store(r.value)                                    # str, int or float

`Step(type, params="", error_handler=0, error_handler_params="")` uses Zabbix's type numbers and its
parameter format (several parameters in one string, separated by "\\n"):

    1 multiplier (a number)          2 right trim, 3 left trim, 4 trim (the characters to strip)
    5 regular expression (pattern \\n output template with \\0..\\9)
    6 boolean to decimal             7 octal to decimal          8 hexadecimal to decimal
    9 simple change                 10 change per second
   11 XML XPath (expression)        12 JSONPath (path)          13 in range (min \\n max, either empty)
   14 matches regex (pattern)       15 does not match regex (pattern)
   16 check for error in JSON (path)   17 check for error in XML (XPath)
   18 check for error using regex (pattern \\n output)
   19 discard unchanged             20 discard unchanged with heartbeat (a duration: 60, 1m, 1h)
   21 JavaScript: NOT SUPPORTED, always an error that names the step (custom on fail does not apply)
   22 Prometheus pattern (pattern \\n value|label|function \\n label name|sum|min|max|avg|count)
   23 Prometheus to JSON (pattern, may be empty)
   24 CSV to JSON (delimiter \\n quote \\n 1 with a header row, 0 or empty without; a first line "sep=;"
      is never data and names the delimiter when the step gives none, else ","; an empty quote turns
      quoting off; columns without a header are named "1", "2", …; short rows are filled with "")
   25 replace (search \\n replacement; \\n \\r \\t \\s \\\\ escapes)
   26 check for not supported value (acts only on `error=`; must be the first step)
   27 XML to JSON

`run(steps, value, clock, state=None, *, error=None, value_type=None) -> Result`:
  - `value` is what the poller or sender got (text, or a number); `clock` is its time in seconds
    (fractions for nanoseconds), used by change per second and the heartbeat.
  - `error`: the item could not be read. Only a "check for not supported value" step acts on it (its
    custom on fail discards, sets a value that the following steps then process, or sets the error);
    without one the error comes back unchanged.
  - `value_type` (vigil.server.config.tables.ValueType): when given, numeric steps work in the item's
    type as Zabbix's type hint does (float items in floats; for unsigned items a float loses its
    fraction: a rate of 12.5 is 12 before a following multiplier), and the final value is converted
    as Zabbix stores it; anything unsuitable is an error.
  - `Result(value, error, discarded, state)`; `Result.ok` is true for a value.

Custom on fail (`error_handler`): 0 the item becomes not supported with "step N (Name): what failed";
1 the value is discarded; 2 the value becomes `error_handler_params` and the next steps go on with it;
3 the item becomes not supported with `error_handler_params` as its error.

State: `ItemState.previous` holds, per stateful step (9, 10, 19, 20), the value it saw last and its
clock. `run` never mutates the state it is given; it returns the next one in `Result.state`. When the
steps change, the history starts afresh (Zabbix resets it too). Change steps discard the first value
(it only primes the history) and any value lower than the previous one: Zabbix does not unwrap
counters, so a 32/64-bit wrap or a reset is one discarded value, and the next one is computed from
the new low value. Change per second also discards a value whose clock is not after the previous. A step that fails
(without custom on fail rescuing the value) forgets its history, as in Zabbix.

Modules: `jsonpath` (Zabbix's JSONPath dialect), `prometheus` (text exposition, patterns), `xmlpath`
(XPath: complete with lxml installed, else an ElementTree subset that refuses the rest by name).
The one module-level cache holds the last few Prometheus texts parsed, so dependent items that split
one scrape parse it once; it holds no item state.

Numbers: numeric steps read text as Zabbix does (trailing newlines and spaces dropped; an unsigned
integer if it is one, else a float) and fail with a message quoting the value, e.g. multiplier on "abc".

Bad parameters (a regular expression or JSONPath that does not compile, a multiplier that is not a
number) fail the step when it runs with "step N (Name): …", and custom on fail applies as in Zabbix;
`validate(steps)` and `Step.validate()` report them at configuration time (StepError naming the step).
"""

from vigil.server.preprocessing.steps import (
    STEP_NAMES,
    ErrorHandler,
    ItemState,
    Previous,
    Result,
    Step,
    StepError,
    StepType,
    run,
    step_from_mapping,
    text_of,
    validate,
)

__all__ = [
    "STEP_NAMES",
    "ErrorHandler",
    "ItemState",
    "Previous",
    "Result",
    "Step",
    "StepError",
    "StepType",
    "run",
    "step_from_mapping",
    "text_of",
    "validate",
]
