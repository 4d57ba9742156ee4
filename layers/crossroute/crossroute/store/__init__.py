"""DynamoDB: the one table of template.yaml (``IdentityTable``) and the adapters over it."""
