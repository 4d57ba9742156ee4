"""Building the Lambda artifact: scripts for `make build` and a reader of what `sam build` produced."""
