"""Keys and encryption. For now: the local key file that ``hdh init`` creates."""

from hdh.crypto.keyfile import KeyFileInfo, create_key_file, inspect_key_file

__all__ = ["KeyFileInfo", "create_key_file", "inspect_key_file"]
