#!/usr/bin/env python3
"""The module rules of docs/design.md#layout, checked on the source.

- Imports run downward only: a module may use what sits below it in
  LAYERS, never what sits above (cli > server > api > processor > nu >
  store > sys; `ui` is the viewer's page, beside api).
- Inside `store/`, no two files import each other (a parent module and
  its own child are one unit and do not count).
- The Redis backend does not import the local one.
- `libc` is called only in `src/sys/`.
- `src/store/` shows its facade; only the namespaces in ALLOWED_PUB_MOD
  are `pub mod`.

Exit 1 with one line per breach; silent when the tree keeps the rules.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

# Lower index = lower layer. Files at the top of src/ (main, lib) are the top.
LAYERS = ["sys", "store", "nu", "processor", "api", "ui", "server", "cli"]
# Modules of src/store/ that may be `pub mod` (what the facade shows).
ALLOWED_PUB_MOD = {"groups", "id", "topic"}


def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel in (["lib"], ["main"]):
        return []
    return rel


def files():
    for dirpath, _, names in os.walk(ROOT):
        for name in names:
            if name.endswith(".rs"):
                yield os.path.join(dirpath, name)


def strip_comments(text):
    return re.sub(r"//[^\n]*", "", text)


def expand(prefix, body):
    """`a::{b, c::{d, e}}` → [a::b, a::c::d, a::c::e] (prefix given)."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(body + ","):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            part = body[start:i].strip()
            start = i + 1
            if not part:
                continue
            m = re.match(r"^([\w:]*?)(?:::)?\{(.*)\}$", part, re.S)
            if m:
                sub = prefix + ([m.group(1)] if m.group(1) else [])
                out += expand("::".join(sub).split("::") if sub else [], m.group(2))
            else:
                out.append(prefix + part.split(" as ")[0].strip().split("::"))
    return out


def references(module, text):
    """Module paths (as lists) this file names through crate::/super::/self::."""
    paths = []
    for m in re.finditer(r"\b(crate|super|self)((?:::\w+)*)(?:::\{([^;]*?)\})?", text):
        base = resolve_base(module, m.group(1))
        if base is None:
            continue
        head = base + [p for p in m.group(2).split("::") if p]
        if m.group(3) is not None:
            for tail in expand([], m.group(3)):
                paths.append(head + [t for t in tail if t and t != "self"])
        else:
            paths.append(head)
    return paths


def resolve_base(module, word):
    if word == "crate":
        return []
    if word == "self":
        return list(module)
    return list(module[:-1]) if module else None


def main():
    modules = {}
    for path in files():
        modules[tuple(module_of(path))] = path
    breaches = []
    edges = set()
    for key, path in modules.items():
        with open(path, encoding="utf-8") as f:
            raw = f.read()
        text = strip_comments(raw)
        rel = os.path.relpath(path, os.path.join(ROOT, ".."))
        if key[:1] != ("sys",) and re.search(r"\blibc::", text):
            breaches.append(f"{rel}: calls libc outside src/sys/")
        if key[:1] == ("store",):
            for m in re.finditer(r"^\s*pub mod (\w+)", text, re.M):
                if m.group(1) not in ALLOWED_PUB_MOD:
                    breaches.append(f"{rel}: `pub mod {m.group(1)}` (store modules are private; re-export from the facade)")
        for ref in references(list(key), text):
            target = longest_module(modules, ref)
            if target is None or target == key:
                continue
            edges.add((key, target))
    for src, dst in sorted(edges):
        s, d = layer(src), layer(dst)
        if s is not None and d is not None and d > s:
            breaches.append(f"{name(modules, src)}: imports {name(modules, dst)}, a higher layer")
        if src[:2] == ("store", "redis") and dst[:2] == ("store", "local"):
            breaches.append(f"{name(modules, src)}: the Redis backend imports {name(modules, dst)}")
        if src < dst and (dst, src) in edges and src[:1] == ("store",) and dst[:1] == ("store",):
            if not (is_parent(src, dst) or is_parent(dst, src)):
                breaches.append(f"{name(modules, src)} and {name(modules, dst)} import each other")
    for line in breaches:
        print(line)
    return 1 if breaches else 0


def is_parent(a, b):
    return len(a) + 1 == len(b) and b[: len(a)] == a


def longest_module(modules, path):
    for n in range(len(path), 0, -1):
        if tuple(path[:n]) in modules:
            return tuple(path[:n])
    return None


def layer(key):
    if not key:
        return len(LAYERS)
    top = key[0]
    if top == "service_manager":
        top = "server"
    if top == "check":
        top = "cli"
    return LAYERS.index(top) if top in LAYERS else None


def name(modules, key):
    return os.path.relpath(modules[key], os.path.join(ROOT, ".."))


if __name__ == "__main__":
    sys.exit(main())
