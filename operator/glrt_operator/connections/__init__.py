"""`GitLabConnection` and `ClusterGitLabConnection`: where Runners and DeployTokens reach GitLab, and the access
token the operator uses there, kept alive by GitLab's self-rotation."""
