"""respkv: a Dynamo-style key-value store that speaks the Redis protocol."""

__version__ = "0.1.0"

#: The Redis behaviour level respkv matches; clients gate features on it.
REDIS_VERSION = "7.0.15"

