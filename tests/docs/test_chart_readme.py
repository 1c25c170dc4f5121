"""charts/kinfer/README.md's values table matches values.yaml: every leaf key is documented
(by itself or by a documented parent, such as `resources`), no documented key is stale, and
every default the table shows is the one values.yaml sets."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "kinfer"


def leaves(values: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for every leaf; an empty map or list is a leaf."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from leaves(value, f"{path}.")
        else:
            yield path, value


def shown(value: Any) -> str:
    """How the table writes a default: YAML's own spelling (`true`, `[]`, `""`, `30`)."""
    if isinstance(value, str):
        return value if value else '""'
    return str(yaml.safe_dump(value, default_flow_style=True)).strip().removesuffix("...").strip()


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def table_rows(readme: str) -> Iterator[tuple[list[str], list[str]]]:
    """(keys, defaults) per row of the `## Values` table; `.x` is a sibling of the row's
    first key, and defaults pair with the keys when they are as many."""
    section = readme[readme.index("## Values") :]
    section = section[: section.index("\n## ", 1)]
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        key_cell, default_cell, _ = _cells(line)
        names = re.findall(r"`([^`]+)`", key_cell)
        parent = names[0].rpartition(".")[0]
        keys = [f"{parent}{n}" if n.startswith(".") else n for n in names]
        defaults = [d.strip() for d in default_cell.split(" / ")] if default_cell else []
        yield keys, defaults


def _matches(cell: str, value: Any) -> bool:
    quoted = re.fullmatch(r"`([^`]*)`", cell)
    if quoted is None or "<" in cell:
        # Words or a placeholder (appVersion, release name, `kinfer/runtime:<appVersion>`):
        # the chart computes the default, which values.yaml leaves empty.
        return value == ""
    return quoted.group(1) == shown(value)


def _documented() -> dict[str, str | None]:
    documented: dict[str, str | None] = {}
    for keys, defaults in table_rows((CHART / "README.md").read_text()):
        paired = defaults if len(defaults) == len(keys) else [None] * len(keys)
        documented.update(zip(keys, paired, strict=True))
    return documented


def _values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return loaded


def _lookup(values: dict[str, Any], key: str) -> Any:
    node: Any = values
    for part in key.split("."):
        node = node[part]
    return node


def test_row_parsing_resolves_sibling_keys_and_pairs_defaults() -> None:
    readme = (
        "## Values\n\n| key | default | meaning |\n|---|---|---|\n"
        "| `a.b` / `.c` | `1` / appVersion | x |\n| `d`, `e` | | y |\n\n## Next\n"
    )
    assert list(table_rows(readme)) == [(["a.b", "a.c"], ["`1`", "appVersion"]), (["d", "e"], [])]


def test_default_spelling_follows_yaml() -> None:
    assert [shown(v) for v in (True, 30, "", [], {}, "json")] == [
        "true",
        "30",
        '""',
        "[]",
        "{}",
        "json",
    ]
    assert _matches("`30`", 30) and not _matches("`60`", 30)
    assert _matches("appVersion", "") and not _matches("appVersion", "1.0")


def test_every_leaf_value_is_documented() -> None:
    documented = _documented()
    missing = [
        key
        for key, _ in leaves(_values())
        if not any(key == d or key.startswith(f"{d}.") for d in documented)
    ]
    assert not missing, f"values.yaml keys the chart README's table omits: {missing}"


def test_every_documented_key_exists() -> None:
    values = _values()
    stale = []
    for key in _documented():
        try:
            _lookup(values, key)
        except (KeyError, TypeError):
            stale.append(key)
    assert not stale, f"documented keys that values.yaml does not have: {stale}"


def test_every_shown_default_is_the_values_yaml_default() -> None:
    values = _values()
    wrong = {
        key: (cell, shown(_lookup(values, key)))
        for key, cell in _documented().items()
        if cell is not None and not _matches(cell, _lookup(values, key))
    }
    assert not wrong, f"README default vs values.yaml: {wrong}"
    assert _documented()["leaderElection.leaseDuration"] is not None, (
        "the table's defaults were not read"
    )
