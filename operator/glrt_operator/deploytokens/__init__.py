"""The `DeployToken` resource: GitLab deploy tokens kept current in a Secret (https://docs.gitlab.com/api/deploy_tokens/)."""
