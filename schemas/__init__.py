"""The product's JSON Schemas, shipped as package data (``libervia_schemas``).

``settings.schema.json`` validates the settings, ``plugins/<name>.schema.json`` each built-in plugin's section,
and ``requests/<name>.schema.json`` every request body and query string.
"""
