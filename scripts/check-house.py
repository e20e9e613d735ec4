#!/usr/bin/env python3
"""House rules of a crate's module tree, checked from its sources.

    scripts/check-house.py [OPTIONS] SRC_DIR...
    scripts/check-house.py --repo-unsafe [--allow-path PATH]...
    scripts/check-house.py --self-test

For each SRC_DIR (a crate's `src/`), fails (exit 1) when:

  * the modules' imports form a cycle. Every `.rs` file is a module (`foo.rs`
    and `foo/mod.rs` are `foo`, `foo/bar.rs` is `foo::bar`, `lib.rs` the crate
    root; `main.rs` and `bin/*` are roots of their own that reach the library
    by its crate name). A file A depends on a file B when A names an item path
    that resolves into B: `use` trees (grouped, nested, multi-line) and paths
    written in code that start with `crate::`, `self::`, `super::` or (from a
    bin) the library's name; with --relative also those that start with a
    child module's name (`use child::X`, `child::f()`). A path resolves to the
    deepest existing module file; a name there that the module itself imports
    with `use` is followed to where it comes from. Not edges: `mod x;`
    (containment) and a module's `pub use` of its own descendants' items (a
    facade). Test code is not read: an item under `#[cfg(test)]` (such as
    `mod tests { ... }`), a file declared `#[cfg(test)] mod x;`, any module
    named `tests`; nor comments and strings. A cycle is a strongly connected
    component of more than one file; it is printed with the edges that make it.
  * --forbid 'A->B,C' : a module under A (module path prefix, by segments:
    `dpdk` is `dpdk` and `dpdk::*`) imports anything under B or C. Repeatable.
  * --unsafe-only P : the token `unsafe` (code, not comments or strings; test
    code included) appears in a module not under P. Repeatable; an
    `#[allow(unsafe_code)]` on P's declaration is fine.

--repo-unsafe: `git grep -w unsafe` over the repository's `*.rs` files (tracked
and untracked, not ignored); each hit that is code, outside the root package's
`src/` and `build.rs` and the --allow-path prefixes, fails.

--self-test: builds small crates in a temporary directory (with and without a
cycle, a forbidden import, a stray unsafe, test code that would make a cycle if
read...) and checks the verdicts of this very script on them.

Python 3.11 standard library only.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import tomllib

# ------------------------------------------------------------------ tokens

ID_RE = re.compile(r"[^\W\d]\w*")
NUM_RE = re.compile(r"\d\w*")
RAW_STR_RE = re.compile(r'(?:b|c)?r(#*)"')
STR_RE = re.compile(r'(?:b|c)?"')


class Tok:
    __slots__ = ("k", "v", "line")

    def __init__(self, k, v, line):
        self.k = k  # "id", "p" (punctuation), "lit", "lt" (lifetime)
        self.v = v
        self.line = line

    def __repr__(self):
        return f"{self.k}:{self.v}@{self.line}"


EOF = Tok("eof", "", 0)


def tokenize(src):
    """Rust source to tokens; comments dropped, literals emptied."""
    toks = []
    i, n, line = 0, len(src), 1
    while i < n:
        c = src[i]
        if c == "\n":
            line += 1
            i += 1
            continue
        if c.isspace():
            i += 1
            continue
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
            continue
        if src.startswith("/*", i):
            depth = 0
            while i < n:
                if src.startswith("/*", i):
                    depth += 1
                    i += 2
                elif src.startswith("*/", i):
                    depth -= 1
                    i += 2
                    if depth == 0:
                        break
                else:
                    if src[i] == "\n":
                        line += 1
                    i += 1
            continue
        m = RAW_STR_RE.match(src, i)
        if m:
            close = '"' + m.group(1)
            j = src.find(close, m.end())
            end = n if j < 0 else j + len(close)
            toks.append(Tok("lit", "", line))
            line += src.count("\n", i, end)
            i = end
            continue
        m = STR_RE.match(src, i)
        if m:
            j = m.end()
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            end = min(j + 1, n)
            toks.append(Tok("lit", "", line))
            line += src.count("\n", i, end)
            i = end
            continue
        if c == "'" or src.startswith("b'", i):
            j = i + 1 if c == "'" else i + 2
            if j < n and src[j] == "\\":  # '\n', '\'', '\u{..}'
                k = src.find("'", j + 2)
                i = n if k < 0 else k + 1
                toks.append(Tok("lit", "", line))
                continue
            if j + 1 < n and src[j + 1] == "'" and src[j] != "\n":  # 'x'
                toks.append(Tok("lit", "", line))
                i = j + 2
                continue
            m = ID_RE.match(src, j)  # a lifetime or label
            if m:
                toks.append(Tok("lt", m.group(), line))
                i = m.end()
                continue
            toks.append(Tok("p", c, line))
            i += 1
            continue
        m = ID_RE.match(src, i)
        if m:
            word = m.group()
            if word == "r" and src.startswith("#", m.end()):  # r#ident
                m2 = ID_RE.match(src, m.end() + 1)
                if m2:
                    toks.append(Tok("id", m2.group(), line))
                    i = m2.end()
                    continue
            toks.append(Tok("id", word, line))
            i = m.end()
            continue
        m = NUM_RE.match(src, i)
        if m:
            toks.append(Tok("lit", "", line))
            i = m.end()
            continue
        if src.startswith("::", i):
            toks.append(Tok("p", "::", line))
            i += 2
            continue
        if c == "$":
            m = ID_RE.match(src, i + 1)
            if m:  # $crate, $x: macro variables, never our paths
                toks.append(Tok("p", "$" + m.group(), line))
                i = m.end()
                continue
        toks.append(Tok("p", c, line))
        i += 1
    return toks


def at(toks, i):
    return toks[i] if 0 <= i < len(toks) else EOF


OPEN = {"(": ")", "[": "]", "{": "}"}
CLOSE = set(OPEN.values())


def skip_balanced(toks, i):
    """toks[i] opens a group: the index after its matching closer."""
    depth = 0
    while i < len(toks):
        v = toks[i].v
        if toks[i].k == "p" and v in OPEN:
            depth += 1
        elif toks[i].k == "p" and v in CLOSE:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def skip_item(toks, i):
    """Skips one item, statement, field or arm starting at i."""
    depth = 0
    while i < len(toks):
        t = toks[i]
        if t.k == "p":
            if t.v == "{" and depth == 0:
                return skip_balanced(toks, i)
            if t.v in OPEN:
                depth += 1
            elif t.v in CLOSE:
                if depth == 0:
                    return i  # the end of the enclosing block
                depth -= 1
            elif t.v in (";", ",") and depth == 0:
                return i + 1
        i += 1
    return i


CFG_TEST = ["#", "[", "cfg", "(", "test", ")", "]"]
INNER_CFG_TEST = ["#", "!", "[", "cfg", "(", "test", ")", "]"]


def strip_cfg_test(toks):
    """Drops items under #[cfg(test)]. Returns (tokens, names of test child
    modules declared `#[cfg(test)] mod x;`, whether the file is #![cfg(test)])."""
    out, test_mods = [], set()
    whole = [t.v for t in toks[:8]] == INNER_CFG_TEST
    i, n = 0, len(toks)
    while i < n:
        if toks[i].v == "#" and [t.v for t in toks[i : i + 7]] == CFG_TEST:
            j = i + 7
            while at(toks, j).v == "#" and at(toks, j + 1).v == "[":
                j = skip_balanced(toks, j + 1)
            k = j
            if at(toks, k).v == "pub":
                k += 1
                if at(toks, k).v == "(":
                    k = skip_balanced(toks, k)
            if at(toks, k).v == "mod" and at(toks, k + 1).k == "id" and at(toks, k + 2).v == ";":
                test_mods.add(toks[k + 1].v)
                i = k + 3
                continue
            i = skip_item(toks, j)
            continue
        out.append(toks[i])
        i += 1
    return out, test_mods, whole


