"""Error reply texts shared by command families, spelled exactly as Redis 7.0 does."""

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
SYNTAX = "ERR syntax error"
NOT_INTEGER = "ERR value is not an integer or out of range"
NOT_FLOAT = "ERR value is not a valid float"
OVERFLOW = "ERR increment or decrement would overflow"
NO_SUCH_KEY = "ERR no such key"
DB_INDEX_OUT_OF_RANGE = "ERR DB index is out of range"


def invalid_expire(command: str) -> str:
    return f"ERR invalid expire time in '{command}' command"


def wrong_arity(command: str) -> str:
    return f"ERR wrong number of arguments for '{command}' command"
