"""Counting, dates, arithmetic and small Python snippets (whose printed outputs are true)."""

from __future__ import annotations

import operator
import random

from activations.corpus.lexicon import DAYS, FOODS, MONTHS, NUMBER_WORDS, OBJECTS


_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul}
_LIST_FUNCTIONS = {"sorted": sorted, "len": len, "sum": sum, "max": max, "min": min}


def counting(rng: random.Random) -> str:
    length = rng.randint(3, 8)
    if rng.random() < 0.5:
        start = rng.randint(1, len(NUMBER_WORDS) - length)
        words = NUMBER_WORDS[start:start + length]
        if rng.random() < 0.3:
            return f"Counting down: {', '.join(reversed(words))}."
        return f"{rng.choice(('Let us count', 'Count with me', 'We count'))}: {', '.join(words)}."
    start = rng.randint(0, 195)
    step = rng.choice((1, 1, 2, 5, 10))
    return ", ".join(str(start + step * i) for i in range(length)) + "."


def dates(rng: random.Random, names: tuple[str, ...]) -> str:
    choice = rng.randrange(5)
    if choice == 0:
        i = rng.randrange(7)
        return f"The day after {DAYS[i]} is {DAYS[(i + 1) % 7]}. The day before {DAYS[i]} is {DAYS[i - 1]}."
    if choice == 1:
        i = rng.randrange(12)
        return f"The month after {MONTHS[i]} is {MONTHS[(i + 1) % 12]}."
    if choice == 2:
        i, n = rng.randrange(7), rng.randint(3, 7)
        return ", ".join(DAYS[(i + k) % 7] for k in range(n)) + "."
    if choice == 3:
        year = rng.randint(1500, 2099)
        return ", ".join(str(year + k) for k in range(rng.randint(3, 6))) + "."
    day, month, year = rng.randint(1, 28), rng.choice(MONTHS), rng.randint(1500, 2099)
    return f"{rng.choice(names)} was born on {month} {day}, {year}. That was a {rng.choice(DAYS)}."


def arithmetic(rng: random.Random, names: tuple[str, ...]) -> str:
    if rng.random() < 0.3:
        name, thing = rng.choice(names), rng.choice(FOODS[:2] + ("coins", "books", "cards"))
        a, b = rng.randint(1, 12), rng.randint(1, 12)
        return f"{name} has {a} {thing} and gets {b} more. Now {name} has {a + b} {thing}."
    lines = []
    for _ in range(rng.randint(2, 5)):
        op = rng.choice("+-*")
        a, b = (rng.randint(0, 12), rng.randint(0, 12)) if op == "*" else (rng.randint(0, 50), rng.randint(0, 50))
        if op == "-" and b > a:
            a, b = b, a
        lines.append(f"{a} {op} {b} = {_OPS[op](a, b)}")
    return "\n".join(lines)


_FUNCTIONS = (("add", "+"), ("plus", "+"), ("subtract", "-"), ("minus", "-"), ("multiply", "*"),
              ("times", "*"))
_ARGS = (("a", "b"), ("x", "y"), ("left", "right"), ("first", "second"), ("m", "n"))
_VARIABLES = ("total", "count", "score", "price", "width", "height", "speed", "age", "size", "level",
              "result", "value", "amount", "distance", "weight", "limit", "number", "points")
_LISTS = ("items", "numbers", "scores", "prices", "values", "ages", "sizes", "marks")


def code_snippet(rng: random.Random, names: tuple[str, ...]) -> str:
    """A few lines of Python and, as a comment, what they print."""
    choice = rng.randrange(6)
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    var = rng.choice(_VARIABLES)
    if choice == 0:
        (fn, op), (x, y) = rng.choice(_FUNCTIONS), rng.choice(_ARGS)
        return f"def {fn}({x}, {y}):\n    return {x} {op} {y}\n\nprint({fn}({a}, {b}))\n# {_OPS[op](a, b)}"
    if choice == 1:
        n, i = rng.randint(2, 5), rng.choice("ijkn")
        return f"for {i} in range({n}):\n    print({i})\n# {' '.join(str(k) for k in range(n))}"
    if choice == 2:
        items, fn = [rng.randint(0, 9) for _ in range(rng.randint(3, 5))], rng.choice(sorted(_LIST_FUNCTIONS))
        name = rng.choice(_LISTS)
        return f"{name} = {items}\nprint({fn}({name}))\n# {_LIST_FUNCTIONS[fn](items)}"
    if choice == 3:
        name = rng.choice(names)
        return f'name = "{name}"\nprint("Hello, " + name)\n# Hello, {name}'
    if choice == 4:
        return f"{var} = {a}\n{var} = {var} + {b}\nprint({var})\n# {a + b}"
    thing = rng.choice(OBJECTS)
    return (f"{thing}_count = {a}\nif {thing}_count > {b}:\n    print(\"many\")\nelse:\n"
            f"    print(\"few\")\n# {'many' if a > b else 'few'}")


def misc_document(rng: random.Random, names: tuple[str, ...]) -> str:
    kind = rng.choice(("counting", "dates", "arithmetic", "code"))
    if kind == "counting":
        return counting(rng)
    if kind == "dates":
        return dates(rng, names)
    if kind == "arithmetic":
        return arithmetic(rng, names)
    return code_snippet(rng, names)
