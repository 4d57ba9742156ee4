"""Unzipped size of each function with its layers, as built (.aws-sam/build)."""

from __future__ import annotations

from infra.bench import Context, Row, Table
from infra.build.artifact import tree_size

MB = 1_000_000
WEBHOOK_GOAL = 30 * MB
LAMBDA_LIMIT = 250 * 2**20


def artifact_sizes(context: Context) -> Table:
    table = Table("Unzipped size, function + layers (.aws-sam/build)", ["function", "MB", "layers (MB)"])
    built = context.built
    if built is None:
        table.notes.append("no build output: run `make build`")
        return table
    for function in built.functions.values():
        size = function.unzipped_size()
        layers = ", ".join(f"{layer.name} {tree_size(layer.path) / MB:.1f}" for layer in function.layers)
        goal = WEBHOOK_GOAL if function.http else LAMBDA_LIMIT
        table.rows.append(
            Row([function.name, f"{size / MB:.1f}", layers], f"<= {goal / MB:.0f}", size <= goal)
        )
    unused = [
        layer
        for layer in built.layers.values()
        if not any(layer in f.layers for f in built.functions.values())
    ]
    for layer in unused:
        table.notes.append(f"{layer.name}: {tree_size(layer.path) / MB:.1f} MB (no function uses it yet)")
    return table
