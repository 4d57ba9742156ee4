"""A fresh in-process AWS account (moto) with template.yaml's resources, for tests and benchmarks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from infra.local.provision import Provisioner
from infra.template import load_template

TEMPLATE = os.path.join(os.path.dirname(__file__), "..", "..", "template.yaml")
_ENV = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@contextmanager
def emulated_account(*resources: str) -> Iterator[Provisioner]:
    """moto in-process with dummy credentials; ``IdentityTable`` (and ``resources``) provisioned from
    template.yaml and every PynamoDB model bound to it. The environment and binding are restored after."""
    import boto3
    from moto import mock_aws

    from crossroute.store.tables import TableItem, bind
    from infra.local.moto_patches import patch_moto

    patch_moto()

    saved = {key: os.environ.get(key) for key in [*_ENV, "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"]}
    bound = TableItem.Meta.table_name
    os.environ.update(_ENV)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    try:
        with mock_aws():
            provisioner = Provisioner(load_template(TEMPLATE), lambda service: boto3.client(service))
            for logical_id in ("IdentityTable", *resources):
                provisioner.physical(logical_id)
            bind(str(provisioner.ref("IdentityTable")))
            yield provisioner
    finally:
        bind(bound)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
