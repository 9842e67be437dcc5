"""Tenants: ids, API keys and the registry that holds them."""