# ------------------------------------------------------------------ use trees


def parse_use_tree(toks, i, prefix):
    """Parses a use tree at i. Returns ([(segments, kind, binding, line)], next)
    where kind is "item", "self" (the module itself) or "glob"."""
    segs = list(prefix)
    if at(toks, i).v == "::":
        if not segs:
            segs = ["::"]
        i += 1
    while True:
        t = at(toks, i)
        if t.v == "{":
            i += 1
            out = []
            while at(toks, i).v not in ("}", ";", ""):
                sub, j = parse_use_tree(toks, i, segs)
                out += sub
                i = max(j, i + 1) if not sub and j == i else j
                if at(toks, i).v == ",":
                    i += 1
            return out, i + 1 if at(toks, i).v == "}" else i
        if t.v == "*":
            return [(segs, "glob", None, t.line)], i + 1
        if t.k != "id":
            return [], i
        if t.v == "self" and segs and segs != ["::"] and at(toks, i + 1).v != "::":
            i += 1
            name = segs[-1]
            if at(toks, i).v == "as":
                name = at(toks, i + 1).v
                i += 2
            return [(segs, "self", name, t.line)], i
        segs = segs + [t.v]
        i += 1
        if at(toks, i).v == "::":
            i += 1
            continue
        name = segs[-1]
        if at(toks, i).v == "as":
            name = at(toks, i + 1).v
            i += 2
        return [(segs, "item", name, t.line)], i


