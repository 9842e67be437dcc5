"""Built-in plugins, installed as ``libervia_plugins``. Each module is one plugin."""
