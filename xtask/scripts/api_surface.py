#!/usr/bin/env python3
"""quota-core's public API from rustdoc's JSON, one line per item: its public path (as
re-exported at the crate root), kind, signature (ids replaced by the paths they name),
`non_exhaustive`/`must_use`, and a hash of its docs. Diff two builds to show what changed:

    cargo +nightly rustdoc -p quota-core --features sim,redis,metrics --lib -- \
        -Z unstable-options --output-format json
    python3 xtask/scripts/api_surface.py target/doc/quota_core.json > api-new.txt
    # the same in a checkout of the older commit > api-old.txt, then: diff api-old.txt api-new.txt
"""
import hashlib
import json
import re
import sys
doc = json.load(open(sys.argv[1]))
index, paths = doc["index"], doc["paths"]
public = {}
for sub in index[str(doc["root"])]["inner"]["module"]["items"]:
    it = index.get(str(sub))
    if it and "use" in it["inner"] and it["inner"]["use"].get("id") is not None:
        public[str(it["inner"]["use"]["id"])] = "quota_core::" + it["inner"]["use"]["name"]
def name_of(id_):
    if str(id_) in public: return public[str(id_)]
    p = paths.get(str(id_))
    if p: return "::".join(p["path"])
    it = index.get(str(id_))
    return it["name"] if it and it.get("name") else f"?{id_}"
def norm(v):
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if k in ("span", "links", "docs", "attrs"): continue
            if k == "id": out["id"] = name_of(x); continue
            if k == "path" and isinstance(x, str) and "id" in v: continue
            if k in ("items", "impls", "variants", "fields", "implementations") and isinstance(x, list): continue
            if k == "tuple" and isinstance(x, list) and all(isinstance(i, (int, type(None))) for i in x):
                out[k] = len(x); continue
            out[k] = norm(x)
        return out
    if isinstance(v, list): return [norm(x) for x in v]
    return v
lines = set()
def sig(item):
    return json.dumps(norm(item["inner"]), sort_keys=True)
def docs(item):
    d = item.get("docs") or ""
    # Reference-style link targets (`[x]: crate::x`) render the same as a link resolved in scope.
    d = re.sub(r"\n\n(\[[^\]]+\]: [^\n]+\n?)+$", "", d)
    return hashlib.sha1(d.encode()).hexdigest()[:8]
def walk(id_, prefix, seen):
    item = index.get(str(id_))
    if item is None or id_ in seen: return
    seen.add(id_)
    kind = next(iter(item["inner"]))
    inner = item["inner"][kind]
    name = item.get("name") or ""
    path = f"{prefix}::{name}" if name else prefix
    vis = item.get("visibility")
    if kind == "use":
        target = inner.get("id")
        if target is not None and not inner.get("is_glob"):
            t = index.get(str(target))
            if t is not None:
                # inline the re-exported item under its public name
                walk_as(target, prefix, inner["name"], seen)
        return
    if kind == "impl":
        trait = inner.get("trait")
        tname = name_of(trait["id"]) if trait else "inherent"
        if inner.get("is_synthetic") or inner.get("blanket_impl"): return
        key = f"{prefix} impl {tname}"
        lines.add(f"{key} {json.dumps(norm({'generics': inner.get('generics'), 'trait': trait}), sort_keys=True)}")
        for sub in inner.get("items", []):
            walk(sub, f"{prefix}<{tname}>", seen)
        return
    if vis not in ("public", "default") and not isinstance(vis, dict) and vis != "public":
        return
    if vis not in ("public", "default"): return
    attrs = [str(a) for a in item.get("attrs", []) if "non_exhaustive" in str(a) or "must_use" in str(a)]
    lines.add(f"{path} {kind} {sig(item)} attrs={attrs} docs={docs(item)}")
    for key in ("items",):
        for sub in inner.get(key, []) if isinstance(inner, dict) else []:
            walk(sub, path, seen)
    if kind == "struct":
        k = inner.get("kind", {})
        if isinstance(k, dict) and "plain" in k:
            for f in k["plain"]["fields"]: walk(f, path, seen)
        elif isinstance(k, dict) and "tuple" in k:
            for f in k["tuple"]:
                if f is not None: walk(f, path, seen)
    if kind == "enum":
        for v in inner.get("variants", []): walk(v, path, seen)
    if kind == "variant":
        k = inner.get("kind", {})
        if isinstance(k, dict) and "struct" in k:
            for f in k["struct"]["fields"]: walk(f, path, seen)
    for i in (inner.get("impls", []) if isinstance(inner, dict) else []):
        walk(i, path, seen)
def walk_as(id_, prefix, alias, seen):
    item = dict(index[str(id_)]); item["name"] = alias
    index[f"alias{id_}"] = item
    walk(f"alias{id_}", prefix, seen)
root = index[str(doc["root"])]
for sub in root["inner"]["module"]["items"]:
    walk(sub, "quota_core", set())
for l in sorted(lines): print(l)
