#!/usr/bin/env python3
"""The configuration table of docs/configuration.md, made from the rustdoc
of `Config`'s fields in src/config/mod.rs: each field's doc is its meaning,
and its `Default: ...` line its default. The doc comments are the one
source; the page holds a copy between the markers.

    python3 scripts/config-docs.py --check   # fails when the page differs (CI)
    python3 scripts/config-docs.py --write   # rewrites the table in the page
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SOURCE = os.path.join(ROOT, "src", "config", "mod.rs")
PAGE = os.path.join(ROOT, "docs", "configuration.md")
START, END = "<!-- config:start -->", "<!-- config:end -->"


def fields(source):
    """(name, meaning, default) of every setting of `Config`, in order."""
    body = source[source.index("pub struct Config {"):]
    body = body[: body.index("\n}\n")]
    found = []
    for docs, name in re.findall(r"((?:    ///[^\n]*\n|    #\[[^\n]*\]\n)*)    pub (\w+):", body):
        if "#[serde(skip" in docs:
            continue
        lines = [line.strip()[3:].strip() for line in docs.splitlines() if line.strip().startswith("///")]
        text = " ".join(line for line in lines if line)
        match = re.search(r"\s*Default: (.*?)\.?$", text)
        if not match:
            sys.exit(f"config-docs: the doc of `{name}` has no `Default: ...` line")
        meaning = text[: match.start()].strip()
        # Intra-doc links read as plain code on the page.
        meaning = re.sub(r"\[(`[^`]+`)\]\([^)]*\)", r"\1", meaning)
        found.append((name, meaning, match.group(1).strip()))
    return found


def table(found):
    rows = ["| key | default | environment | meaning |", "|---|---|---|---|"]
    for name, meaning, default in found:
        env = f"`ROCKET_EVENTSTREAM_{name.upper()}`"
        rows.append(f"| `{name}` | {default} | {env} | {meaning.replace('|', '&#124;')} |")
    return "\n".join(rows) + "\n"


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "--check"
    with open(SOURCE, encoding="utf-8") as handle:
        made = table(fields(handle.read()))
    with open(PAGE, encoding="utf-8") as handle:
        page = handle.read()
    if START not in page or END not in page:
        sys.exit(f"config-docs: {PAGE} lacks the markers {START} / {END}")
    head, rest = page.split(START, 1)
    current, tail = rest.split(END, 1)
    if mode == "--write":
        with open(PAGE, "w", encoding="utf-8") as handle:
            handle.write(f"{head}{START}\n{made}{END}{tail}")
        print(f"config-docs: wrote {len(made.splitlines()) - 2} keys into {PAGE}")
    elif current.strip() != made.strip():
        sys.exit(
            "config-docs: docs/configuration.md disagrees with the rustdoc of Config's fields; "
            "run python3 scripts/config-docs.py --write"
        )
    else:
        print(f"config-docs: {len(made.splitlines()) - 2} keys agree with the rustdoc")


if __name__ == "__main__":
    main()
