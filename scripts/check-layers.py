#!/usr/bin/env python3
"""Checks that the library's modules form a DAG that follows the data path.

Nodes are the files of src/ (src/grip/instruct.rs is `grip::instruct`,
src/lib.rs is `crate`). Edges are the module paths a file names outside
`#[cfg(test)]` items, in a `use` or inline: every `crate::`, `super::` and
`self::` path, and relative paths into the file's own child modules
(`grip::validate` in config/mod.rs when it declares `mod grip;`). A path
goes to the deepest module it names (`crate::grip::link::Linker` is an edge
to `grip::link`).

It fails on
  - an edge against the layer table (a module may name only modules of lower layers;
    a submodule takes its top-level module's layer, and within one
    top-level module any direction is allowed), and
  - any cycle between files.

    python3 scripts/check-layers.py [SRC_DIR]   # default: src next to this script
    python3 scripts/check-layers.py --self-test # proves it catches both faults
"""

import os
import re
import sys
import tempfile

# The data path, leaves first, is written once: the layer table in the
# docs of src/lib.rs, one row per top-level module (`//! | layer | `name` |
# ...`). `internals` (test and benchmark access) and the crate root sit on
# top.
TABLE_ROW = re.compile(r"^//! \| [^|`]+ \| `([a-z_]+)` \|")


def layers_of(src):
    """The top-level modules in layer order, read from `src/lib.rs`."""
    with open(os.path.join(src, "lib.rs"), encoding="utf-8") as handle:
        names = [m.group(1) for m in map(TABLE_ROW.match, handle) if m]
    if not names:
        sys.exit(f"check-layers: no layer table in {os.path.join(src, 'lib.rs')}")
    return names + ["internals", "crate"]


IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def module_of(src, path):
    """`src/grip/instruct.rs` -> `grip::instruct`; lib.rs -> `crate`."""
    rel = os.path.relpath(path, src)[: -len(".rs")].split(os.sep)
    if rel == ["lib"]:
        return "crate"
    if rel[-1] == "mod":
        rel = rel[:-1]
    return "::".join(rel)


def strip_comments_and_strings(text):
    """Blanks out comments, string and char literals (lifetimes survive)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif re.match(r'b?r#*"', text[i:i + 40]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'b?r(#*)"', text[i:])
            closing = '"' + m.group(1)
            end = text.find(closing, i + m.end())
            i = n if end < 0 else end + len(closing)
            out.append('""')
        elif c == '"' or (c == "b" and text.startswith('b"', i) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_"))):
            i += 2 if c == "b" else 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'":
            m = re.match(r"'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'])'", text[i:])
            if m:
                i += m.end()
                out.append("' '")
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def strip_cfg_test(text):
    """Removes every item under `#[cfg(test)]` (a `mod tests { .. }`, a
    `use`, a function)."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]", text)
        if not m:
            return text
        i = m.end()
        # Further attributes on the same item.
        while True:
            a = re.match(r"\s*#\[", text[i:])
            if not a:
                break
            depth, i = 1, i + a.end()
            while depth:
                depth += {"[": 1, "]": -1}.get(text[i], 0)
                i += 1
        depth = 0
        while i < len(text):
            ch = text[i]
            if ch == ";" and depth == 0:
                i += 1
                break
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    i += 1
                    break
            i += 1
        text = text[: m.start()] + text[i:]


def expand_use_tree(tree):
    """`crate::{a, b::{c, d}}` -> ['crate::a', 'crate::b::c', 'crate::b::d']."""
    tree = re.sub(r"\s+", "", tree)
    brace = tree.find("{")
    if brace < 0:
        return [re.sub(r"(::self)$", "", re.sub(r"\bas" + IDENT + "$", "", tree))]
    prefix, inner = tree[:brace], tree[brace + 1: tree.rfind("}")]
    parts, depth, start = [], 0, 0
    for index, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(inner[start:index])
            start = index + 1
    parts.append(inner[start:])
    paths = []
    for part in filter(None, parts):
        if part == "self":
            paths.append(prefix.rstrip(":"))
        else:
            paths.extend(expand_use_tree(prefix + part))
    return paths


def resolve(module, path, children, modules):
    """The module a path in `module` names, or None if it is not ours."""
    segments = path.split("::")
    if segments[0] == "crate":
        base, rest = [], segments[1:]
    elif segments[0] in ("super", "self"):
        base = [] if module == "crate" else module.split("::")
        rest = segments
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
    elif segments[0] in children:
        base = [] if module == "crate" else module.split("::")
        rest = segments
    else:
        return None
    candidate = base + rest
    while candidate:
        name = "::".join(candidate)
        if name in modules:
            return name
        candidate = candidate[:-1]
    return "crate"