def visibility_before(toks, i):
    """Whether the item whose keyword is at i has a `pub` visibility."""
    j = i - 1
    if at(toks, j).v == ")":
        depth = 0
        while j >= 0:
            if toks[j].v == ")":
                depth += 1
            elif toks[j].v == "(":
                depth -= 1
                if depth == 0:
                    break
            j -= 1
        j -= 1
    return at(toks, j).v == "pub"


# ------------------------------------------------------------------ one file


class FileMod:
    def __init__(self, key, root, path, rel):
        self.key = key  # module path, a tuple
        self.root = root  # its crate root's key
        self.path = path
        self.rel = rel  # path relative to the src dir
        self.uses = []  # (segs, kind, binding, line, ctx, is_pub, top_level)
        self.paths = []  # (segs, line, ctx)
        self.bindings = {}  # name -> (segs, ctx) of top-level `use`s
        self.test_mods = set()
        self.whole_test = False
        self.unsafe_lines = []
        self.test = False

    def scan(self):
        with open(self.path, encoding="utf-8", errors="replace") as f:
            src = f.read()
        all_toks = tokenize(src)
        self.unsafe_lines = [t.line for t in all_toks if t.k == "id" and t.v == "unsafe"]
        toks, self.test_mods, self.whole_test = strip_cfg_test(all_toks)
        depth = 0
        stack = []  # inline modules: (name, depth inside)
        i, n = 0, len(toks)
        while i < n:
            t = toks[i]
            ctx = self.key + tuple(s for s, _ in stack)
            if t.k == "p":
                if t.v == "{":
                    depth += 1
                elif t.v == "}":
                    depth -= 1
                    while stack and stack[-1][1] > depth:
                        stack.pop()
                i += 1
                continue
            if t.k != "id":
                i += 1
                continue
            if t.v == "mod" and at(toks, i + 1).k == "id" and at(toks, i + 2).v == "{":
                stack.append((toks[i + 1].v, depth + 1))
                i += 2
                continue
            if t.v == "use" and at(toks, i - 1).v not in ("::", "."):
                is_pub = visibility_before(toks, i)
                tree, j = parse_use_tree(toks, i + 1, [])
                for segs, kind, name, line in tree:
                    top = depth == 0
                    self.uses.append((segs, kind, name, line, ctx, is_pub, top))
                    if top and kind != "glob" and name and name != "_":
                        self.bindings[name] = (segs, ctx)
                while j < n and toks[j].v != ";":
                    j += 1
                i = j + 1
                continue
            prev = at(toks, i - 1)
            if at(toks, i + 1).v == "::" and prev.v not in ("::", ".") and prev.k != "lt":
                if prev.v == "in" and at(toks, i - 2).v == "(":  # pub(in crate::x)
                    i += 1
                    continue
                segs = [t.v]
                j = i + 1
                while at(toks, j).v == "::" and at(toks, j + 1).k == "id":
                    segs.append(toks[j + 1].v)
                    j += 2
                self.paths.append((segs, t.line, ctx))
                i = j
                continue
            i += 1


# ------------------------------------------------------------------ a crate


def module_key(rel, has_lib):
    parts = rel.split(os.sep)
    if parts[0] == "bin" and len(parts) >= 2:
        if len(parts) == 2:
            name = parts[1][:-3]
            return ("bin", name), ("bin", name)
        name = parts[1]
        rest = parts[2:]
        if rest == ["main.rs"]:
            return ("bin", name), ("bin", name)
        rest[-1] = rest[-1][:-3]
        if rest[-1] == "mod":
            rest = rest[:-1]
        return ("bin", name) + tuple(rest), ("bin", name)
    if rel == "lib.rs":
        return (), ()
    if rel == "main.rs":
        return (("main",), ("main",)) if has_lib else ((), ())
    parts[-1] = parts[-1][:-3]
    if parts[-1] == "mod":
        parts = parts[:-1]
    return tuple(parts), ()


def mod_name(key):
    return "::".join(key) if key else "crate"


def under(key, prefix):
    """Module path prefix by segments; "crate" is the root and all below."""
    if prefix == "crate":
        return True
    p = tuple(prefix.split("::"))
    return key[: len(p)] == p


