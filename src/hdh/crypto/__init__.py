"""Keys and encryption: the key file and provider, envelope encryption, encrypted Parquet."""

from hdh.crypto.keyfile import KeyFileInfo, create_key_file, inspect_key_file

__all__ = ["KeyFileInfo", "create_key_file", "inspect_key_file"]
