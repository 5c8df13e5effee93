"""
Render s3balance's config from its non-secret part (a ConfigMap) and its
secret part (a Secret), because the config file cannot reference environment
variables.  Runs in an initContainer of the s3balance image:

    python render-config.py BASE.yaml SECRETS.yaml OUT.yaml

Mappings are merged key by key (the secret wins); lists whose items all have a
"name" (buckets) are merged item by item on that name; any other value in the
secret replaces the base one.  A bucket named only in the secret is an error,
so a typo cannot add a half-configured backend.  OUT is written with mode 0600.
"""

import os
import sys

import yaml


def merge(base, extra, path):
    if isinstance(base, dict) and isinstance(extra, dict):
        merged = dict(base)
        for key, value in extra.items():
            merged[key] = merge(base[key], value, f"{path}.{key}" if path else key) if key in base else value
        return merged
    named = isinstance(base, list) and isinstance(extra, list)
    named = named and all(isinstance(item, dict) and "name" in item for item in base + extra)
    if named:
        merged = list(base)
        index = {item["name"]: position for position, item in enumerate(base)}
        for item in extra:
            if item["name"] not in index:
                raise SystemExit(f"render-config: {path}: '{item['name']}' is in the secret but not in the config")
            position = index[item["name"]]
            merged[position] = merge(base[position], item, f"{path}[{position}]")
        return merged
    return extra


def main(argv):
    if len(argv) != 4:
        raise SystemExit("usage: render-config.py BASE.yaml SECRETS.yaml OUT.yaml")
    with open(argv[1]) as base_file, open(argv[2]) as secret_file:
        base = yaml.safe_load(base_file) or {}
        secret = yaml.safe_load(secret_file) or {}
    rendered = merge(base, secret, "")
    temporary = argv[3] + ".tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        yaml.safe_dump(rendered, out, sort_keys=False)
    os.replace(temporary, argv[3])
    print(f"render-config: wrote {argv[3]}")


if __name__ == "__main__":
    main(sys.argv)
