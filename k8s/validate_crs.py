#!/usr/bin/env python3
"""Split rendered manifests into built-in and custom kinds; validate the custom
ones against the vendored CRDs in k8s/crds/.

    validate_crs.py --crds k8s/crds -k 1.30.0 -k 1.37.0 \
        --builtin-out target/rendered/prod.builtin.yaml target/rendered/prod.yaml

For every document of the rendered stream:

* a built-in kind (a Kubernetes API group for which kubernetes-validate ships
  a strict schema in every requested Kubernetes version) is written to
  --builtin-out, for `kubernetes-validate --strict` to check;
* a kind defined by a vendored CRD (k8s/crds/*.yaml) is validated here with
  jsonschema against the openAPIV3Schema of the CRD version its apiVersion
  names, exactly as the CRD states it, plus what the API server adds to a
  structural schema: unknown fields are rejected (kubectl apply's default
  field validation is Strict), `nullable` is honoured, and metadata.name must
  be a DNS subdomain;
* anything else is an error: nothing is skipped silently.

Prints one line per file with the counts and exits non-zero on any error.
x-kubernetes-validations (CEL) rules cannot be evaluated offline; their count
is reported.
"""

import argparse
import copy
import re
import sys
from pathlib import Path

import jsonschema
import yaml

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def nullable_to_jsonschema(schema):
    """OpenAPI v3 `nullable: true` is not JSON Schema: allow null explicitly."""
    if isinstance(schema, dict):
        out = {k: nullable_to_jsonschema(v) for k, v in schema.items()}
        if out.get("nullable") is True and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(schema, list):
        return [nullable_to_jsonschema(v) for v in schema]
    return schema


def count_cel_rules(schema):
    if isinstance(schema, dict):
        n = len(schema.get("x-kubernetes-validations", []) or [])
        return n + sum(count_cel_rules(v) for v in schema.values())
    if isinstance(schema, list):
        return sum(count_cel_rules(v) for v in schema)
    return 0


def unknown_fields(value, schema, path):
    """Fields the API server would prune or reject: object keys not declared
    in `properties` where the schema neither has `additionalProperties` nor
    `x-kubernetes-preserve-unknown-fields: true`."""
    if not isinstance(schema, dict):
        return []
    found = []
    if isinstance(value, dict) and path != ".metadata":
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
        for key, sub in value.items():
            where = f"{path}.{key}"
            if props is not None and key in props:
                found += unknown_fields(sub, props[key], where)
            elif isinstance(addl, dict):
                found += unknown_fields(sub, addl, where)
            elif addl is True or preserve:
                continue
            elif props is not None or schema.get("type") == "object":
                found.append(where)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return found


def load_crds(crd_dir):
    """{(apiVersion, kind): (schema, served, file)} and {kind: [apiVersions]}."""
    table, kinds = {}, {}
    files = sorted(Path(crd_dir).glob("*.yaml"))
    if not files:
        raise SystemExit(f"validate_crs: no CRDs in {crd_dir}")
    for path in files:
        for doc in load_docs(path):
            if doc.get("kind") != "CustomResourceDefinition":
                raise SystemExit(f"validate_crs: {path} holds a {doc.get('kind')}, not a CustomResourceDefinition")
            spec = doc["spec"]
            group, kind = spec["group"], spec["names"]["kind"]
            for version in spec["versions"]:
                schema = version.get("schema", {}).get("openAPIV3Schema")
                if schema is None:
                    raise SystemExit(f"validate_crs: {path} version {version['name']} has no openAPIV3Schema")
                api_version = f"{group}/{version['name']}"
                table[(api_version, kind)] = (schema, version.get("served", False), path.name)
                kinds.setdefault(kind, []).append(api_version)
    return table, kinds


