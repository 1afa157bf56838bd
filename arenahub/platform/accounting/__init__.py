"""Who may, and who pays: consumer keys and credentials, rate limits, and credit.

- ``keys.py``: the key cache (no database round trip per request); ``credentials.py``: key hashing.
- ``limits.py``: exact sliding-window limits (pure), the ``LimitStore`` interface and its in-process
  store; ``limits_redis.py``: the same store in Redis, exact across platform instances.
- ``credit.py``: credit and prices on the request path (reserve, settle, release).
"""