def crate_name(src_dir):
    manifest = os.path.join(os.path.dirname(os.path.abspath(src_dir)), "Cargo.toml")
    try:
        with open(manifest, "rb") as f:
            data = tomllib.load(f)
        lib = data.get("lib", {}).get("name")
        return lib or data["package"]["name"].replace("-", "_")
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return os.path.basename(os.path.dirname(os.path.abspath(src_dir))).replace("-", "_")


class Crate:
    def __init__(self, src_dir, name=None, relative=False):
        self.src = src_dir
        self.name = name or crate_name(src_dir)
        self.relative = relative
        self.mods = {}
        files = []
        for dirpath, dirnames, filenames in os.walk(src_dir):
            dirnames.sort()
            for fn in sorted(filenames):
                if fn.endswith(".rs"):
                    files.append(os.path.relpath(os.path.join(dirpath, fn), src_dir))
        has_lib = "lib.rs" in files
        for rel in files:
            key, root = module_key(rel, has_lib)
            if key in self.mods:  # foo.rs beside foo/mod.rs: keep the first
                continue
            m = FileMod(key, root, os.path.join(src_dir, rel), rel)
            m.scan()
            self.mods[key] = m
        for key, m in self.mods.items():
            parent = self.mods.get(key[:-1]) if len(key) > len(m.root) else None
            if (
                m.whole_test
                or "tests" in key[len(m.root) :]
                or (parent is not None and key[-1] in parent.test_mods)
            ):
                m.test = True
        for key, m in self.mods.items():  # below a test module is test code too
            for L in range(len(m.root) + 1, len(key)):
                if self.mods.get(key[:L]) is not None and self.mods[key[:L]].test:
                    m.test = True

    def resolve(self, m, ctx, segs, depth=0):
        """(module key, remaining segments) that segs, written in m at ctx,
        names; None when it leaves the crate."""
        if depth > 8 or not segs:
            return None
        root = m.root
        first = segs[0]
        if first == "::":
            if len(segs) > 1 and segs[1] == self.name and root != () and () in self.mods:
                base, rest, root = (), segs[2:], ()
            else:
                return None
        elif first == "crate":
            base, rest = root, segs[1:]
        elif first in ("self", "super"):
            base, k = ctx, 0
            while k < len(segs) and segs[k] in ("self", "super"):
                if segs[k] == "super":
                    if len(base) <= len(root):
                        return None
                    base = base[:-1]
                k += 1
            rest = segs[k:]
        elif first == self.name and root != () and () in self.mods:
            base, rest, root = (), segs[1:], ()
        elif ctx + (first,) in self.mods:
            base, rest = ctx, segs
        elif ctx == m.key and first in m.bindings:
            bsegs, bctx = m.bindings[first]
            if bsegs == segs[: len(bsegs)] and len(bsegs) >= len(segs):
                return None
            return self.resolve(m, bctx, list(bsegs) + list(segs[1:]), depth + 1)
        else:
            return None
        full = tuple(base) + tuple(rest)
        target = None
        for L in range(len(full), len(root) - 1, -1):
            if full[:L] in self.mods:
                target, remaining = full[:L], full[L:]
                break
        if target is None:
            return None
        if remaining:
            t = self.mods[target]
            b = t.bindings.get(remaining[0])
            if b is not None:
                r = self.resolve(t, b[1], list(b[0]) + list(remaining[1:]), depth + 1)
                if r is not None:
                    return r
        return target, remaining

    def explicit(self, m, segs):
        """Whether a path is one that makes an edge: `crate::`, `self::`,
        `super::`, the library's name from a bin root; with --relative also a
        path that starts with a child module's or an imported name."""
        first = segs[0]
        if first in ("crate", "self", "super", "::"):
            return True
        if first == self.name and m.root != ():
            return True
        return self.relative

    def edges(self):
        """{(from key, to key): [(name, line)]}"""
        out = {}

        def add(a, b, name, line):
            if a == b or self.mods[b].test:
                return
            out.setdefault((a, b), []).append((name, line))

        for key, m in self.mods.items():
            if m.test:
                continue
            for segs, kind, name, line, ctx, is_pub, _top in m.uses:
                if not self.explicit(m, segs):
                    continue
                r = self.resolve(m, ctx, segs)
                if r is None:
                    continue
                target, remaining = r
                if is_pub and len(target) > len(key) and target[: len(key)] == key:
                    continue  # a facade: the module re-exports its own descendant
                if kind == "glob":
                    label = "::".join(remaining + ("*",))
                else:
                    label = "::".join(remaining) or (target[-1] if target else "crate")
                add(key, target, label, line)
            for segs, line, ctx in m.paths:
                if not self.explicit(m, segs):
                    continue
                r = self.resolve(m, ctx, segs)
                if r is None:
                    continue
                target, remaining = r
                add(key, target, "::".join(remaining) or (target[-1] if target else "crate"), line)
        return out