def builtin_schema_exists(doc, k8s_versions):
    """True if kubernetes-validate ships a strict schema for this apiVersion
    and kind in every requested Kubernetes version, and the group is one of
    Kubernetes' own (core, no dot, or *.k8s.io)."""
    import importlib_resources  # installed with kubernetes-validate

    api_version = doc.get("apiVersion", "")
    group = api_version.split("/")[0] if "/" in api_version else ""
    if group and "." in group and not group.endswith(".k8s.io"):
        return False
    short = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    root = importlib_resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
    for version in k8s_versions:
        name = f"{doc.get('kind', '').lower()}-{short}.json"
        if not root.joinpath(f"v{version}-local-strict").joinpath(name).is_file():
            return False
    return True


def validate_custom(doc, schema):
    errors = []
    name = (doc.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not name:
        errors.append("metadata.name: required")
    elif len(name) > 253 or not DNS_SUBDOMAIN.match(name):
        errors.append(f"metadata.name: {name!r} is not a DNS subdomain")
    for field in ("labels", "annotations"):
        values = (doc.get("metadata") or {}).get(field) or {}
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            errors.append(f"metadata.{field}: must map strings to strings")
    checked = nullable_to_jsonschema(copy.deepcopy(schema))
    validator = jsonschema.Draft7Validator(checked)
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path) or "."
        errors.append(f"{where}: {err.message}")
    for where in unknown_fields(doc, schema, ""):
        errors.append(f"{where}: unknown field (not in the CRD schema; the API server rejects it)")
    return errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crds", required=True, help="directory of vendored CRD YAML files")
    parser.add_argument("-k", "--kubernetes-version", action="append", required=True,
                        help="Kubernetes version(s) kubernetes-validate will check (repeatable)")
    parser.add_argument("--builtin-out", required=True, help="where to write the built-in documents")
    parser.add_argument("rendered", help="rendered manifest stream (kubectl kustomize output)")
    args = parser.parse_args()

    crds, crd_kinds = load_crds(args.crds)
    docs = load_docs(args.rendered)
    builtin, custom_count, failures = [], {}, []
    cel_rules = {}
    for doc in docs:
        kind, api_version = doc.get("kind"), doc.get("apiVersion")
        ident = f"{kind}/{(doc.get('metadata') or {}).get('name')}"
        if not kind or not api_version:
            failures.append(f"{ident}: document without apiVersion/kind")
        elif (api_version, kind) in crds:
            schema, served, crd_file = crds[(api_version, kind)]
            if not served:
                failures.append(f"{ident}: {api_version} is not served by {crd_file}")
                continue
            cel_rules[crd_file] = count_cel_rules(schema)
            for err in validate_custom(doc, schema):
                failures.append(f"{ident} ({api_version}, {crd_file}): {err}")
            custom_count[kind] = custom_count.get(kind, 0) + 1
        elif kind in crd_kinds:
            failures.append(f"{ident}: apiVersion {api_version} is not in the vendored CRD "
                            f"(it defines {', '.join(crd_kinds[kind])})")
        elif builtin_schema_exists(doc, args.kubernetes_version):
            builtin.append(doc)
        else:
            failures.append(f"{ident}: {api_version} {kind} is neither a built-in kind known to "
                            f"kubernetes-validate for Kubernetes {', '.join(args.kubernetes_version)} "
                            f"nor defined by a CRD in {args.crds}")

    Path(args.builtin_out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.builtin_out, "w", encoding="utf-8") as f:
        yaml.safe_dump_all(builtin, f, sort_keys=False)

    for failure in failures:
        print(f"  ERROR {args.rendered}: {failure}")
    custom_total = sum(custom_count.values())
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(custom_count.items())) or "none"
    cel = sum(cel_rules.values())
    note = f"; {cel} CEL rule(s) not evaluated offline" if cel else ""
    print(f"{args.rendered}: {len(docs)} documents = {len(builtin)} built-in (to kubernetes-validate) "
          f"+ {custom_total} custom validated against vendored CRDs ({kinds}) "
          f"+ {len(docs) - len(builtin) - custom_total} unrecognised; {len(failures)} error(s){note}")
    print(f"builtin-count {len(builtin)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
