"""Parses the firmware's console: one event per line, `TT <json object>`.

The line format is a contract (boards/README.md). Both tools/emulate.py
(QEMU's output) and a serial reader on real hardware feed lines to
`ConsoleLog`; other lines (boot noise, partial lines) are kept but ignored.
"""

import dataclasses
import json

import numpy as np

PREFIX = "TT "

_DTYPES = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32}


class ConsoleFormatError(ValueError):
    pass


def parse_line(line):
    """The event dict of one console line, or None if it is not an event line."""
    line = line.rstrip("\r\n")
    if not line.startswith(PREFIX):
        return None
    try:
        event = json.loads(line[len(PREFIX) :])
    except json.JSONDecodeError as e:
        raise ConsoleFormatError(f"bad event line {line!r}: {e}") from None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        raise ConsoleFormatError(f'event line without an "event" name: {line!r}')
    return event


def output_array(event):
    """The tensor of an "output" event, with its dtype and shape."""
    shape = tuple(event["shape"])
    kind = event["type"]
    if kind == "float32":  # sent as IEEE-754 bit patterns
        values = np.array(event["values"], dtype=np.uint32).view(np.float32)
    elif kind in _DTYPES:
        values = np.array(event["values"], dtype=np.int64).astype(_DTYPES[kind])
    else:  # raw bytes of a type the app does not decode
        return np.array(event["values"], dtype=np.uint8)
    return values.reshape(shape)


@dataclasses.dataclass
class ConsoleLog:
    """Events in arrival order, with accessors for the inference app's ones."""

    events: list = dataclasses.field(default_factory=list)
    other_lines: list = dataclasses.field(default_factory=list)
    bad_lines: list = dataclasses.field(default_factory=list)  # "TT " but not JSON

    def feed(self, line):
        """Adds one line; returns its event or None."""
        try:
            event = parse_line(line)
        except ConsoleFormatError:
            self.bad_lines.append(line.rstrip("\r\n"))
            return None
        if event is None:
            if line.strip():
                self.other_lines.append(line.rstrip("\r\n"))
        else:
            self.events.append(event)
        return event

    @classmethod
    def from_text(cls, text):
        log = cls()
        for line in text.splitlines():
            log.feed(line)
        return log

    def named(self, name):
        return [e for e in self.events if e["event"] == name]

    def _single(self, name):
        found = self.named(name)
        return found[-1] if found else None

    @property
    def exit_status(self):
        """The status of the "exit" event; None if the firmware never got there."""
        event = self._single("exit")
        return None if event is None else event["status"]

    @property
    def init(self):
        return self._single("init")

    @property
    def arena_used(self):
        return None if self.init is None else self.init["arena_used"]

    @property
    def errors(self):
        return [e for e in self.events if e["event"] in ("error", "fault")]

    def outputs(self):
        """{input index: [output 0 array, output 1 array, ...]}."""
        result = {}
        for event in self.named("output"):
            arrays = result.setdefault(event["index"], [])
            if event["output"] != len(arrays):
                raise ConsoleFormatError(f"output events out of order: {event}")
            arrays.append(output_array(event))
        return result

    def counts(self):
        """{input index: instructions or cycles of that inference (None: overflow)}."""
        return {e["index"]: e["count"] for e in self.named("invoke")}

    @property
    def counter_unit(self):
        invokes = self.named("invoke")
        return invokes[0]["counter"] if invokes else None

    @property
    def stack_used(self):
        event = self._single("stack")
        return None if event is None else event["used"]
