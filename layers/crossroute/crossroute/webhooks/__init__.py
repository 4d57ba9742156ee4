"""Provider webhooks: authenticate, resolve the tenant, and queue the raw event durably."""
