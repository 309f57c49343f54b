"""One quota and one credit budget shared by many processes, through Redis.

``RedisRateLimiter`` runs the adaptive limiter's own quota model with its state in Redis:
each step reads it with Redis's clock, applies the change in Python and writes it back
with a compare-and-set, so every worker on one API key sees one state. Keys are derived
from a hash of the API key, never the key itself. The limiter's keys expire when idle,
so a crashed worker leaves nothing stuck, and a grant that arrives after its waiter was
cancelled is handed straight back. ``RedisCreditBudget`` keeps what was spent without
expiry and fails closed when Redis forgets it (a restart, an eviction).

If Redis becomes unreachable mid-run, the limiter logs ``redis_unavailable`` and falls
back to a local :class:`AdaptiveRateLimiter` (which still re-syncs from the server's
headers, so it stays conservative) until Redis answers again; the credit budget fails
closed: lookups that cannot reserve credits end as :class:`BudgetExceededError`
results, never as lost handles.
``RedisCache`` is a profile cache and single flight shared by every worker: a handle one
worker is fetching is waited for by the others, not paid again, and a profile one worker
bought is reused by all for its TTL; if Redis is away, lookups go on uncached.
Install with ``pip install 'dumpling-async[redis]'``.
"""

from ._base import key_namespace
from ._budget import RedisCreditBudget
from ._cache import RedisCache
from ._limiter import RedisRateLimiter

__all__ = ["RedisCache", "RedisCreditBudget", "RedisRateLimiter", "key_namespace"]
