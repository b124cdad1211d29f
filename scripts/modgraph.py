#!/usr/bin/env python3
"""Module dependency graph of the product's crates: which file-level module
refers to which (crate::…, super::…, intercloud_actors::…), the cycles among
them (strongly connected components), and files by size.

  scripts/modgraph.py            summary: modules, edges, cycles, large files
  scripts/modgraph.py --edges    every edge
  scripts/modgraph.py --check    exit 1 when a cycle exists, or a product
                                 module depends on the lab
  --root DIR                     another tree of the same layout (tests)
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if "--root" in sys.argv:
    ROOT = sys.argv[sys.argv.index("--root") + 1]
CRATES = {"actors": "actors/src", "intercloud": "src"}
# The lab: what simulates, measures and demonstrates federations. The
# product (everything else) must not depend on it.
LAB = ("scenario", "bench", "demo", "demo_federation", "federation", "manifests")


def modules(crate, src):
    """File path -> module path (tuple) for every .rs file of a crate."""
    out = {}
    for dirpath, _, files in os.walk(os.path.join(ROOT, src)):
        for f in files:
            if not f.endswith(".rs"):
                continue
            p = os.path.join(dirpath, f)
            rel = os.path.relpath(p, os.path.join(ROOT, src))[:-3].split(os.sep)
            if rel[-1] == "mod":
                rel = rel[:-1]
            if rel in (["lib"], ["main"]):
                rel = []
            out[p] = (crate,) + tuple(rel)
    return out


def strip(text):
    """Drops comments, string literals and #[cfg(test)] modules."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    i = text.find("#[cfg(test)]")
    while i != -1:
        j = text.find("mod ", i)
        k = text.find("{", j)
        if j == -1 or k == -1 or j - i > 40:
            i = text.find("#[cfg(test)]", i + 1)
            continue
        depth, m = 0, k
        while m < len(text):
            if text[m] == "{":
                depth += 1
            elif text[m] == "}":
                depth -= 1
                if depth == 0:
                    break
            m += 1
        text = text[:i] + text[m + 1 :]
        i = text.find("#[cfg(test)]")
    return text


def graph():
    mods = {}
    for c, s in CRATES.items():
        mods.update(modules(c, s))
    known = set(mods.values())
    edges = {m: set() for m in known}

    def resolve(path):
        while path and path not in known:
            path = path[:-1]
        return path

    for f, m in mods.items():
        text = strip(open(f).read())
        crate = m[0]
        # `use` trees: crate::a::{b, c::d}
        refs = []
        for u in re.finditer(r"\b(crate|super|intercloud_actors|intercloud)((?:::\w+)+)(::\{([^;]*?)\})?", text):
            head, tail, _, group = u.groups()
            parts = tail.strip(":").split("::")
            if head == "crate":
                base = (crate,)
            elif head == "intercloud_actors":
                base = ("actors",)
            elif head == "intercloud":
                base = ("intercloud",)
            else:
                # `super` of a file module and of a directory's mod.rs alike.
                base = m[:-1] if len(m) > 1 else m
            refs.append(base + tuple(parts))
            if group:
                for g in re.split(r",", group):
                    g = g.strip().split(" as ")[0]
                    if g and g != "self":
                        refs.append(base + tuple(parts) + tuple(x for x in g.split("::") if x and x != "{"))
        for r in refs:
            t = resolve(r)
            if t and t != m and not (len(t) < len(m) and m[: len(t)] == t and len(t) == 1):
                edges[m].add(t)
    return mods, edges


def sccs(edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def name(m):
    return "::".join(m) if len(m) > 1 else m[0]


def main():
    mods, edges = graph()
    cycles = sccs(edges)
    if "--edges" in sys.argv:
        for m in sorted(edges):
            for t in sorted(edges[m]):
                print(f"{name(m)} -> {name(t)}")
        return 0
    lines = {m: sum(1 for _ in open(f)) for f, m in mods.items()}
    print(f"modules: {len(mods)}, lines: {sum(lines.values())}, edges: {sum(len(e) for e in edges.values())}")
    for c in ("actors", "intercloud"):
        print(f"  {c}: {sum(1 for m in mods.values() if m[0] == c)} files, {sum(n for m, n in lines.items() if m[0] == c)} lines")
    print(f"cycles: {len(cycles)}")
    for c in cycles:
        inner = [(name(a), name(b)) for a in c for b in sorted(edges[a]) if b in c]
        print("  " + ", ".join(name(m) for m in c))
        for a, b in inner:
            print(f"    {a} -> {b}")
    def lab(m):
        return len(m) > 1 and m[0] == "intercloud" and m[1] in LAB

    # The binary's command line (src/cli) dispatches to both.
    def product(m):
        return len(m) > 1 and not lab(m) and not (m[0] == "intercloud" and m[1] == "cli")

    inward = sorted((name(a), name(b)) for a in edges for b in edges[a] if lab(b) and product(a))
    print(f"product -> lab: {len(inward)}")
    for a, b in inward:
        print(f"    {a} -> {b}")
    big = sorted(((n, name(m)) for m, n in lines.items() if n > 600), reverse=True)
    print("files over 600 lines: " + (", ".join(f"{m} ({n})" for n, m in big) or "none"))
    if "--check" in sys.argv and (cycles or inward):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
