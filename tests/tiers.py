"""The test tiers (README, "Tests") as the source says them, for conftest.py
and tests/test_markers.py.

Not a test module. A module marked `tensorflow` as a whole (`pytestmark`)
may import TensorFlow at the top; every other module must import without
it. When the `-m` expression can select none of a tensorflow module's tests,
whatever marks they carry besides, conftest.py does not collect the module,
so the quick loop (-m "not firmware and not tensorflow and not slow") never
imports TensorFlow.
"""

import ast
import itertools

from _pytest.mark.expression import Expression

# Beyond this many distinct names in a -m expression, may_select gives up
# and says yes (the module is then collected, as pytest would).
MAX_FREE_NAMES = 12


def module_marks(path):
    """The mark names in a module's `pytestmark` (pytest.mark.<name>)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            return {
                n.attr
                for n in ast.walk(node.value)
                if isinstance(n, ast.Attribute)
                and isinstance(n.value, ast.Attribute)
                and n.value.attr == "mark"
            }
    return set()


def may_select(markexpr, marks):
    """Whether the -m expression `markexpr` is true for some test carrying
    every mark in `marks` (each without arguments) and any others: every
    other name in it (or a name with arguments) is tried both ways."""
    expression = Expression.compile(markexpr)
    free = []
    while len(free) <= MAX_FREE_NAMES:
        unknown = None
        for values in itertools.product((False, True), repeat=len(free)):
            assignment = dict(zip(free, values))
            consulted = []

            def matcher(name, /, **kwargs):
                if name in marks and not kwargs:
                    return True
                key = (name, tuple(sorted(kwargs.items())))
                if key not in assignment:
                    consulted.append(key)
                return assignment.get(key, False)

            if expression.evaluate(matcher):
                return True
            if consulted:
                unknown = consulted[0]
                break
        if unknown is None:
            return False
        free.append(unknown)
    return True
