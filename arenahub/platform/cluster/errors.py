"""What a request gets when the live state shared by the instances cannot be reached."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from arenahub.protocol.errors import ApiError

# What Redis raises when it cannot be reached or cannot take writes now (loading, a replica after a
# failover). Any other Redis error is a bug of ours and is not hidden as "unavailable".
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError)

# Redis is usually back within seconds (a restart, a failover).
RETRY_AFTER_SECONDS = 5


class LiveStateUnavailable(ApiError):
    """Redis did not answer: a key with limits or credit is refused rather than admitted on a guess."""

    status = 503
    type = "service_unavailable"
    code = "live_state_unavailable"

    def __init__(self, what: str, cause: BaseException | None = None) -> None:
        detail = f" ({type(cause).__name__})" if cause is not None else ""
        super().__init__(f"The platform cannot check this key's {what} right now: its shared state is "
                         f"unreachable{detail}. Nothing was charged; retry in a few seconds.",
                         headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
