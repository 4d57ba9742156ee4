"""The operator CLI, ``crossroute`` (docs/cli.md). Installed with the package, never part of a Lambda.

- ``app.py``: the command tree and ``main``; ``context.py``: the global options, the target, exit codes;
- ``target.py``: the local stack (``/_local/outputs``) or a deployed one (``--stack``: CloudFormation
  outputs, SigV4-signed IAM routes), HTTP and AWS clients;
- ``contacts.py`` (get, timeline, import, export, erase) over ``records.py`` (reading and checking an
  import file), ``importer.py`` (the batch pipeline) and ``export.py`` (the parallel scan);
- ``sending.py`` (send, ``--wait``), ``simulate.py`` (signed provider webhooks), ``dlq.py`` (show,
  redrive), ``registry.py`` (tenants validate, put, show);
- ``console.py`` (stdout results, stderr progress), ``render.py`` (tables), ``errors.py`` (exit 1 / 2).
"""