def sccs(nodes, adj):
    """Tarjan's strongly connected components, iteratively."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(adj.get(start, ())))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(adj.get(w, ()))))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(comp)
    return out


def shortest_cycle(start, adj, comp):
    """A shortest path start -> ... -> start inside comp."""
    prev = {}
    frontier = [start]
    seen = set()
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(adj.get(v, ())):
                if w not in comp:
                    continue
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start] + path[::-1][1:] + [start] if len(path) > 1 else [start, start]
                if w not in seen:
                    seen.add(w)
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return [start]


def fmt_names(items, limit=8):
    """ "Burst (line 8, 536), Context (line 15)": the names an edge is made of."""
    lines = {}
    for name, line in sorted(items, key=lambda x: x[1]):
        name = name.split("::")[0] if name != "*" and not name.endswith("*") else name
        if line not in lines.setdefault(name, []):
            lines[name].append(line)
    out = [f"{name} (line {', '.join(map(str, ls))})" for name, ls in lines.items()]
    more = len(out) - limit
    return ", ".join(out[:limit]) + (f", +{more} more" if more > 0 else "")


def check_crate(src_dir, forbid, unsafe_only, name=None, relative=False):
    """Prints the verdict for one crate; returns the number of failures."""
    crate = Crate(src_dir, name, relative)
    mods = crate.mods
    rel = lambda k: mods[k].rel  # noqa: E731
    edges = crate.edges()
    adj = {}
    for a, b in edges:
        adj.setdefault(a, set()).add(b)
    nodes = sorted(k for k, m in mods.items() if not m.test)
    failures = 0
    label = f"{src_dir} (crate {crate.name}, {len(nodes)} module files)"

    comps = [sorted(c) for c in sccs(nodes, adj) if len(c) > 1]
    for comp in sorted(comps, key=lambda c: [rel(k) for k in c]):
        failures += 1
        cs = set(comp)
        files = sorted(rel(k) for k in comp)
        print(f"FAIL {src_dir}: import cycle among {len(comp)} files: {', '.join(files)}")
        print("  the edges inside it (file -> file: names):")
        for (a, b), items in sorted(edges.items(), key=lambda e: (rel(e[0][0]), rel(e[0][1]))):
            if a in cs and b in cs:
                print(f"    {rel(a)} -> {rel(b)}: {fmt_names(items)}")
        start = min(comp, key=rel)
        path = shortest_cycle(start, adj, cs)
        print("  a shortest cycle: " + " -> ".join(rel(k) for k in path))
    if not comps:
        print(f"ok   {label}: no import cycles")

    for rule in forbid:
        lhs, _, rhs = rule.partition("->")
        srcs = [p.strip() for p in lhs.split(",") if p.strip()]
        dsts = [p.strip() for p in rhs.split(",") if p.strip()]
        if not srcs or not dsts:
            print(f"FAIL {src_dir}: bad --forbid rule {rule!r} (want 'a->b,c')")
            failures += 1
            continue
        for p in srcs + dsts:
            if not any(under(k, p) for k in nodes):
                print(f"note {src_dir}: --forbid {rule!r}: no module under {p!r} (yet)")
        bad = [
            (a, b, items)
            for (a, b), items in edges.items()
            if any(under(a, p) for p in srcs)
            and any(under(b, p) for p in dsts)
            and not any(under(b, p) for p in srcs)
        ]
        for a, b, items in sorted(bad, key=lambda e: (rel(e[0]), rel(e[1]))):
            failures += 1
            print(
                f"FAIL {src_dir}: forbidden import ({lhs.strip()} may not import {rhs.strip()}): "
                f"{rel(a)} ({mod_name(a)}) -> {rel(b)} ({mod_name(b)}): {fmt_names(items)}"
            )
        if not bad:
            print(f"ok   {src_dir}: nothing under {', '.join(srcs)} imports {', '.join(dsts)}")

    if unsafe_only:
        stray = [
            (m.rel, line)
            for k, m in sorted(mods.items(), key=lambda e: e[1].rel)
            if not any(under(k, p) for p in unsafe_only)
            for line in m.unsafe_lines
        ]
        for f, line in stray:
            print(f"FAIL {src_dir}: `unsafe` outside {', '.join(unsafe_only)}: {f}:{line}")
        failures += len(stray)
        if not stray:
            print(f"ok   {src_dir}: `unsafe` only under {', '.join(unsafe_only)}")
    return failures


# ------------------------------------------------------------------ the repository


def allowed(path, prefixes):
    for p in prefixes:
        p = p.rstrip("/")
        if path == p or path == p + ".rs" or path.startswith(p + "/"):
            return True
    return False


def check_repo_unsafe(repo, allow):
    prefixes = ["src/", "build.rs"] + list(allow)
    r = subprocess.run(
        ["git", "-C", repo, "grep", "--untracked", "-n", "-w", "unsafe", "--", "*.rs"],
        capture_output=True,
        text=True,
    )
    if r.returncode not in (0, 1):
        print(f"FAIL {repo}: git grep: {r.stderr.strip()}")
        return 1
    files = sorted({line.split(":", 1)[0] for line in r.stdout.splitlines() if ":" in line})
    bad = []
    for f in files:
        if allowed(f, prefixes):
            continue
        try:
            with open(os.path.join(repo, f), encoding="utf-8", errors="replace") as fh:
                toks = tokenize(fh.read())
        except OSError:
            continue
        lines = sorted({t.line for t in toks if t.k == "id" and t.v == "unsafe"})
        bad += [(f, line) for line in lines]
    for f, line in bad:
        print(f"FAIL {repo}: `unsafe` outside {', '.join(prefixes)}: {f}:{line}")
    if not bad:
        print(f"ok   {repo}: `unsafe` (as code) only in {', '.join(prefixes)}")
    return len(bad)


# ------------------------------------------------------------------ self-test


def self_test():
    me = os.path.abspath(__file__)
    cases = 0
    problems = []

    def crate(base, files, name="demo"):
        os.makedirs(base, exist_ok=True)
        with open(os.path.join(base, "Cargo.toml"), "w") as f:
            f.write(f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n')
        for rel, text in files.items():
            p = os.path.join(base, "src", rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as f:
                f.write(text)
        return os.path.join(base, "src")

    def expect(what, args, rc, present=(), absent=()):
        nonlocal cases
        cases += 1
        r = subprocess.run([sys.executable, me] + args, capture_output=True, text=True)
        out = r.stdout + r.stderr
        errs = []
        if r.returncode != rc:
            errs.append(f"exit {r.returncode}, want {rc}")
        errs += [f"missing {s!r}" for s in present if s not in out]
        errs += [f"unexpected {s!r}" for s in absent if s in out]
        if errs:
            problems.append(f"{what}: {'; '.join(errs)}\n" + "".join(f"    | {ln}\n" for ln in out.splitlines()))

    lib = "pub mod a;\npub mod b;\npub mod c;\n"
    with tempfile.TemporaryDirectory(prefix="check-house.") as tmp:
        # 1. a clean crate: a child uses its parent, comments/strings/chars
        src = crate(
            f"{tmp}/clean",
            {
                "lib.rs": "pub mod a;\npub mod b;\npub use b::Thing;\npub struct Top;\n",
                "a.rs": (
                    "use crate::b::{Thing, inner::{self, Deep}};\n"
                    "// use crate::b::Back; a comment is not an import\n"
                    "/* crate::b::x /* nested */ crate::b::y */\n"
                    "pub fn f() -> &'static str { let _c = '\"'; let _d = b'\\''; "
                    '"crate::b::z"; r#"use crate::b::Q;"#; "" }\n'
                ),
                "b/mod.rs": "pub mod inner;\npub struct Thing;\npub fn g() -> crate::Top { crate::Top }\n",
                "b/inner.rs": "use super::Thing;\npub struct Deep(Thing);\nfn h() { super::super::Top; }\n",
            },
        )
        expect("clean crate", [src], 0, ["no import cycles"], ["FAIL"])

        # 2. a cycle of three files, through a multi-line nested use tree,
        #    an inline crate:: path and a super:: path
        src = crate(
            f"{tmp}/cycle",
            {
                "lib.rs": lib,
                "a.rs": "use crate::{\n    b::{\n        self,\n        X,\n    },\n};\npub struct A;\n",
                "b/mod.rs": "pub mod inner;\npub struct X;\nfn f() { let _ = self::inner::I; }\n",
                "b/inner.rs": "pub struct I;\nfn g() -> crate::a::A { crate::a::A }\n",
                "c.rs": "use super::a::A;\n",
            },
        )
        expect(
            "cycle of three",
            [src],
            1,
            [
                "import cycle among 3 files: a.rs, b/inner.rs, b/mod.rs",
                "a.rs -> b/mod.rs: b (line 3), X (line 4)",
                "a shortest cycle: a.rs -> b/mod.rs -> b/inner.rs -> a.rs",
                "b/inner.rs -> a.rs: A"],
            ["c.rs ->"],
        )

        # 3. test code that would close a cycle if it were read
        src = crate(
            f"{tmp}/tests",
            {
                "lib.rs": lib,
                "a.rs": "use crate::b::X;\npub struct A;\n",
                "b.rs": (
                    "pub struct X;\n#[cfg(test)]\nmod t;\n"
                    "#[cfg(test)]\n#[allow(unused)]\nmod tests {\n    use crate::a::A;\n"
                    "    fn k() { let _ = crate::a::A; { } }\n}\n"
                    "#[cfg(test)]\nuse crate::a::A as _B;\n"
                    "pub fn after() {}\n"
                ),
                "b/t.rs": "use crate::a::A;\n",
                "c/tests.rs": "use crate::a::A;\n",
                "c.rs": "#[cfg(test)] mod tests;\n",
            },
        )
        expect("cfg(test) code is not read", [src], 0, ["no import cycles"], ["FAIL"])
        with open(f"{src}/b.rs", "a") as f:
            f.write("fn now() { let _ = crate::a::A; }\n")
        expect("the same crate, the edge outside the tests", [src], 1, ["import cycle among 2 files: a.rs, b.rs"])

        # 3b. parent and child: `use super::X` is an edge; a relative path
        #     (`k::g()`) only with --relative; `self::k::g` always
        src = crate(
            f"{tmp}/family",
            {
                "lib.rs": "pub mod p;\n",
                "p/mod.rs": "mod k;\npub struct X;\nfn f() { k::g(); }\n",
                "p/k.rs": "use super::X;\npub fn g() {}\n",
                "p/w.rs": "#![cfg(test)]\nuse crate::p::k::g;\n",
            },
        )
        expect("child uses parent, parent calls child relatively", [src], 0, ["no import cycles"])
        expect("the same with --relative", [src, "--relative"], 1, ["import cycle among 2 files: p/k.rs, p/mod.rs"])
        with open(f"{src}/p/mod.rs", "a") as f:
            f.write("mod inline {\n    fn h() { super::k::g(); }\n}\n")
        expect(
            "parent names child with super:: from an inline module",
            [src],
            1,
            ["import cycle among 2 files: p/k.rs, p/mod.rs", "p/mod.rs -> p/k.rs: g (line 5)"],
        )

        # 4. a forbidden import (and a module whose name only starts alike)
        files = {
            "lib.rs": "pub mod dpdk;\npub mod dpdk_extra;\npub mod packet;\npub mod pipeline;\npub mod tables;\n",
            "dpdk/mod.rs": "pub mod ring;\nuse crate::packet::Buf;\n",
            "dpdk/ring.rs": "pub struct Ring;\n",
            "dpdk_extra.rs": "use crate::pipeline::Burst;\n",
            "packet.rs": "pub struct Buf;\n",
            "pipeline.rs": "use crate::dpdk::ring::Ring;\npub struct Burst;\n",
            "tables/mod.rs": "pub mod fdb;\n",
            "tables/fdb.rs": "pub struct Fdb;\n",
        }
        src = crate(f"{tmp}/forbid", files)
        rule = ["--forbid", "dpdk->pipeline,tables"]
        expect("layering kept", [src] + rule, 0, ["nothing under dpdk imports pipeline, tables"], ["FAIL"])
        with open(f"{src}/dpdk/ring.rs", "a") as f:
            f.write("fn f(_: &crate::tables::fdb::Fdb) {}\n")
        expect(
            "dpdk imports tables",
            [src] + rule,
            1,
            ["forbidden import", "dpdk/ring.rs (dpdk::ring) -> tables/fdb.rs (tables::fdb): Fdb (line 2)"],
            ["dpdk_extra"],
        )
        expect("no rule, no failure", [src], 0)

        # 5. unsafe only in dpdk; deny(unsafe_code) with an allow on dpdk
        files = {
            "lib.rs": "#![deny(unsafe_code)]\n#[allow(unsafe_code)]\npub mod dpdk;\npub mod other;\n",
            "dpdk.rs": "pub fn f() { unsafe { core::hint::unreachable_unchecked() } }\n",
            "other.rs": '// unsafe in a comment\n/// `unsafe` in a doc\npub const S: &str = "unsafe";\n',
        }
        src = crate(f"{tmp}/unsafe", files)
        expect("unsafe only in dpdk", [src, "--unsafe-only", "dpdk"], 0, ["`unsafe` only under dpdk"], ["FAIL"])
        with open(f"{src}/other.rs", "a") as f:
            f.write("pub fn g(p: *const u8) -> u8 {\n    unsafe { *p }\n}\n")
        expect("stray unsafe", [src, "--unsafe-only", "dpdk"], 1, ["`unsafe` outside dpdk: other.rs:5"])

        # 6. a bin root reaches the library by its name; a re-export is followed
        src = crate(
            f"{tmp}/bin",
            {
                "lib.rs": "pub mod a;\npub mod b;\npub use b::B;\n",
                "a.rs": "pub struct A;\npub fn f() -> crate::B { crate::B }\n",
                "b.rs": "pub struct B;\nuse crate::a::A;\n",
                "bin/d.rs": "use mybin::a::A;\nfn main() {}\n",
            },
            name="mybin",
        )
        expect(
            "cycle through a re-export",
            [src, "--forbid", "bin->a"],
            1,
            ["import cycle among 2 files: a.rs, b.rs", "a.rs -> b.rs: B", "bin/d.rs (bin::d) -> a.rs (a): A"],
            ["lib.rs ->"],
        )

        # 7. the repository-wide unsafe check
        repo = f"{tmp}/repo"
        crate(repo, {"lib.rs": "pub unsafe fn f() {}\n"}, name="sys")
        crate(f"{repo}/sw", {"lib.rs": "pub mod dpdk;\n// not unsafe\n", "dpdk.rs": "unsafe fn g() {}\n"})
        with open(f"{repo}/build.rs", "w") as f:
            f.write("fn main() { unsafe {} }\n")
        subprocess.run(["git", "init", "-q", repo], check=True)
        args = ["--repo-unsafe", "--repo", repo, "--allow-path", "sw/src/dpdk"]
        expect("repo: unsafe only where allowed", args, 0, ["only in"], ["FAIL"])
        with open(f"{repo}/sw/tests.rs", "w") as f:
            f.write('fn t() { let _ = "unsafe"; unsafe {} }\n')
        expect("repo: unsafe in a test file", args, 1, ["sw/tests.rs:1"])

    # 8. the tokenizer on its own
    toks = tokenize("let c = '\\''; let l: &'a str = \"a\\\"b\"; r##\"x\"#y\"##; x /* a /* b */ c */ y")
    ids = [t.v for t in toks if t.k == "id"]
    cases += 1
    if ids != ["let", "c", "let", "l", "str", "x", "y"] or [t.v for t in toks if t.k == "lt"] != ["a"]:
        problems.append(f"tokenizer: {toks}")

    for p in problems:
        print("self-test FAILED: " + p)
    print(f"self-test: {cases - len(problems)} of {cases} cases ok")
    return 1 if problems else 0


# ------------------------------------------------------------------ main


def main():
    ap = argparse.ArgumentParser(
        description="House rules of a crate's module tree (cycles, layering, unsafe).",
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("src", nargs="*", help="a crate's src/ directory")
    ap.add_argument("--forbid", action="append", default=[], metavar="A->B,C")
    ap.add_argument("--unsafe-only", action="append", default=[], metavar="PREFIX")
    ap.add_argument(
        "--relative",
        action="store_true",
        help="also count paths that start with a child module's name (`use child::X`, `child::f()`) "
        "or an imported name, as if written `self::child::X`",
    )
    ap.add_argument("--crate-name", help="the library's name for bin roots (default: from Cargo.toml)")
    ap.add_argument("--repo-unsafe", action="store_true", help="the repository-wide unsafe check")
    ap.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--allow-path", action="append", default=[], metavar="PATH")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if not args.src and not args.repo_unsafe:
        ap.error("nothing to check: give SRC_DIR, --repo-unsafe or --self-test")
    failures = 0
    for src in args.src:
        if not os.path.isdir(src):
            print(f"FAIL {src}: not a directory")
            failures += 1
            continue
        failures += check_crate(src, args.forbid, args.unsafe_only, args.crate_name, args.relative)
    if args.repo_unsafe:
        failures += check_repo_unsafe(args.repo, args.allow_path)
    if failures:
        print(f"check-house: {failures} problem(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