def edges_of(module, text, modules):
    text = strip_cfg_test(strip_comments_and_strings(text))
    children = set(re.findall(r"\bmod\s+(" + IDENT + r")\s*;", text))
    paths = []
    for tree in re.findall(r"\buse\s+([^;]+);", text):
        paths.extend(expand_use_tree(tree))
    text = re.sub(r"\buse\s+[^;]+;", ";", text)
    heads = ["crate", "super", "self"] + sorted(children)
    inline = r"(?<![\w:$])((?:" + "|".join(heads) + r")(?:::" + IDENT + r")+)"
    paths.extend(re.findall(inline, text))
    targets = set()
    for path in paths:
        target = resolve(module, path, children, modules)
        if target and target != module:
            targets.add(target)
    return targets


def check(src, layers=None):
    rank = {name: index for index, name in enumerate(layers or layers_of(src))}

    def layer_of(module):
        return rank.get(module.split("::")[0])

    files = {}
    for root, _, names in os.walk(src):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(root, name)
                files[module_of(src, path)] = path
    modules = set(files)
    graph = {}
    for module, path in files.items():
        with open(path, encoding="utf-8") as handle:
            graph[module] = edges_of(module, handle.read(), modules)
    problems = []
    for module in sorted(graph):
        if layer_of(module) is None:
            problems.append(f"{module}: not in the layer table of lib.rs; place it on the data path")
            continue
        for target in sorted(graph[module]):
            same_top = module.split("::")[0] == target.split("::")[0]
            if layer_of(target) is None:
                continue  # reported as a module of its own
            if not same_top and layer_of(target) >= layer_of(module):
                problems.append(
                    f"{module} -> {target}: against the layer order "
                    f"({module.split('::')[0]} is below {target.split('::')[0]})"
                )
    # Cycles, by depth-first search over files.
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycle = stack[stack.index(target):] + [target]
                problems.append("cycle: " + " -> ".join(cycle))
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return graph, problems, layer_of


def order(graph, layer_of):
    """The modules leaves first (a topological order), for the report."""
    done, result = set(), []

    def visit(node):
        if node in done:
            return
        done.add(node)
        for target in sorted(graph.get(node, ())):
            visit(target)
        result.append(node)

    for node in sorted(graph, key=lambda name: (layer_of(name) or 0, name)):
        visit(node)
    return result


def self_test():
    """The checker must fail on a cycle and on an upward edge, and read the
    order from the table."""
    layers = ["wire", "write", "delivery", "config", "grip", "stage", "crate"]
    cases = {
        "cycle through inline paths": {
            "lib.rs": "mod delivery;\nmod write;\n",
            "delivery.rs": "fn f() { crate::write::g() }\n",
            "write.rs": "use crate::delivery;\n#[cfg(test)]\nmod tests { use crate::stage; }\n",
        },
        "upward edge": {
            "lib.rs": "mod wire;\nmod stage;\n",
            "wire.rs": "// crate::stage in a comment is no edge\nuse crate::stage::Stage;\n",
            "stage.rs": "",
        },
        "parent and child in a cycle": {
            "lib.rs": "mod config;\n",
            "config/mod.rs": "mod grip;\nfn v() { grip::validate() }\npub struct Config;\n",
            "config/grip.rs": "use super::Config;\npub fn validate() {}\n",
        },
    }
    clean = {
        "lib.rs": "mod wire;\nmod grip;\n",
        "wire.rs": 'const S: &str = "crate::grip::x";\n',
        "grip/mod.rs": "pub(crate) mod link;\nuse crate::wire;\n",
        "grip/link.rs": "use super::super::wire::{self, quote};\n#[cfg(test)]\nuse crate::grip;\n",
    }
    failures = []
    for name, tree in list(cases.items()) + [("clean tree", clean)]:
        with tempfile.TemporaryDirectory() as src:
            for rel, text in tree.items():
                os.makedirs(os.path.dirname(os.path.join(src, rel)), exist_ok=True)
                with open(os.path.join(src, rel), "w", encoding="utf-8") as handle:
                    handle.write(text)
            _, problems, _ = check(src, layers)
            expected_failure = name != "clean tree"
            if bool(problems) != expected_failure:
                failures.append(f"{name}: problems {problems}")
    for failure in failures:
        print("check-layers self-test:", failure)
    # The order comes from the table, leaves first.
    with tempfile.TemporaryDirectory() as src:
        with open(os.path.join(src, "lib.rs"), "w", encoding="utf-8") as handle:
            handle.write("//! | layer | module | what |\n//! |---|---|---|\n"
                         "//! | leaves | `wire` | ids |\n//! | edge | `stage` | the fairing |\n")
        if layers_of(src) != ["wire", "stage", "internals", "crate"]:
            failures.append(f"table: read {layers_of(src)}")
    print(f"check-layers self-test: {5 - len(failures)} passed, {len(failures)} failed")
    return not failures


def main():
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(0 if self_test() else 1)
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
    graph, problems, layer_of = check(os.path.normpath(src))
    for problem in problems:
        print("check-layers:", problem)
    if problems:
        print(f"check-layers: {len(problems)} problem(s) in {len(graph)} modules")
        sys.exit(1)
    print(f"check-layers: {len(graph)} modules form a DAG along the data path, leaves first:")
    for module in order(graph, layer_of):
        targets = ", ".join(sorted(graph[module])) or "-"
        print(f"  {module:20} -> {targets}")


if __name__ == "__main__":
    main()
