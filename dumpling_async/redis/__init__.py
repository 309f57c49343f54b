"""One quota and one credit budget shared by many processes, through Redis.

``RedisRateLimiter`` runs the adaptive limiter's model (a log of send times re-synced
from ``X-RateLimit-Remaining``, probes for predicted quota, pause-all on 429) as Lua
scripts, so every worker on one API key sees one state, updated atomically. Keys are
derived from a hash of the API key, never the key itself, and expire when idle, so a
crashed worker leaves nothing stuck: its in-flight entries and probe lapse after
``stale_after`` seconds, and a grant that arrives after its waiter was cancelled is
handed straight back.

If Redis becomes unreachable mid-run, the limiter logs ``redis_unavailable`` and falls
back to a local :class:`AdaptiveRateLimiter` (which still re-syncs from the server's
headers, so it stays conservative); the credit budget fails closed: lookups that cannot
reserve credits end as :class:`BudgetExceededError` results, never as lost handles.
Install with ``pip install 'dumpling-async[redis]'``.
"""

from ._base import key_namespace
from ._budget import RedisCreditBudget
from ._limiter import RedisRateLimiter

__all__ = ["RedisCreditBudget", "RedisRateLimiter", "key_namespace"]
