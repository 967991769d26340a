"""The GitLab adapter: every HTTP call the operator makes to GitLab, and the one place that classifies failures.

`session` (transport, budget, answer checks), one module of calls per GitLab API (`runners`, `deploy_tokens`),
`client` (all of them on one object), `pool` (clients and budgets shared by the operator), `budget` (the request
budget per connection, the pause per host), `errors`.
"""

from ...core.gitlab import GitLabError, GitLabThrottled
from .budget import Priority
from .client import GitLabClient
from .pool import GitLabPool

__all__ = ["GitLabClient", "GitLabError", "GitLabPool", "GitLabThrottled", "Priority"]
